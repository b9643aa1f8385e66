"""anycast-knot-exporter (anycast_agents.knot_exporter): Knot's timers and RRSIGs read right, `knotc stats`
and `zone-status` (as python3-libknot returns them, captured from Knot 3.2 on the lab) turned into
metrics, and a Knot that does not answer reported as knot_up 0 with no stale figures."""

from __future__ import annotations

import calendar
import time

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from dns_authority import Authority
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from anycast_agents import knot_exporter as ke

NOW = float(calendar.timegm((2026, 11, 21, 12, 0, 0, 0, 0, 0)))
STATS = {"server": {"zone-count": 2}, "mod-rrl": {"slipped": 3, "dropped": 7},
         "mod-stats": {"request-protocol": {"udp4": 235, "tcp6": 232, "quic4": 0},
                       "response-code": {"NOERROR": 931, "NXDOMAIN": 3, "SERVFAIL": 0},
                       "query-type": {"SOA": 931, "A": 3, "AAAA": 0},
                       "server-operation": {"query": 934, "axfr": 0},
                       "edns-presence": {"request": 5}}}
STATUS = {"example.com.": {"role": "slave", "serial": "1795284584", "refresh": "+58m42s",
                           "expiration": "+13D23h58m42s", "re-sign": "-"},
          "example.net.": {"role": "master", "serial": "1795284590", "refresh": "-", "expiration": "-"}}
APEX = {"example.com.": {
    "SOA": ["ns1.example.com. hostmaster.example.com. 1795284584 3600 600 1209600 300"],
    "RRSIG": ["SOA 13 2 3600 20261205120000 20261121110000 12345 example.com. c2ln",
              "DNSKEY 13 2 3600 20261203120000 20261121110000 54321 example.com. c2ln"]}}


@pytest.mark.parametrize(("text", "seconds"), [
    ("+13D23h58m42s", 13 * 86400 + 23 * 3600 + 58 * 60 + 42), ("+58m42s", 3522), ("-5m", -300),
    ("0", 0), ("+1Y2M", 365 * 86400 + 60 * 86400), ("-", None), ("pending", None), (None, None)])
def test_knot_timers(text, seconds):
    assert ke.knot_seconds(text) == (None if seconds is None else float(seconds))


def test_rrsig_expiration_in_both_formats():
    assert ke.rrsig_expiration("SOA 13 2 3600 20261205120000 20261121110000 1 example.com. x") == \
        calendar.timegm((2026, 12, 5, 12, 0, 0, 0, 0, 0))
    assert ke.rrsig_expiration("SOA 13 2 3600 1796000000 1795000000 1 example.com. x") == 1796000000.0
    assert ke.rrsig_expiration("garbage") is None


def render() -> str:
    metrics = ke.Samples()
    ke.stats_metrics(metrics, STATS)
    ke.zone_metrics(metrics, STATUS, APEX, NOW)

    class Fixed:
        def collect(self):
            yield from metrics

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed())
    return generate_latest(reg).decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from Prometheus's text format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_stats_become_named_counters():
    text = render()
    got = samples(text)
    assert got[("knot_queries_total", (("protocol", "udp4"),))] == 235
    assert got[("knot_queries_total", (("protocol", "quic4"),))] == 0  # protocols: all of them, zero or not
    assert got[("knot_responses_total", (("rcode", "NXDOMAIN"),))] == 3
    assert got[("knot_query_types_total", (("type", "SOA"),))] == 931
    assert 'type="AAAA"' not in text  # query types: only those seen (Knot lists ~90)
    assert got[("knot_rrl_dropped_total", ())] == 7 and got[("knot_rrl_slipped_total", ())] == 3
    assert got[("knot_zones", ())] == 2
    assert got[("knot_stat", (("id", "request"), ("item", "edns-presence"), ("section", "mod-stats")))] == 5
    assert "# TYPE knot_queries_total counter" in text


def test_zone_serial_timers_expire_and_rrsig():
    got = samples(render())
    com, net = (("zone", "example.com"),), (("zone", "example.net"),)
    assert got[("knot_zone_serial", com)] == 1795284584
    assert got[("knot_zone_serial", net)] == 1795284590
    assert got[("knot_zone_expires_in_seconds", com)] == 1209522
    assert got[("knot_zone_refresh_in_seconds", com)] == 3522
    assert ("knot_zone_expires_in_seconds", net) not in got  # a primary has no expiry
    assert got[("knot_zone_soa_expire_seconds", com)] == 1209600
    assert got[("knot_zone_soa_refresh_seconds", com)] == 3600
    assert got[("knot_zone_soa_retry_seconds", com)] == 600
    # The earliest of the apex RRSIGs (DNSKEY's, 12 days from NOW).
    assert got[("knot_zone_rrsig_expires_in_seconds", com)] == 12 * 86400
    assert ("knot_zone_rrsig_expires_in_seconds", net) not in got  # unsigned


class DeadKnot:
    socket_path = "/run/knot/knot.sock"

    def read(self):
        raise OSError("connection refused")


class FineKnot:
    socket_path = "/run/knot/knot.sock"

    def read(self):
        return STATS, STATUS, APEX


def test_knot_not_answering_is_knot_up_0_without_stale_figures():
    collector = ke.KnotCollector(DeadKnot())
    got = samples(generate_latest(ke.registry(collector)).decode())
    assert not collector.last_ok and "connection refused" in collector.last_error
    assert got[("knot_up", ())] == 0
    assert not any(name in ("knot_zone_serial", "knot_queries_total") for name, _ in got)
    collector = ke.KnotCollector(FineKnot())
    got = samples(generate_latest(ke.registry(collector)).decode())
    assert collector.last_ok and got[("knot_up", ())] == 1 and ("knot_zone_serial", (("zone", "example.com"),)) in got


@pytest.mark.parametrize(("text", "expected"), [
    ("notAfter=Feb 28 14:39:27 2027 GMT\n", calendar.timegm((2027, 2, 28, 14, 39, 27, 0, 0, 0))),
    ("notAfter=Mar  1 00:00:00 2027 GMT", calendar.timegm((2027, 3, 1, 0, 0, 0, 0, 0, 0))),
    ("unable to load certificate", None), ("", None)])
def test_certificate_not_after_as_openssl_prints_it(text, expected):
    assert ke.parse_not_after(text) == expected


def test_certificate_expiry_per_file_and_nothing_for_an_unreadable_one():
    ends = {"/etc/knot/tls/xot.crt": NOW + 20 * 86400, "/gone.crt": None}
    metrics = ke.Samples()
    ke.cert_metrics(metrics, list(ends), NOW, read=ends.get)

    class Fixed:
        def collect(self):
            yield from metrics

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed())
    got = samples(generate_latest(reg).decode())
    assert got == {("knot_tls_cert_expires_in_seconds", (("file", "/etc/knot/tls/xot.crt"),)): 20 * 86400}


def test_certificate_expiry_read_from_a_real_certificate(tmp_path):
    """openssl makes a certificate valid for 2 days; the exporter reads it back within a minute."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    if not shutil.which("openssl"):
        pytest.skip("no openssl")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=t"],
                   check=True, capture_output=True)
    left = ke.cert_not_after(str(cert)) - time.time()
    assert 2 * 86400 - 60 < left <= 2 * 86400
    assert ke.cert_not_after(str(tmp_path / "missing.pem")) is None



def test_certificate_expiry_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    """openssl runs when the exporter first meets a certificate file and again only when the file
    changed (a renewal writes a new one); a file that went away is no longer reported."""
    import os  # noqa: PLC0415
    import stat  # noqa: PLC0415

    runs = tmp_path / "runs"
    fake = tmp_path / "bin" / "openssl"
    fake.parent.mkdir()
    # Prints the notAfter written in the certificate file itself; one line in RUNS per call.
    fake.write_text(f"#!/bin/sh\necho x >> {runs}\nprintf 'notAfter=%s GMT\\n' \"$(cat \"$5\")\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    cert = tmp_path / "node.crt"
    cert.write_text("Feb 28 14:39:27 2027")
    first = ke.cert_not_after(str(cert))
    assert first == 1803825567.0
    assert [ke.cert_not_after(str(cert)) for _ in range(3)] == [first] * 3
    assert runs.read_text().count("x") == 1
    renewed = tmp_path / "renewed"
    renewed.write_text("Mar  1 14:39:27 2028")
    renewed.replace(cert)  # as a renewal does: a new file in its place
    assert ke.cert_not_after(str(cert)) == first + 367 * 86400
    assert runs.read_text().count("x") == 2
    cert.unlink()
    assert ke.cert_not_after(str(cert)) is None
    assert runs.read_text().count("x") == 2

# What a PoP serves, as validators see it: the RRSIGs that come with the apex SOA and DNSKEY.
SIGNED = {"SOA": (NOW + 5 * 86400, NOW - 2 * 86400), "DNSKEY": (NOW + 9 * 86400, NOW - 86400)}


def test_served_signatures_become_a_window_per_address_zone_and_type():
    asked = []

    def ask(address, zone):
        asked.append((address, zone))
        if address == "2001:db8:53::1":
            raise dns.exception.Timeout
        return SIGNED if zone == "example.com." else {"SOA": SIGNED["SOA"]}

    metrics = ke.Samples()
    ke.served_metrics(metrics, ["203.0.113.53", "2001:db8:53::1"], ["example.com.", "example.net."], NOW, ask)
    got = {(name, labels): value for (name, labels), value in samples_of(metrics).items()}
    v4 = ("address", "203.0.113.53")
    assert got[("knot_served_signed", (v4, ("zone", "example.com")))] == 1
    assert got[("knot_served_rrsig_expires_in_seconds", (v4, ("type", "SOA"), ("zone", "example.com")))] == 5 * 86400
    assert got[("knot_served_rrsig_inception_in_seconds", (v4, ("type", "DNSKEY"), ("zone", "example.com")))] == -86400
    # DNSKEY came without a signature: not signed, and no window for it.
    assert got[("knot_served_signed", (v4, ("zone", "example.net")))] == 0
    assert ("knot_served_rrsig_expires_in_seconds", (v4, ("type", "DNSKEY"), ("zone", "example.net"))) not in got
    # No answer: not signed, no window at all.
    v6 = ("address", "2001:db8:53::1")
    assert got[("knot_served_signed", (v6, ("zone", "example.com")))] == 0
    assert not [k for k in got if k[0] != "knot_served_signed" and v6 in k[1]]
    # The IPv6 address timed out on example.com: example.net was not asked there (no second timeout).
    assert asked == [("203.0.113.53", "example.com."), ("203.0.113.53", "example.net."),
                     ("2001:db8:53::1", "example.com.")]
    assert got[("knot_served_signed", (v6, ("zone", "example.net")))] == 0


def test_a_served_address_that_is_not_an_ip_address_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        ke.main(["--once", "--served", "203.0.113.53", "--served", "2001:db8:53::1Restart=always"])
    assert exit_.value.code == 2
    assert "--served '2001:db8:53::1Restart=always': not an IP address" in capsys.readouterr().err


def samples_of(metrics: ke.Samples) -> dict:
    class Fixed:
        def collect(self):
            yield from metrics

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed())
    return samples(generate_latest(reg).decode())


def test_only_the_signed_zones_are_asked_and_only_when_knot_answers():
    asked = []

    def ask(address, zone):
        asked.append(zone)
        return SIGNED

    collector = ke.KnotCollector(FineKnot(), served=["203.0.113.53"], ask=ask)
    got = samples(generate_latest(ke.registry(collector)).decode())
    assert asked == ["example.com."]  # example.net has no RRSIG at its apex: unsigned
    assert got[("knot_served_signed", (("address", "203.0.113.53"), ("zone", "example.com")))] == 1
    asked.clear()
    samples(generate_latest(ke.registry(ke.KnotCollector(DeadKnot(), served=["203.0.113.53"], ask=ask))).decode())
    assert asked == []


class SignedAuthority(Authority):
    """Answers the apex SOA and DNSKEY of example.com with RRSIGs whose window is SIGNED (the
    DNSKEY unsigned when dnskey_signed is false)."""

    def __init__(self, dnskey_signed=True):
        self.dnskey_signed = dnskey_signed
        self.asked: list[tuple[str, bool, bool]] = []  # (type, DO, RD) of each query
        super().__init__(["example.com"])

    @staticmethod
    def rrsig(rtype: str) -> dns.rrset.RRset:
        expiration, inception = (time.strftime("%Y%m%d%H%M%S", time.gmtime(t)) for t in SIGNED[rtype])
        return dns.rrset.from_text("example.com.", 3600, "IN", "RRSIG",
                                   f"{rtype} 13 2 3600 {expiration} {inception} 12345 example.com. c2lnbmF0dXJl")

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        resp = dns.message.make_response(query)
        rtype = dns.rdatatype.to_text(query.question[0].rdtype)
        rdata = {"SOA": "ns1.example.com. h.example.com. 1 2 3 4 5",
                 "DNSKEY": "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+Kk"
                           "xLbxILfDLUT0rAK9iUzy1L53eKGQ=="}
        resp.answer.append(dns.rrset.from_text("example.com.", 3600, "IN", rtype, rdata[rtype]))
        if rtype == "SOA" or self.dnskey_signed:
            resp.answer.append(self.rrsig(rtype))
        self.asked.append((rtype, bool(query.ednsflags & dns.flags.DO), bool(query.flags & dns.flags.RD)))
        return resp.to_wire()


@pytest.mark.parametrize("dnskey_signed", [True, False])
def test_served_signatures_read_over_dns_with_the_do_bit(dnskey_signed):
    server = SignedAuthority(dnskey_signed)
    try:
        got = ke.served_signatures("127.0.0.1", "example.com.", timeout=2, port=server.port)
    finally:
        server.close()
    assert got == (SIGNED if dnskey_signed else {"SOA": SIGNED["SOA"]})
    assert server.asked == [("SOA", True, False), ("DNSKEY", True, False)]  # DO set, RD clear
