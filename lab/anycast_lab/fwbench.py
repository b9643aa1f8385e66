"""What the host firewall costs in query capacity: one PoP server's answered queries per second from a
client region (dnsperf), with the firewall's table loaded and removed, in alternating rounds of the
same run (this host is shared and noisy: only the ratio of the medians is compared).

The client region is London, whose catchment is fra1 (tests/lab/test_lab.py asserts it). Knot's
response rate limiting would throttle the one bench client long before the firewall matters (the
lab's limit is 200 answers/s per /24): for the run, the client's network is added to RRL's
whitelist in fra1's knot.conf and Knot reloads; the file saved before is put back and Knot reloads
again afterwards, whatever happens. (`knotc conf-set` does not do: a Knot that reads a
configuration file, as ours does, has no configuration database to change.) The firewall comes back
through its own unit (`systemctl restart anycast-firewall`: the confirmed ruleset), whatever happens.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from . import engine
from .shell import LabError

SERVER, CLIENT, CLIENT_NET = "fra1", "cl-lon", "100.80.4.0/24"
TARGET = "203.0.113.53"
ROUNDS, SECONDS, CLIENTS = 5, 8, 8
KNOT_CONF, KNOT_SAVED = "/etc/knot/knot.conf", "/run/anycast-bench-knot.conf"
QUERIES = ["example.com SOA", "example.net SOA", "www.example.com A", "example.com NS", "nx.example.net A"]


def lab_exec(node: str, *argv: str, timeout: float = 120, check: bool = True,
             input_text: str | None = None) -> subprocess.CompletedProcess:
    return engine.node_run(node, list(argv), check=check, timeout=timeout, input_text=input_text)


def whitelisted(conf: str, network: str) -> str:
    """knot.conf with NETWORK on the whitelist of the RRL module `default` (added, or appended to)."""
    lines = conf.splitlines()
    try:
        head = lines.index("mod-rrl:")
        first = next(i for i in range(head + 1, len(lines)) if lines[i].strip() == "- id: default")
    except (ValueError, StopIteration) as exc:
        raise LabError(f"{SERVER}: no RRL module 'default' in {KNOT_CONF}") from exc
    block_end = next((i for i in range(first + 1, len(lines))
                      if not lines[i].startswith("    ") or lines[i].strip().startswith("- ")), len(lines))
    for i in range(first + 1, block_end):
        m = re.match(r"^(\s+whitelist: \[)(.*)\]\s*$", lines[i])
        if m:
            lines[i] = f"{m.group(1)} {network}, {m.group(2).strip()} ]"
            break
    else:
        lines.insert(block_end, f"    whitelist: [ {network} ]")
    return "\n".join(lines) + "\n"


def exempt_client() -> str:
    """Whitelists the client's network in RRL on the server; says what was done."""
    conf = lab_exec(SERVER, "cat", KNOT_CONF).stdout
    lab_exec(SERVER, "cp", "-p", KNOT_CONF, KNOT_SAVED)
    lab_exec(SERVER, "sh", "-c", f"cat > {KNOT_CONF}", input_text=whitelisted(conf, CLIENT_NET))
    lab_exec(SERVER, "knotc", "conf-check")
    lab_exec(SERVER, "knotc", "reload")
    limit = re.search(r"^\s+rate-limit: (\d+)\s*$", conf, re.M)
    return (f"{CLIENT_NET} whitelisted on {SERVER} for the run (its limit otherwise: "
            f"{limit.group(1) + ' answers/s per /24' if limit else 'unknown'})")


def restore_knot() -> None:
    """Puts back the knot.conf saved by exempt_client, if it saved one, and reloads Knot."""
    lab_exec(SERVER, "sh", "-c", f"if test -f {KNOT_SAVED}; then cp -p {KNOT_SAVED} {KNOT_CONF} && rm {KNOT_SAVED} "
             "&& knotc reload; fi")


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
    runs: list[dict] = []
    rrl = "not changed"
    try:
        rrl = exempt_client()
        progress(f"[bench] {rrl}")
        for idx in range(rounds):
            for on in (False, True) if idx % 2 == 0 else (True, False):
                firewall(on)
                result = dnsperf(query_file)
                runs.append({"firewall": on, **result})
                progress(f"[bench] firewall {'on ' if on else 'off'}: {result['qps']:.0f} q/s answered, "
                         f"{result['lost']} lost")
    finally:
        firewall(True)
        restore_knot()
        Path(query_file).unlink(missing_ok=True)
    on = [r["qps"] for r in runs if r["firewall"]]
    off = [r["qps"] for r in runs if not r["firewall"]]
    return {"server": SERVER, "client": CLIENT, "target": TARGET, "seconds": SECONDS, "rounds": rounds,
            "rrl": rrl, "runs": runs, "median_on": statistics.median(on), "median_off": statistics.median(off),
            "ratio": round(statistics.median(on) / statistics.median(off), 3),
            "spread_on": [min(on), max(on)], "spread_off": [min(off), max(off)],
            "lost": sum(r["lost"] or 0 for r in runs)}


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
             f"Ratio on/off of the medians: **{data['ratio']}** (target: at least 0.95). Queries lost in all runs: "
             f"{data['lost']}.", ""]
    return "\n".join(lines)
