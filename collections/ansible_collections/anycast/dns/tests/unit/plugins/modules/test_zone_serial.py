"""anycast.dns.zone_serial against a small authoritative server on 127.0.0.1 whose serial moves."""

from __future__ import annotations

import socket
import threading

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from ansible_collections.anycast.dns.plugins.module_utils import _dns
from ansible_collections.anycast.dns.plugins.modules import zone_serial


class FakeAuthority:
    """UDP on 127.0.0.1: answers the SOA of its zones; serial/rcode/AA per zone, changeable while running."""

    def __init__(self, zones: dict[str, int]):
        self.zones = dict(zones)
        self.rcode = {z: dns.rcode.NOERROR for z in zones}
        self.authoritative = True
        self.nsid = None  # the server's name, sent back when a query asks for NSID
        self.after = None  # (queries, zone, serial): switch the serial after that many queries
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            self.queries += 1
            if self.after and self.queries > self.after[0]:
                self.zones[self.after[1]] = self.after[2]
            name = query.question[0].name.to_text().rstrip(".")
            resp = dns.message.make_response(query)
            if self.authoritative:
                resp.flags |= dns.flags.AA
            if self.nsid and any(o.otype == dns.edns.NSID for o in query.options):
                resp.use_edns(0, options=[dns.edns.GenericOption(dns.edns.NSID, self.nsid.encode())])
            if name not in self.zones:
                resp.set_rcode(dns.rcode.REFUSED)
            elif self.rcode[name] != dns.rcode.NOERROR:
                resp.set_rcode(self.rcode[name])
            else:
                resp.answer.append(dns.rrset.from_text(
                    name + ".", 300, "IN", "SOA", f"ns1.{name}. h.{name}. {self.zones[name]} 3600 600 86400 300"))
            self.sock.sendto(resp.to_wire(), peer)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def authority():
    server = FakeAuthority({"example.com": 100, "example.net": 7})
    yield server
    server.close()


def args(server, **extra):
    return {"servers": ["127.0.0.1"], "zones": ["example.com", "example.net."], "port": server.port,
            "query_timeout": 0.5, **extra}


def no_command(argv):  # the module runs no command
    raise AssertionError(argv)


def test_reads_the_serials_served(run_module, authority):
    result, failed = run_module(zone_serial.main, args(authority), no_command)
    assert not failed and not result["changed"]
    assert result["serials"] == {"example.com": 100, "example.net": 7}
    assert result["servers"] == {"127.0.0.1": {"example.com": 100, "example.net": 7}}


def test_waits_until_the_expected_serial_is_served(run_module, authority):
    authority.after = (6, "example.com", 101)  # three rounds of two zones, then the new serial
    result, failed = run_module(zone_serial.main, args(authority, expect={"example.com": 101}, interval=0.05,
                                                       timeout=10), no_command)
    assert not failed, result
    assert result["serials"]["example.com"] == 101 and result["rounds"] == 4


def test_a_newer_serial_across_the_wrap_counts_as_served(run_module, authority):
    authority.zones["example.com"] = 5  # 2**32 - 10 + 15: serial arithmetic, RFC 1982
    result, failed = run_module(zone_serial.main, args(authority, expect={"example.com": (1 << 32) - 10}),
                                no_command)
    assert not failed, result


def test_fails_naming_the_server_and_zone_that_lag(run_module, authority):
    result, failed = run_module(zone_serial.main, args(authority, expect={"example.com": 200}, interval=0.05,
                                                       timeout=0.3), no_command)
    assert failed
    assert "127.0.0.1 example.com: serial 100, expected 200 or newer" in result["msg"]
    assert "example.net" not in result["msg"]


@pytest.mark.parametrize("breakage,reason", [
    ("servfail", "answered SERVFAIL"),
    ("not_aa", "answer is not authoritative"),
])
def test_an_answer_that_is_not_authoritative_noerror_is_not_served(run_module, authority, breakage, reason):
    if breakage == "servfail":
        authority.rcode["example.net"] = dns.rcode.SERVFAIL
    else:
        authority.authoritative = False
    result, failed = run_module(zone_serial.main, args(authority), no_command)
    assert failed and reason in result["msg"], result
    assert result["serials"]["example.net"] is None


def test_a_silent_server_is_reported(run_module, authority):
    authority.close()
    result, failed = run_module(zone_serial.main, args(authority), no_command)
    assert failed and "no answer within 0.5 s" in result["msg"]


@pytest.mark.parametrize("expect,message", [
    ({"example.org": 1}, "not in zones"),
    ({"example.com": "soon"}, "must be an integer"),
    ({"example.com": 1 << 32}, "out of range"),
])
def test_bad_expectations_are_refused(run_module, authority, expect, message):
    result, failed = run_module(zone_serial.main, args(authority, expect=expect), no_command)
    assert failed and message in result["msg"]


@pytest.mark.parametrize("serial,reference,newer", [
    (5, 5, True), (6, 5, True), (4, 5, False), (0, (1 << 32) - 1, True), ((1 << 32) - 1, 0, False),
])
def test_serial_arithmetic(serial, reference, newer):
    assert _dns.serial_newer_or_equal(serial, reference) is newer


def test_the_module_asks_without_recursion_and_only_for_soa(authority):
    seen = []
    real = dns.message.from_wire

    def spy(wire, *a, **kw):
        msg = real(wire, *a, **kw)
        seen.append(msg)
        return msg

    dns.message.from_wire = spy
    try:
        assert _dns.soa_serial("127.0.0.1", "example.com", port=authority.port, timeout=0.5).serial == 100
    finally:
        dns.message.from_wire = real
    query = next(m for m in seen if not m.flags & dns.flags.QR)
    assert not query.flags & dns.flags.RD and query.question[0].rdtype == dns.rdatatype.SOA
