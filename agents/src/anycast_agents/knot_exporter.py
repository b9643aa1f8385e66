"""anycast-knot-exporter: Prometheus metrics of the local Knot DNS, read through its control socket
(python3-libknot), exposed with prometheus_client (python3-prometheus-client).

    anycast-knot-exporter [--listen ADDR:PORT] [--socket PATH] [--timeout S] [--tls-cert PATH ...]
                          [--served ADDR ...]
    anycast-knot-exporter --once        print the metrics once and exit (1 if Knot did not answer)
    anycast-knot-exporter --version

Every scrape asks Knot, at that moment:
- `stats`: the server's counters and those of its modules; mod-stats (queries per protocol,
  answers per RCODE, query types, bytes) and mod-rrl (dropped, slipped) get metrics of their own,
  any other counter is exported as knot_stat{section,item,id};
- `zone-status`: per zone the serial, and the refresh and expiration timers (secondaries);
- `zone-read <zone> @ SOA` and `zone-read <zone> @ RRSIG`: the SOA refresh, retry and expire fields
  and the earliest expiration of the RRSIGs at the zone apex (signed zones): a lead time before
  validators fail. (A secondary's expiration timer is not the time since its last refresh: Knot
  takes the primary's EDNS EXPIRE, which a signing primary bounds by its signatures' expiry.)
And, without Knot: the expiry of the zone-transfer TLS certificates (--tls-cert, `openssl x509`).
And what clients get (--served ADDR, the node's anycast addresses): for each signed zone, the apex
SOA and DNSKEY asked over DNS with the DO bit, and the validity window of the RRSIGs that come with
them, as a validator sees it: the earliest expiration and the latest inception. The primary's files
and Knot's memory can be right while the answers are not (a transfer that stopped, a signer that
stopped re-signing or runs on a wrong clock); validators judge the answers.

knot_up is 0 when the control socket does not answer; the other Knot metrics are then absent.
Why not Knot's own exporter (PyPI knot-exporter): it follows Knot's releases (3.3 and later; Debian
12 ships Knot 3.2), is not a distribution package, needs psutil, and has no apex RRSIG expiry,
the metric the DNSSEC alerts need; the HTTP serving and the text format are prometheus_client's.
"""

from __future__ import annotations

import argparse
import calendar
import ipaddress
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UntypedMetricFamily

from . import __version__, paths

# Knot's human-readable timers ("+13D23h58m42s", "-5m"): the units knotc prints.
TIME_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}
TIME_RE = re.compile(r"^([+-]?)((?:\d+[YMDhms])+)$")

# mod-stats counters with a metric of their own: item -> (metric, label of the id).
MOD_STATS = {
    "request-protocol": ("knot_queries_total", "protocol"),
    "response-code": ("knot_responses_total", "rcode"),
    "query-type": ("knot_query_types_total", "type"),
    "server-operation": ("knot_operations_total", "operation"),
    "request-bytes": ("knot_request_bytes_total", "operation"),
    "response-bytes": ("knot_response_bytes_total", "type"),
}
HELP = {
    "knot_up": ("gauge", "1 when Knot's control socket answered this scrape"),
    "knot_scrape_seconds": ("gauge", "time this scrape spent talking to Knot"),
    "knot_zones": ("gauge", "zones Knot has configured (server.zone-count)"),
    "knot_queries_total": ("counter", "queries received, per protocol (mod-stats request-protocol)"),
    "knot_responses_total": ("counter", "responses sent, per RCODE (mod-stats response-code)"),
    "knot_query_types_total": ("counter", "queries received, per QTYPE (mod-stats query-type)"),
    "knot_operations_total": ("counter", "requests, per server operation (mod-stats server-operation)"),
    "knot_request_bytes_total": ("counter", "bytes received, per operation (mod-stats request-bytes)"),
    "knot_response_bytes_total": ("counter", "bytes sent, per kind (mod-stats response-bytes)"),
    "knot_rrl_dropped_total": ("counter", "answers dropped by response rate limiting"),
    "knot_rrl_slipped_total": ("counter", "answers sent truncated by response rate limiting"),
    "knot_stat": ("untyped", "any other counter of `knotc stats`"),
    "knot_zone_serial": ("gauge", "SOA serial of the zone Knot serves"),
    "knot_zone_refresh_in_seconds": ("gauge", "seconds until the next SOA refresh (secondary)"),
    "knot_zone_expires_in_seconds": ("gauge", "seconds until the zone expires unless refreshed (secondary)"),
    "knot_zone_soa_expire_seconds": ("gauge", "the expire field of the zone's SOA"),
    "knot_zone_soa_refresh_seconds": ("gauge", "the refresh field of the zone's SOA"),
    "knot_zone_soa_retry_seconds": ("gauge", "the retry field of the zone's SOA"),
    "knot_tls_cert_expires_in_seconds": ("gauge", "seconds until the zone-transfer TLS certificate expires"),
    "knot_zone_rrsig_expires_in_seconds": ("gauge", "seconds until the earliest RRSIG at the apex expires"),
    "knot_served_signed": ("gauge", "1 when the address answered the apex SOA and DNSKEY of the zone, each signed"),
    "knot_served_rrsig_expires_in_seconds": ("gauge", "seconds until the earliest RRSIG served with the type expires"),
    "knot_served_rrsig_inception_in_seconds": (
        "gauge", "seconds until the latest RRSIG served with the type becomes valid (negative: valid since)"),
}
# The apex RRsets whose signatures every validator checks first, asked at each scrape.
SERVED_TYPES = ("SOA", "DNSKEY")


def knot_seconds(text: str | None) -> float | None:
    """Seconds from a Knot timer ("+13D23h58m42s", "-2m", "0"); None for "-", "pending", ... ."""
    if text is None:
        return None
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    match = TIME_RE.match(text)
    if not match:
        return None
    total = sum(int(n) * TIME_UNITS[u] for n, u in re.findall(r"(\d+)([YMDhms])", match.group(2)))
    return float(-total if match.group(1) == "-" else total)


def rrsig_expiration(rdata: str) -> float | None:
    """The expiration (Unix time) of an RRSIG in presentation format; None if unreadable."""
    fields = rdata.split()
    if len(fields) < 5:
        return None
    value = fields[4]
    if re.fullmatch(r"\d{14}", value):
        return float(calendar.timegm(time.strptime(value, "%Y%m%d%H%M%S")))
    if value.isdigit():
        return float(value)
    return None



def _zone(name: str) -> str:
    return name[:-1] if name.endswith(".") and name != "." else name


class Samples:
    """Metric families by name, built up sample by sample."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def add(self, name: str, value: float, **labels: str) -> None:
        family = self.families.get(name)
        if family is None:
            kind, helptext = HELP.get(name, ("untyped", name))
            cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}.get(kind, UntypedMetricFamily)
            family = self.families[name] = cls(name, helptext, labels=sorted(labels))
        family.add_metric([str(labels[k]) for k in sorted(labels)], value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.families[name] for name in sorted(self.families))


def stats_metrics(metrics: Samples, stats: dict) -> None:
    """`knotc stats` as libknot returns it: {section: {item: value | {id: value}}}."""
    for section, items in sorted(stats.items()):
        if section == "zone" or not isinstance(items, dict):
            continue
        for item, value in sorted(items.items()):
            if section == "server" and item == "zone-count":
                metrics.add("knot_zones", value)
            elif section == "mod-stats" and item in MOD_STATS and isinstance(value, dict):
                name, label = MOD_STATS[item]
                for ident, count in sorted(value.items()):
                    # Some 90 query types exist: only those seen so far get a series.
                    if count or item != "query-type":
                        metrics.add(name, count, **{label: ident})
            elif section == "mod-rrl" and item in ("dropped", "slipped") and not isinstance(value, dict):
                metrics.add(f"knot_rrl_{item}_total", value)
            elif isinstance(value, dict):
                for ident, count in sorted(value.items()):
                    metrics.add("knot_stat", count, section=section, item=item, id=ident)
            else:
                metrics.add("knot_stat", value, section=section, item=item, id="")


def zone_metrics(metrics: Samples, status: dict, apex: dict, now: float) -> None:
    """status: zone-status {zone: {field: text}}; apex: {zone: {"SOA": [rdata], "RRSIG": [rdata]}}."""
    for zone, fields in sorted(status.items()):
        label = _zone(zone)
        serial = fields.get("serial")
        if serial and serial.isdigit():
            metrics.add("knot_zone_serial", int(serial), zone=label)
        for field, name in (("refresh", "knot_zone_refresh_in_seconds"),
                            ("expiration", "knot_zone_expires_in_seconds")):
            seconds = knot_seconds(fields.get(field))
            if seconds is not None:
                metrics.add(name, seconds, zone=label)
        records = apex.get(zone, {})
        soa = (records.get("SOA") or [None])[0]
        if soa and len(soa.split()) == 7:
            fields_soa = soa.split()
            metrics.add("knot_zone_soa_refresh_seconds", int(fields_soa[3]), zone=label)
            metrics.add("knot_zone_soa_retry_seconds", int(fields_soa[4]), zone=label)
            metrics.add("knot_zone_soa_expire_seconds", int(fields_soa[5]), zone=label)
        expirations = [e for e in map(rrsig_expiration, records.get("RRSIG") or []) if e is not None]
        if expirations:
            metrics.add("knot_zone_rrsig_expires_in_seconds", round(min(expirations) - now, 3), zone=label)


def served_signatures(address: str, zone: str, timeout: float = 1.0, port: int = 53) -> dict[str, tuple[float, float]]:
    """Per type of SERVED_TYPES, (earliest expiration, latest inception) in Unix time of the RRSIGs
    ADDRESS sends with the answer for ZONE's apex, asked with the DO bit over UDP (again over TCP
    when truncated). A type answered without a signature is left out. Raises dns.exception.DNSException
    or OSError when ADDRESS does not answer."""
    windows = {}
    for rtype in SERVED_TYPES:
        query = dns.message.make_query(zone, rtype, want_dnssec=True)
        query.flags &= ~dns.flags.RD
        answer = dns.query.udp(query, address, timeout=timeout, port=port)
        if answer.flags & dns.flags.TC:
            answer = dns.query.tcp(query, address, timeout=timeout, port=port)
        covered = dns.rdatatype.from_text(rtype)
        sigs = [sig for rrset in answer.answer if rrset.rdtype == dns.rdatatype.RRSIG
                for sig in rrset if sig.type_covered == covered]
        if sigs:
            windows[rtype] = (float(min(sig.expiration for sig in sigs)), float(max(sig.inception for sig in sigs)))
    return windows


def served_metrics(metrics: Samples, addresses: list[str], zones: list[str], now: float,
                   ask=served_signatures) -> None:
    """What ADDRESSES serve for ZONES (the signed ones): see served_signatures. An address that does
    not answer one zone is not asked the others in this scrape (each would wait for its timeout)."""
    for address in addresses:
        answering = True
        for zone in zones:
            label = _zone(zone)
            windows = {}
            if answering:
                try:
                    windows = ask(address, zone)
                except (dns.exception.DNSException, OSError, ValueError):
                    answering = False
            metrics.add("knot_served_signed", int(set(windows) == set(SERVED_TYPES)), address=address, zone=label)
            for rtype, (expiration, inception) in sorted(windows.items()):
                metrics.add("knot_served_rrsig_expires_in_seconds", round(expiration - now, 3),
                            address=address, zone=label, type=rtype)
                metrics.add("knot_served_rrsig_inception_in_seconds", round(inception - now, 3),
                            address=address, zone=label, type=rtype)


# path -> (the file's identity when it was read, its notAfter): a certificate changes when its file
# does, so `openssl x509` runs once per file version, not at every scrape (every 5 s on the lab).
_NOT_AFTER: dict[str, tuple[tuple[int, int, int, int], float | None]] = {}


def cert_not_after(path: str) -> float | None:
    """The notAfter of a PEM certificate (Unix time), read with `openssl x509` when the file is new or
    changed (inode, size, mtime, ctime) since the last read; None when the file is missing or
    unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        _NOT_AFTER.pop(path, None)
        return None
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _NOT_AFTER.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        proc = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # not remembered: asked again at the next scrape
    value = parse_not_after(proc.stdout) if proc.returncode == 0 else None
    _NOT_AFTER[path] = (key, value)
    return value


def parse_not_after(text: str) -> float | None:
    """`notAfter=Feb 28 14:39:27 2027 GMT` -> Unix time; None if the line is not there."""
    match = re.search(r"notAfter=(\w{3}\s+\d{1,2} \d{2}:\d{2}:\d{2} \d{4}) GMT", text)
    if not match:
        return None
    return float(calendar.timegm(time.strptime(" ".join(match.group(1).split()), "%b %d %H:%M:%S %Y")))


def cert_metrics(metrics: Samples, certs: list[str], now: float, read=cert_not_after) -> None:
    for path in certs:
        not_after = read(path)
        if not_after is not None:
            metrics.add("knot_tls_cert_expires_in_seconds", round(not_after - now, 3), file=path)


class Knot:
    """One control-socket conversation per scrape (Knot serves one control client at a time)."""

    def __init__(self, socket_path: str, timeout: int):
        import libknot  # noqa: PLC0415 - only the daemon needs it; the unit tests import this file without
        import libknot.control  # noqa: PLC0415

        libknot.Knot()
        self.control = libknot.control
        self.socket_path = socket_path
        self.timeout = timeout
        self.lock = threading.Lock()

    def _ask(self, ctl, reader, **query):
        ctl.send_block(**query)
        return reader()

    def read(self) -> tuple[dict, dict, dict]:
        with self.lock:
            ctl = self.control.KnotCtl()
            ctl.set_timeout(self.timeout)
            ctl.connect(self.socket_path)
            try:
                stats = self._ask(ctl, ctl.receive_stats, cmd="stats", flags="F")
                status = self._ask(ctl, ctl.receive_block, cmd="zone-status")
                apex: dict[str, dict[str, list[str]]] = {}
                for zone in status:
                    for rtype in ("SOA", "RRSIG"):
                        try:
                            answer = self._ask(ctl, ctl.receive_block, cmd="zone-read", zone=zone, owner="@",
                                               rtype=rtype)
                        except self.control.KnotCtlErrorRemote:
                            continue  # no such record (an unsigned zone has no RRSIG)
                        data = answer.get(zone, {}).get(zone, {}).get(rtype, {}).get("data", [])
                        apex.setdefault(zone, {})[rtype] = list(data)
            finally:
                try:
                    ctl.send(self.control.KnotCtlType.END)
                finally:
                    ctl.close()
        return stats, status, apex


class KnotCollector:
    """prometheus_client collector: one conversation with Knot per scrape."""

    def __init__(self, knot, certs: list[str] | None = None, served: list[str] | None = None,
                 ask=served_signatures) -> None:
        self.knot = knot
        self.certs = list(certs or [])
        self.served = list(served or [])
        self.ask = ask
        self.last_ok = False
        self.last_error = ""

    def collect(self) -> Iterator[Metric]:
        metrics = Samples()
        started = time.monotonic()
        try:
            stats, status, apex = self.knot.read()
        except Exception as exc:  # noqa: BLE001 - any failure of the socket means "Knot did not answer"
            self.last_ok, self.last_error = False, str(exc)
            metrics.add("knot_up", 0)
        else:
            self.last_ok, self.last_error = True, ""
            metrics.add("knot_up", 1)
            stats_metrics(metrics, stats)
            zone_metrics(metrics, status, apex, time.time())
            # The zones Knot signs or serves signed: an unsigned zone has no signature to judge.
            signed = sorted(zone for zone, records in apex.items() if records.get("RRSIG"))
            served_metrics(metrics, self.served, signed, time.time(), self.ask)
        metrics.add("knot_scrape_seconds", round(time.monotonic() - started, 4))
        cert_metrics(metrics, self.certs, time.time())
        yield from metrics


def registry(collector: KnotCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-knot-exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"anycast-knot-exporter (anycast-agents) {__version__}")
    parser.add_argument("--listen", default=paths.KNOT_EXPORTER_LISTEN, help="ADDR:PORT to serve /metrics on")
    parser.add_argument("--socket", default=paths.KNOT_SOCKET, help="Knot's control socket")
    parser.add_argument("--timeout", type=int, default=3, help="control-socket timeout, seconds")
    parser.add_argument("--tls-cert", action="append", default=None, metavar="PATH",
                        help=f"a TLS certificate whose expiry to report (repeatable; default {paths.XOT_CERT})")
    parser.add_argument("--served", action="append", default=[], metavar="ADDR",
                        help="an address whose answers' RRSIGs to report, for every signed zone (repeatable)")
    parser.add_argument("--once", action="store_true", help="print the metrics once and exit")
    args = parser.parse_args(argv)
    for address in args.served:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            parser.error(f"--served {address!r}: not an IP address")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen {args.listen!r}: expected ADDR:PORT")
    collector = KnotCollector(Knot(args.socket, max(1, args.timeout)), args.tls_cert or [paths.XOT_CERT], args.served)
    reg = registry(collector)
    if args.once:
        sys.stdout.write(generate_latest(reg).decode())
        if not collector.last_ok:
            print(f"# knot did not answer: {collector.last_error}")
        return 0 if collector.last_ok else 1
    start_http_server(int(port), addr=host.strip("[]"), registry=reg)
    print(f"anycast-knot-exporter {__version__}: serving http://{args.listen}/metrics (socket {args.socket})",
          flush=True)
    threading.Event().wait()
    return 0
