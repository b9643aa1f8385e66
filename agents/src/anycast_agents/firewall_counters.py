"""anycast-firewall-counters: what the host firewall dropped, by reason, for node_exporter's textfile
collector.

The firewall (role host_firewall) counts its drops in named nftables counters, dropped_<reason>, in
its own table. Each round reads them once (`nft -j list counters table inet TABLE`) and replaces the
textfile in one rename. With --every SECONDS it stays running and does so every SECONDS (the role's
service); without, once. A process that stays costs one nft per round; a timer that started it
every 10 s cost a Python start (its imports compiled from the zipapp) and a sandbox set-up each time."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__, paths

PREFIX = "dropped_"


def parse(document: str, table: str) -> dict[str, tuple[int, int]]:
    """reason -> (packets, bytes) of the counters named dropped_<reason> in TABLE (family inet)."""
    out: dict[str, tuple[int, int]] = {}
    for item in json.loads(document).get("nftables", []):
        counter = item.get("counter") if isinstance(item, dict) else None
        if not counter or counter.get("table") != table or counter.get("family") != "inet":
            continue
        name = str(counter.get("name", ""))
        if name.startswith(PREFIX):
            out[name[len(PREFIX):]] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return out


def read(nft: str, table: str) -> dict[str, tuple[int, int]] | None:
    """The counters, or None when the table is not loaded (or nft fails)."""
    try:
        proc = subprocess.run([nft, "-j", "list", "counters", "table", "inet", table], capture_output=True,
                              text=True, timeout=10, check=False, env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return parse(proc.stdout, table)
    except ValueError:
        return None


class Collector:
    def __init__(self, counters: dict[str, tuple[int, int]] | None, rolled_back: bool):
        self.counters = counters
        self.rolled_back = rolled_back

    def collect(self):
        loaded = GaugeMetricFamily("anycast_firewall_loaded", "1 when the host firewall's table is in the kernel")
        loaded.add_metric([], 1 if self.counters is not None else 0)
        yield loaded
        rolled = GaugeMetricFamily("anycast_firewall_rolled_back",
                                   "1 when the commit-confirm guard restored the previous ruleset "
                                   "(since the last load)")
        rolled.add_metric([], 1 if self.rolled_back else 0)
        yield rolled
        if self.counters is None:
            return
        packets = CounterMetricFamily("anycast_firewall_dropped_packets", "Packets the host firewall dropped",
                                      labels=["reason"])
        octets = CounterMetricFamily("anycast_firewall_dropped_bytes", "Bytes the host firewall dropped",
                                     labels=["reason"])
        for reason in sorted(self.counters):
            packets.add_metric([reason], self.counters[reason][0])
            octets.add_metric([reason], self.counters[reason][1])
        yield packets
        yield octets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anycast-firewall-counters", description=__doc__.split("\n")[0])
    parser.add_argument("--textfile", default=paths.FIREWALL_TEXTFILE,
                        help=f"the file to replace (default {paths.FIREWALL_TEXTFILE})")
    parser.add_argument("--table", default=paths.FIREWALL_TABLE, help=f"nftables table, family inet "
                        f"(default {paths.FIREWALL_TABLE})")
    parser.add_argument("--nft", default="/usr/sbin/nft", help="the nft command (default /usr/sbin/nft)")
    parser.add_argument("--rollback-mark", default=paths.FIREWALL_ROLLBACK_MARK,
                        help=f"the file the guard leaves when it fired (default {paths.FIREWALL_ROLLBACK_MARK})")
    parser.add_argument("--every", type=float, metavar="SECONDS",
                        help="stay running: write the textfile now and then every SECONDS, until SIGTERM "
                             "(default: once)")
    parser.add_argument("--json", action="store_true", help="print the counters as JSON instead (once)")
    parser.add_argument("--version", action="version",
                        version=f"anycast-firewall-counters (anycast-agents) {__version__}")
    args = parser.parse_args(argv)
    if args.every is not None and not args.every > 0:
        parser.error(f"--every {args.every}: must be more than 0 seconds")
    if args.json:
        counters = read(args.nft, args.table)
        print(json.dumps({"loaded": counters is not None,
                          "dropped": {k: {"packets": v[0], "bytes": v[1]} for k, v in (counters or {}).items()}}))
        return 0 if counters is not None else 1
    if args.every is None:
        return 0 if write(args) else 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ok = True
    while not stop.is_set():
        started = time.monotonic()
        was, ok = ok, write(args, quiet=not ok)
        if ok and not was:
            print(f"anycast-firewall-counters: {args.textfile} written again", file=sys.stderr)
        stop.wait(max(0.0, args.every - (time.monotonic() - started)))
    return 0


def write(args: argparse.Namespace, quiet: bool = False) -> bool:
    """One round: the counters read and the textfile replaced. False when it cannot be written
    (said on stderr unless QUIET: a loop says it once, not every round)."""
    registry = CollectorRegistry()
    registry.register(Collector(read(args.nft, args.table), os.path.exists(args.rollback_mark)))
    try:
        write_to_textfile(args.textfile, registry)
    except OSError as exc:
        if not quiet:
            print(f"anycast-firewall-counters: cannot write {args.textfile}: {exc}", file=sys.stderr)
        return False
    return True
