"""What the host firewall costs in query capacity: one PoP server's answered queries per second from a
client region (dnsperf), with the firewall's table loaded and removed, in alternating rounds of the
same run (this host is shared and noisy: only the ratio of the medians is compared).

The client region is London, whose catchment is fra1 (tests/lab/test_lab.py asserts it). Knot's
response rate limiting would throttle the one bench client long before the firewall matters: for
the run, the rate limit is raised out of reach (`knotc conf-set`), and `knotc reload` puts the
configuration file's back afterwards. The firewall comes back through its
own unit (`systemctl restart anycast-firewall`: the confirmed ruleset), whatever happens.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .paths import REPO
from .shell import LabError

SERVER, CLIENT, CLIENT_NET = "fra1", "cl-lon", "100.80.4.0/24"
TARGET = "203.0.113.53"
ROUNDS, SECONDS, CLIENTS = 3, 8, 8
RRL_BENCH = 1000000  # queries/s per address during the bench: RRL never throttles the one client
QUERIES = ["example.com SOA", "example.net SOA", "www.example.com A", "example.com NS", "nx.example.net A"]


def lab_exec(node: str, *argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "anycast_lab", "exec", node, "--", *argv],  # noqa: S603
                          env=dict(os.environ, PYTHONPATH=str(REPO / "lab")), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{node}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc


def dnsperf(query_file: str) -> dict:
    """One bounded dnsperf run from the client's namespace at the anycast address: answered q/s, lost."""
    out = lab_exec(CLIENT, "dnsperf", "-s", TARGET, "-d", query_file, "-l", str(SECONDS), "-c", str(CLIENTS),
                   "-T", "2", "-q", "64", "-t", "2", timeout=SECONDS + 60).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    completed = re.search(r"Queries completed:\s+(\d+)", out)
    if not qps:
        raise LabError(f"dnsperf printed no rate:\n{out[-800:]}")
    return {"qps": float(qps.group(1)), "lost": int(lost.group(1)) if lost else None,
            "completed": int(completed.group(1)) if completed else None}


def firewall(on: bool) -> None:
    if on:
        lab_exec(SERVER, "systemctl", "restart", "anycast-firewall")
    else:
        lab_exec(SERVER, "nft", "delete", "table", "inet", "anycast_firewall", check=False)


def run(rounds: int = ROUNDS, progress=print) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".queries", delete=False) as fh:
        fh.write("\n".join(QUERIES) + "\n")
        query_file = fh.name
    exempt = lab_exec(SERVER, "sh", "-c", "knotc conf-begin && knotc conf-set 'mod-rrl[default].rate-limit' "
                      f"{RRL_BENCH} && knotc conf-commit", check=False)
    rrl = f"rate-limit raised to {RRL_BENCH}/s" if exempt.returncode == 0 else "not configured"
    if exempt.returncode != 0:
        lab_exec(SERVER, "knotc", "conf-abort", check=False)
    runs: list[dict] = []
    try:
        for idx in range(rounds):
            for on in (False, True) if idx % 2 == 0 else (True, False):
                firewall(on)
                result = dnsperf(query_file)
                runs.append({"firewall": on, **result})
                progress(f"[bench] firewall {'on ' if on else 'off'}: {result['qps']:.0f} q/s answered, "
                         f"{result['lost']} lost")
    finally:
        firewall(True)
        if exempt.returncode == 0:
            lab_exec(SERVER, "knotc", "reload", check=False)
        Path(query_file).unlink(missing_ok=True)
    on = [r["qps"] for r in runs if r["firewall"]]
    off = [r["qps"] for r in runs if not r["firewall"]]
    return {"server": SERVER, "client": CLIENT, "target": TARGET, "seconds": SECONDS, "rounds": rounds,
            "rrl": rrl, "runs": runs, "median_on": statistics.median(on), "median_off": statistics.median(off),
            "ratio": round(statistics.median(on) / statistics.median(off), 3),
            "spread_on": [min(on), max(on)], "spread_off": [min(off), max(off)]}


def markdown(data: dict) -> str:
    lines = ["# What the host firewall costs in queries per second", "",
             f"dnsperf from {data['client']} (London) at {data['target']} (answered by {data['server']}), "
             f"{data['seconds']} s per run, {CLIENTS} client sockets, {data['rounds']} rounds alternating the order "
             f"of firewall off and on, in one run on this 2-core host (dnsperf and Knot share it). Knot's RRL: "
             f"{data['rrl']} during the bench.", "",
             "| | median q/s | lowest | highest |", "|---|---:|---:|---:|",
             f"| firewall on | {data['median_on']:.0f} | {data['spread_on'][0]:.0f} | {data['spread_on'][1]:.0f} |",
             f"| firewall off | {data['median_off']:.0f} | {data['spread_off'][0]:.0f} | "
             f"{data['spread_off'][1]:.0f} |", "",
             f"Ratio on/off of the medians: **{data['ratio']}** (target: at least 0.95).", ""]
    return "\n".join(lines)
