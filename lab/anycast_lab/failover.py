"""Failover timelines: the faults of the health issue, on fra1, seen by a client in London.

For each fault a client (cl-lon, whose only nearby PoP is fra1) queries the anycast address at a
steady rate from LEAD seconds before the fault until well after it; every query's send time,
answer and answering server (NSID) is kept. The same faults run twice in one run: with fra1 on
anycast_health's daemon (ours) and on seed 002's keepalived recipe, switched with the lab's
lab/playbooks/seed002.yml. The client's outage is the longest stretch without a good
answer (authoritative NOERROR; a SERVFAIL is an answer, not service).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import engine
from .paths import REPO, SEED002_PLAYBOOK
from .playbook import playbook
from .probe import run_probe
from .shell import LabError, run
from .topology import Topology

NODE, CLIENT, PRIMARY = "fra1", "cl-lon", "primary1"
SERVICE = {4: "203.0.113.53", 6: "2001:db8:53::1"}
RATE, TIMEOUT = 50.0, 0.5  # one query every 20 ms, each given 0.5 s
LEAD = 3.0  # seconds of steady service before each fault
PROFILES = ("daemon", "seed002")
STEADY_TIMEOUT = 180.0


@dataclass
class Ctx:
    topo: Topology
    fault_at: float | None = None
    cleared_at: float | None = None
    notes: list[str] = field(default_factory=list)

    def sh(self, node: str, cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(engine.exec_argv(self.topo, node, ["sh", "-c", cmd]), check=check, timeout=timeout)

    def inject(self) -> None:
        self.fault_at = time.time()

    def until(self, seconds: float) -> None:
        """Sleep until SECONDS after the fault."""
        time.sleep(max(0.0, self.fault_at + seconds - time.time()))

    def clear(self) -> None:
        self.cleared_at = time.time()


def _knot_killed(c: Ctx) -> None:
    c.inject()
    c.sh(NODE, "pkill -KILL -x knotd")


def _held(c: Ctx, seconds: float, do: str, undo: str, undo_check: bool = True) -> None:
    """The fault DO on NODE for SECONDS, then UNDO (also when something fails meanwhile)."""
    c.inject()
    c.sh(NODE, do)
    try:
        c.until(seconds)
    finally:
        c.sh(NODE, undo, check=undo_check)
        c.clear()


def _knot_stopped(c: Ctx) -> None:
    _held(c, 8, "systemctl stop knot", "systemctl start knot")


def _knot_hung(c: Ctx) -> None:
    _held(c, 6, "pkill -STOP -x knotd", "pkill -CONT -x knotd")


def _zone_servfail(c: Ctx) -> None:
    c.sh(PRIMARY, "knotc zone-xfr-freeze example.net")
    try:
        c.inject()
        c.sh(NODE, "knotc -f zone-purge example.net")
        c.until(6)
    finally:
        c.sh(PRIMARY, "knotc zone-xfr-thaw example.net")
        c.sh(NODE, "knotc zone-retransfer example.net", check=False)
        c.clear()


def _frr_restarted(c: Ctx) -> None:
    c.inject()
    c.sh(NODE, "systemctl restart frr")


def _keepalived_restarted(c: Ctx) -> None:
    c.inject()
    c.sh(NODE, "systemctl restart keepalived")


def _link_down(c: Ctx) -> None:
    # The link comes back by itself: upstream_links keeps its profile through the loss and
    # sysctl_tuning its IPv6 addresses (keep_addr_on_down); the bench sets nothing of its own.
    _held(c, 6, "ip link set eth1 down", "ip link set eth1 up")


def _powered_off(c: Ctx) -> None:
    c.inject()
    engine.poweroff(c.topo, NODE, max_off=120)
    c.until(8)


def _powered_off_after(c: Ctx) -> None:
    engine.poweron(c.topo, NODE)


def _rebooted(c: Ctx) -> None:
    c.inject()
    took = engine.reboot(c.topo, NODE)
    c.notes.append(f"machine running again after {took:.1f} s")


def _ipv6_broken(c: Ctx) -> None:
    _held(c, 6, f"ip -6 addr del {SERVICE[6]}/128 dev lo", f"ip -6 addr add {SERVICE[6]}/128 dev lo", undo_check=False)


def _knot_flapping(c: Ctx) -> None:
    c.inject()
    for i in range(6):
        c.until(3 * i)
        c.sh(NODE, "pkill -KILL -x knotd", check=False)
    c.clear()


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    duration: float  # seconds the client probes, LEAD included
    action: Callable[[Ctx], None]
    family: int = 4
    qname: str = "example.com."
    after: Callable[[Ctx], None] | None = None  # once the probe has ended (power back on)


FAULTS = (
    Fault("knot_killed", "Knot killed (SIGKILL)", 12, _knot_killed),
    Fault("knot_stopped", "Knot stopped, not restarted (8 s)", 16, _knot_stopped),
    Fault("knot_hung", "Knot hung (SIGSTOP for 6 s)", 14, _knot_hung),
    Fault("zone_servfail", "Knot SERVFAIL for example.net (6 s)", 14, _zone_servfail, qname="example.net."),
    Fault("frr_restarted", "FRR restarted", 15, _frr_restarted),
    Fault("keepalived_restarted", "keepalived restarted", 15, _keepalived_restarted),
    Fault("link_down", "upstream link down (6 s)", 14, _link_down),
    Fault("powered_off", "node powered off", 12, _powered_off, after=_powered_off_after),
    Fault("rebooted", "node rebooted", 45, _rebooted),
    Fault("ipv6_broken", "only IPv6 broken (IPv6 client, 6 s)", 14, _ipv6_broken, family=6),
    Fault("knot_flapping", "Knot crashing every 3 s (6 crashes)", 24, _knot_flapping),
)


def analyze(records: list[dict], fault_at: float, node: str, rate: float = RATE) -> dict:
    """The client's view of one fault, times in seconds from the fault: the longest stretch
    without a good answer (authoritative NOERROR; the run's edges count), who answered in order,
    and whether the client moved away from NODE."""
    if not records:
        raise LabError("the probe sent nothing")
    start = records[0]["at"] - fault_at
    end = records[-1]["at"] - fault_at + 1.0 / rate
    good = [r["at"] - fault_at for r in records if r.get("rcode") == "NOERROR" and r.get("aa")]
    edges = [start, *good, end]
    gaps = [(b - a, a, b) for a, b in zip(edges, edges[1:], strict=False)]
    longest, a, b = max(gaps)
    seq: list[str] = []
    for r in records:
        if r.get("nsid") and (not seq or seq[-1] != r["nsid"]):
            seq.append(r["nsid"])
    after = [r for r in records if r["at"] >= fault_at]
    return {
        "outage_ms": round(longest * 1000),
        "outage_window_s": [round(a, 3), round(b, 3)],
        "sent": len(records),
        "lost": sum(1 for r in records if r.get("rcode") is None),
        "servfail": sum(1 for r in records if r.get("rcode") not in (None, "NOERROR")),
        "sequence": seq,
        "moved": any(r.get("nsid") and r["nsid"] != node for r in after),
    }


def _probe_thread(topo: Topology, fault: Fault, box: dict) -> threading.Thread:
    def work() -> None:
        try:
            box["result"] = run_probe(topo, client=CLIENT, target=SERVICE[fault.family], rate=RATE,
                                      duration=fault.duration, timeout=TIMEOUT, qname=fault.qname)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc

    th = threading.Thread(target=work, daemon=True)
    th.start()
    return th


def served_by_node(topo: Topology) -> bool:
    """Do the client's IPv4 and IPv6 queries (both zones) all reach NODE, all answered?"""
    for fam, qname in ((4, "example.com."), (6, "example.com."), (4, "example.net.")):
        s = run_probe(topo, client=CLIENT, target=SERVICE[fam], rate=20, duration=1, timeout=TIMEOUT,
                      qname=qname)["summary"]
        if s["answers_per_node"] != {NODE: s["sent"]} or s["rcodes"] != {"NOERROR": s["sent"]}:
            return False
    return True


def wait_steady(topo: Topology, profile: str, progress=print) -> float:
    """NODE serving the client again; on the daemon profile the daemon is restarted first, so
    that damping forgets earlier faults. Seconds waited."""
    started = time.monotonic()
    c = Ctx(topo)
    if profile == "daemon":
        c.sh(NODE, "systemctl restart anycast-health")
    while time.monotonic() - started < STEADY_TIMEOUT:
        try:
            if served_by_node(topo):
                return time.monotonic() - started
        except LabError as exc:
            progress(f"[bench] waiting for {NODE}: {exc}")
        time.sleep(2)
    raise LabError(f"{NODE} not serving {CLIENT} again {STEADY_TIMEOUT:.0f} s after the last fault")


def measure(topo: Topology, fault: Fault, profile: str, progress=print) -> dict:
    waited = wait_steady(topo, profile, progress)
    box: dict = {}
    c = Ctx(topo)
    th = _probe_thread(topo, fault, box)
    time.sleep(LEAD)
    try:
        fault.action(c)
    finally:
        th.join(fault.duration + 60)
        if fault.after:
            fault.after(c)
    if "error" in box:
        raise LabError(f"{fault.key}: the probe failed: {box['error']}")
    if c.fault_at is None:
        raise LabError(f"{fault.key}: the fault was never injected")
    records = box["result"]["records"]
    res = analyze(records, c.fault_at, NODE)
    res.update({"fault": fault.key, "title": fault.title, "profile": profile, "steady_after_s": round(waited, 1),
                "cleared_s": round(c.cleared_at - c.fault_at, 3) if c.cleared_at else None, "notes": c.notes,
                "family": fault.family, "qname": fault.qname,
                "timeline": [[round(r["at"] - c.fault_at, 3), r.get("nsid"), r.get("rcode")] for r in records]})
    progress(f"[bench] {profile:8} {fault.title}: longest client outage {res['outage_ms']} ms, answered by "
             f"{' -> '.join(res['sequence']) or 'nobody'}")
    return res


def set_profile(profile: str, out: Path) -> dict:
    """Put PROFILE's health check on NODE (lab/playbooks/seed002.yml: seed 002's recipe, or
    anycast_health's daemon again); log in out/logs/."""
    return playbook(f"profile-{profile}", [str(SEED002_PLAYBOOK), "-l", NODE, "-e", f"lab_health={profile}"], out)


def run_all(topo: Topology, out: Path, faults=FAULTS, progress=print) -> list[dict]:
    results = []
    try:
        for profile in PROFILES:
            set_profile(profile, out)
            for fault in faults:
                results.append(measure(topo, fault, profile, progress))
    finally:
        set_profile("daemon", out)
        wait_steady(topo, "daemon", progress)
    return results


def side_by_side(results: list[dict]) -> list[dict]:
    """summary.json's `failover`: per fault, the longest client outage with ours and with seed 002."""
    by = {(r["fault"], r["profile"]): r for r in results}
    rows = []
    for fault in dict.fromkeys(r["fault"] for r in results):
        ours, seed = by.get((fault, "daemon")), by.get((fault, "seed002"))
        if not ours or not seed:
            continue
        rows.append({"fault": fault, "title": ours["title"], "ours_ms": ours["outage_ms"], "seed_ms": seed["outage_ms"],
                     "ours_moved": ours["moved"], "seed_moved": seed["moved"], "fault_cleared_s": ours["cleared_s"],
                     "ours_unserved": ours["lost"] + ours["servfail"],
                     "seed_unserved": seed["lost"] + seed["servfail"]})
    return rows


def health_timing(inventory: Path = REPO / "inventories" / "lab") -> dict:
    """The lab inventory's anycast_health (interval, timeout, fall, rise): what "ours" ran with."""
    path = inventory / "group_vars" / "all" / "health.yml"
    health = (yaml.safe_load(path.read_text()) or {}).get("anycast_health")
    if not isinstance(health, dict) or not {"interval", "timeout", "fall", "rise"} <= set(health):
        raise LabError(f"{path}: anycast_health needs interval, timeout, fall and rise; found {health!r}")
    return health


def markdown(rows: list[dict], results: list[dict]) -> str:
    t = health_timing()
    lines = [
        "# Failover: our anycast_health against seed 002's recipe",
        "",
        f"Each fault is made on {NODE}, the only server in London's catchment; {CLIENT} queries the anycast",
        f"address {RATE:g} times a second ({TIMEOUT:g} s timeout each) from {LEAD:g} s before the fault. The outage is",
        "the longest stretch the client went without an authoritative NOERROR answer. Both profiles ran in",
        f"the same run, on the same lab: **ours** = anycast_health's daemon profile (checks every {t['interval']:g} s,",
        f"timeout {t['timeout']:g} s, fall {t['fall']}, rise {t['rise']}, Knot's stop seen at once, per family,",
        "damping);",
        "**seed 002** = lab/playbooks/seed002.yml (keepalived vrrp_script `dig SOA +time=1 +tries=1`, interval 2,",
        "fall 2, rise 1, no process tracking).",
        "\"Moved\": some answers came from another PoP after the fault (the node withdrew or was dropped).",
        "\"Unserved\": queries lost or answered with an error, of all the client sent (a fault that repeats",
        "shows there, not in the longest outage).",
        "",
        "| Fault | Ours | Seed 002 | Ours moved | Seed moved | Unserved, ours | Unserved, seed | Fault held |",
        "|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        held = f"{r['fault_cleared_s']:.1f} s" if r["fault_cleared_s"] else "-"
        lines.append(f"| {r['title']} | {r['ours_ms']} ms | {r['seed_ms']} ms | {'yes' if r['ours_moved'] else 'no'} | "
                     f"{'yes' if r['seed_moved'] else 'no'} | {r['ours_unserved']} | {r['seed_unserved']} | {held} |")
    lines += ["", "Who answered, in order:", ""]
    for r in results:
        note = f" ({'; '.join(r['notes'])})" if r["notes"] else ""
        lines.append(f"- {r['profile']}, {r['title']}: {' -> '.join(r['sequence']) or 'nobody'}; sent {r['sent']}, "
                     f"lost {r['lost']}, other rcodes {r['servfail']}{note}")
    lines += ["", "Timelines: failover-<fault>.png (one dot per query, coloured by the PoP that answered; the",
              "longest outage shaded); failover.png compares the outages."]
    return "\n".join(lines) + "\n"
