"""Benchmarks on a running lab, written to reports/ (Markdown and summary.json). `make bench` runs
them on a fresh lab with site.yml applied.

    python -m anycast_lab.bench speed|rtt|failover|scale|firewall [--out reports]

rtt: the catchment and RTT table of seed 002 section 4: per client region, the RTT to a single
unicast site in Hong Kong, the RTT to the anycast address, the PoP that answered (NSID) and the
improvement. RTTs are modelled (this kernel has no netem): the sum of the modelled latencies of
the links the packets really cross, both ways, following the lab's forwarding tables.
The unicast site is hkg1 reached without anycast: the path to its transit router's loopback (the
lab's Internet carries no route to the servers' transit links) plus that router's link to hkg1.

failover: the faults of the health issue on fra1, with our anycast_health and with seed 002's
recipe (lab/playbooks/seed002.yml) in the same run (lab/anycast_lab/failover.py): failover.md, one
timeline PNG per fault, failover.png, summary.json key `failover` (ours_ms, seed_ms per fault).
Leaves fra1 on anycast_health's daemon.

speed: playbook timings, the old way (the commit before the speed work) against the new way, each
on a fresh lab (lab/anycast_lab/speed.py): first converge, idempotent runs, rolling.yml with nothing
to change, a forced full rolling run, a round of fact gathering -> speed.md, summary.json key
`speed` (with the new/old ratios). Leaves the lab up, converged the new way. scale: removes the
lab, brings up a bigger one (lab/anycast_lab/scale.py: extra real PoP servers) and, the old way
then the new way, converges it and times the idempotent site.yml for the first 5, 10, 20 PoP
servers (--servers) -> timings.md, timings.png, summary.json `timings.idempotent_by_servers`;
the scaled lab is removed afterwards.
firewall: one PoP server's answered queries per second (dnsperf from London at the anycast address)
with the host firewall on and off, alternating, in one run (lab/anycast_lab/fwbench.py) ->
firewall.md, summary.json key `firewall` (the on/off ratio of the medians).
Every ansible-playbook run's output goes to <out>/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from . import engine, failover, fwbench, plots, scale, speed, topology
from .paths import REPO
from .playbook import playbook
from .probe import run_probe, walk_path
from .shell import LabError

UNICAST_SERVER = "hkg1"
PROBE_RATE, PROBE_SECONDS = 10.0, 2.0  # 20 queries per region: who answers (NSID)


def improvement_pct(unicast_ms: float, anycast_ms: float) -> float:
    """How much shorter the anycast RTT is, in percent of the unicast one (negative when longer)."""
    if unicast_ms <= 0:
        return 0.0
    return round(100.0 * (unicast_ms - anycast_ms) / unicast_ms, 1)


def unicast_target(topo: topology.Topology, server: str) -> tuple[str, float]:
    """(address to walk to, extra one-way ms): the loopback of the server's transit router, and
    the latency of that router's link to the server."""
    node = topo.nodes[server]
    for iface in node.interfaces:
        peer = topo.nodes.get(iface.peer) if iface.peer else None
        if peer is not None and peer.kind == "router" and peer.role == "transit":
            return str(peer.loopback4), iface.latency_ms
    raise LabError(f"{server} has no transit router in the topology")


def pop_of(topo: topology.Topology, server: str | None) -> str | None:
    """The PoP of a lab server: the topology's city code of that node (hkg2 -> hkg)."""
    node = topo.nodes.get(server) if server else None
    return node.city if node is not None else None


def rtt_rows(topo: topology.Topology, anycast: str, progress=print) -> list[dict]:
    target, last_hop_ms = unicast_target(topo, UNICAST_SERVER)
    rows = []
    for client in topo.of_kind("client"):
        uni = walk_path(topo, client.name, target)
        if uni["modelled_rtt_ms"] is None:
            raise LabError(f"{client.name}: no path to {target}: {uni.get('error')}")
        unicast_ms = round(uni["modelled_rtt_ms"] + 2 * last_hop_ms, 1)
        probe = run_probe(topo, client=client.name, target=anycast, rate=PROBE_RATE, duration=PROBE_SECONDS)
        s = probe["summary"]
        if s["modelled_rtt_ms"] is None:
            raise LabError(f"{client.name}: no path to {anycast}: the anycast address is not announced?")
        answers = Counter({k: v for k, v in s["answers_per_node"].items() if k != "(no nsid)"})
        answered = answers.most_common(1)[0][0] if answers else None
        anycast_ms = round(s["modelled_rtt_ms"], 1)
        row = {"region": client.name, "city": topo.cities[client.city]["name"], "pop": pop_of(topo, answered),
               "answered_by": answered, "answers": dict(answers), "sent": s["sent"], "lost": s["lost"],
               "unicast_ms": unicast_ms, "anycast_ms": anycast_ms,
               "improvement_pct": improvement_pct(unicast_ms, anycast_ms),
               "anycast_path": s["path"], "unicast_path": uni["path"] + [UNICAST_SERVER]}
        progress(f"[bench] {row['city']}: unicast {row['unicast_ms']} ms, anycast {row['anycast_ms']} ms "
                 f"({row['answered_by']}), {row['improvement_pct']} %")
        rows.append(row)
    return rows


def rtt_markdown(rows: list[dict], anycast: str) -> str:
    lines = [
        "# Catchment and RTT per client region",
        "",
        f"Anycast address {anycast}; the unicast site is {UNICAST_SERVER} in Hong Kong alone. RTTs are",
        "**modelled** (this kernel has no netem): the sum of the modelled latencies of the links the",
        "packets really cross, both ways, as the lab's forwarding tables route them (a link's latency is",
        "its great-circle distance at 200 km/ms). Who answered: NSID of the anycast answers.",
        "",
        "| Region | Unicast (Hong Kong) | Anycast | Answered by (PoP) | Improvement |",
        "|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['city']} ({r['region']}) | {r['unicast_ms']:.1f} ms | {r['anycast_ms']:.1f} ms | "
                     f"{r['answered_by']} ({r['pop']}) | {r['improvement_pct']:.1f} % |")
    lines += ["", "Paths (anycast):", ""]
    lines += [f"- {r['region']}: {' > '.join(r['anycast_path'])}" for r in rows]
    return "\n".join(lines) + "\n"


def summary_rtt(rows: list[dict]) -> list[dict]:
    """summary.json's `rtt`: one entry per region with pop, unicast_ms, anycast_ms."""
    return [{"region": r["region"], "pop": r["pop"], "unicast_ms": r["unicast_ms"], "anycast_ms": r["anycast_ms"],
             "improvement_pct": r["improvement_pct"]} for r in rows]


def merge_summary(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_failover(topo: topology.Topology, out: Path, faults=failover.FAULTS) -> list[dict]:
    results = failover.run_all(topo, out, faults)
    rows = failover.side_by_side(results)
    (out / "failover.json").write_text(json.dumps(results, indent=1) + "\n")
    for fault in dict.fromkeys(r["fault"] for r in results):
        plots.timeline_png([r for r in results if r["fault"] == fault], failover.NODE,
                           lambda server: pop_of(topo, server), out / f"failover-{fault}.png")
    plots.outages_png(rows, out / "failover.png")
    (out / "failover.md").write_text(failover.markdown(rows, results))
    merge_summary(out / "summary.json", "failover", rows)
    print(f"[bench] wrote {out / 'failover.md'}, {len(rows) + 1} PNG plots and the `failover` key of "
          f"{out / 'summary.json'}")
    return rows


def merge_timings(out: Path, **values) -> None:
    path = out / "summary.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("timings", {}).update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def bench_speed(out: Path, repeat: int) -> dict:
    data = speed.run(out, repeat)
    merge_summary(out / "summary.json", "speed", data)
    (out / "speed.md").write_text(speed.markdown(data))
    r = data["ratios"]
    print(f"[bench] new/old: idempotent {r['idempotent']}, first converge {r['first_converge']}, rolling with "
          f"nothing to change {r['rolling_nothing_to_change_vs_old_full']}; wrote {out / 'speed.md'}")
    return data


def lab_cli(args: list[str], env: dict | None = None, timeout: float = 900) -> None:
    argv = [sys.executable, "-m", "anycast_lab", *args]
    proc = subprocess.run(argv, env=dict(env or os.environ, PYTHONPATH=str(REPO / "lab")),  # noqa: S603
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise LabError(f"anycast-lab {' '.join(args)} failed (rc={proc.returncode})")


def bench_scale(out: Path, sizes: list[int], baseline: str = speed.BASELINE) -> list[dict]:
    base = [n.name for n in topology.load().of_kind("server") if not n.role]
    if min(sizes) < len(base):
        raise LabError(f"the lab has {len(base)} PoP servers; sizes must be at least that")
    directory = Path(tempfile.mkdtemp(prefix="anycast-lab-scaled-"))
    extra = scale.write(directory, max(sizes) - len(base))
    order = base + extra
    env = scale.env(directory)
    lab_env = {k: env[k] for k in ("ANYCAST_LAB_TOPOLOGY", "ANYCAST_LAB_ROUTERS")}
    inventory = directory / "inventory"
    print(f"[bench] scaled lab: {len(order)} PoP servers ({', '.join(extra)} added), in {directory}", flush=True)
    engine.down(quiet=True)
    rows, first = [], {}
    try:
        lab_cli(["up"], env)
        with speed.checkout(baseline) as tree:
            # The old way on the fresh scaled lab, then the new way over it (its first run updates).
            for way in (speed.Way("old", tree), speed.Way("new", REPO)):
                first[way.name] = playbook(f"scaled-{way.name}-site-first-{len(order)}",
                                           ["site.yml", "--skip-tags", "monitoring"], out, inventory,
                                           way.env(lab_env), cwd=way.tree)
                for n in sorted(sizes):
                    limit = ",".join(["localhost", "dns_primary", *order[:n]])
                    seconds = speed.idempotent(f"scaled-{way.name}-site-idempotent-{n}", way, out, inventory,
                                               ["--skip-tags", "monitoring", "--limit", limit])
                    rows.append({"way": way.name, "servers": n, "seconds": seconds, "changed": 0})
    finally:
        lab_cli(["down"], env)
        shutil.rmtree(directory, ignore_errors=True)
    merge_timings(out, scaled_first_converge={"servers": len(order), "old": first["old"],
                                              "new_over_old": first["new"]},
                  idempotent_by_servers=rows, baseline=baseline)
    plots.timings_png(rows, out / "timings.png")
    (out / "timings.md").write_text(timings_markdown(json.loads((out / "summary.json").read_text())["timings"]))
    print(f"[bench] wrote {out / 'timings.md'}, {out / 'timings.png'} and `timings` in {out / 'summary.json'}")
    return rows


def timings_markdown(t: dict) -> str:
    lines = ["# Idempotent site.yml against the number of PoP servers", "",
             "Wall-clock seconds of ansible-playbook on this host (2 CPU cores shared by every lab machine;",
             "forks 20), on one scaled lab: the old way (commit " + t.get("baseline", speed.BASELINE) + ") first,",
             "then the new way. The lab's machines are containers on one host, so the figures show how the runs",
             "grow, not what a real fleet takes.", ""]
    if "scaled_first_converge" in t:
        f = t["scaled_first_converge"]
        lines += [f"First converge of the scaled lab ({f['servers']} PoP servers, without monitoring), old way: "
                  f"{f['old']['seconds']:.1f} s, {f['old']['changed']} changed; the new way's first run over it "
                  f"(an update): {f['new_over_old']['seconds']:.1f} s.", ""]
    rows = t.get("idempotent_by_servers", [])
    if rows:
        by = {(r.get("way", "new"), r["servers"]): r["seconds"] for r in rows}
        lines += ["Idempotent site.yml (without monitoring; the hidden primary and the controller's checks",
                  "included) against the number of PoP servers in the run (`--limit`):", "",
                  "| PoP servers | Old way (s) | Old, per server | New way (s) | New, per server | New / old |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for n in sorted({r["servers"] for r in rows}):
            old, new = by.get(("old", n)), by.get(("new", n))
            cells = [f"{v:.1f} | {v / n:.1f}" if v is not None else "- | -" for v in (old, new)]
            ratio = f"{new / old:.2f}" if old and new else "-"
            lines.append(f"| {n} | {cells[0]} | {cells[1]} | {ratio} |")
        lines += ["", "Plot: timings.png."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anycast_lab.bench", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["speed", "rtt", "failover", "scale", "firewall"], help="which benchmark")
    parser.add_argument("--repeat", type=int, default=speed.REPEAT, help="speed: runs of each timed step (default 3)")
    parser.add_argument("--servers", default="5,10,20", help="scale: PoP server counts to time (default 5,10,20)")
    parser.add_argument("--faults", help="failover: only these faults (comma-separated keys: "
                        + ",".join(f.key for f in failover.FAULTS) + ")")
    parser.add_argument("--out", default="reports", help="directory of the reports (default: reports)")
    parser.add_argument("--anycast", default="203.0.113.53", help="the anycast address to measure")
    args = parser.parse_args(argv)
    topo = topology.load()
    topo.require_lab_address(args.anycast, "anycast address", "the bench only measures the lab")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faults = failover.FAULTS
    if args.faults:
        known = {f.key: f for f in failover.FAULTS}
        unknown = [k for k in args.faults.split(",") if k not in known]
        if unknown:
            parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(known)}")
        faults = tuple(known[k] for k in args.faults.split(","))
    try:
        if args.what == "failover":
            write_failover(topo, out, faults)
            return 0
        if args.what == "speed":
            bench_speed(out, args.repeat)
            return 0
        if args.what == "firewall":
            data = fwbench.run()
            (out / "firewall.md").write_text(fwbench.markdown(data))
            merge_summary(out / "summary.json", "firewall", data)
            print(f"[bench] firewall on/off: {data['ratio']} (medians {data['median_on']:.0f} / "
                  f"{data['median_off']:.0f} q/s); wrote {out / 'firewall.md'}")
            return 0
        if args.what == "scale":
            bench_scale(out, [int(x) for x in args.servers.split(",")])
            return 0
        rows = rtt_rows(topo, args.anycast)
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    (out / "rtt.md").write_text(rtt_markdown(rows, args.anycast))
    merge_summary(out / "summary.json", "rtt", summary_rtt(rows))
    print(f"[bench] wrote {out / 'rtt.md'} and the `rtt` key of {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
