"""anycast.dns.zone_serial against a small authoritative server on 127.0.0.1 whose serial moves."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from ansible_collections.anycast.dns.plugins.module_utils import _dns
from ansible_collections.anycast.dns.plugins.modules import zone_serial
from ansible_collections.anycast.dns.tests.unit.plugins.modules.dns_fakes import FakeAuthority, no_command


@pytest.fixture
def authority():
    server = FakeAuthority({"example.com": 100, "example.net": 7})
    yield server
    server.close()


def args(server, **extra):
    return {"servers": ["127.0.0.1"], "zones": ["example.com", "example.net."], "port": server.port,
            "query_timeout": 0.5, **extra}


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
