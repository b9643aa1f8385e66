"""Playbook timings, the old way against the new way, on the same lab in one run (make bench).

The old way is the repository at BASELINE, main as it was before the speed work (issue 21): the
plain linear strategy, facts gathered in every play, a module run per sysctl setting and per
package list, rolling.yml taking every PoP through drain, apply and undrain. It is checked out in
a temporary git worktree and run with its own ansible.cfg. The new way is this checkout.

Each way gets a fresh lab of its own (`anycast-lab down`, `up`) and, in this order: the first
site.yml (timed), REPEAT idempotent site.yml runs (each must change nothing), rolling.yml with
nothing to change (the old way rolls every PoP all the same: that is its full rolling run), and,
for the new way only, a forced full rolling run (rolling_force=true). A round of fact gathering of
the same hosts (`setup`, gather_subset=min) is timed between the runs: the issue counts the
idempotent run in such rounds.

The lab is left up, converged the new way. The scaled lab's timings (bench scale) run both ways
too, through `way_env`/`checkout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import engine
from .paths import REPO
from .playbook import playbook
from .shell import LabError
from .topology import load

# main before the speed work: "bench failover: the faults held for a while share one helper".
BASELINE = "dd4f7fe"
REPEAT = 3
SETTLE_TIMEOUT = 180  # seconds the sessions may take to come up again before a rolling run


@dataclass(frozen=True)
class Way:
    name: str  # "old" or "new"
    tree: Path  # the checkout whose playbooks, roles and ansible.cfg run

    def env(self, extra: dict | None = None) -> dict:
        """The environment of this way's ansible-playbook: its own ansible.cfg and nothing else of
        the caller's Ansible settings (an ANSIBLE_STRATEGY of the caller would bias the figures)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(ANSIBLE_CONFIG=str(self.tree / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", **(extra or {}))
        return env


@contextlib.contextmanager
def checkout(rev: str = BASELINE) -> Iterator[Path]:
    """REV of this repository in a temporary git worktree, removed afterwards."""
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{rev}^{{commit}}"],  # noqa: S603
                           capture_output=True, check=False)
    if known.returncode != 0:
        raise LabError(f"the baseline commit {rev} is not in this clone (a shallow clone? git fetch --unshallow)")
    tree = Path(tempfile.mkdtemp(prefix="anycast-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(tree), rev],  # noqa: S603
                   capture_output=True, check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],  # noqa: S603
                       capture_output=True, check=False)


def fresh_lab() -> None:
    engine.down(quiet=True)
    argv = [sys.executable, "-m", "anycast_lab", "up"]
    proc = subprocess.run(argv, env=dict(os.environ, PYTHONPATH=str(REPO / "lab")), timeout=1800,  # noqa: S603
                          check=False)
    if proc.returncode != 0:
        raise LabError("anycast-lab up failed")


def fact_round(way: Way, inventory: Path) -> float:
    """Seconds of one round of fact gathering (gather_subset=min) of the lab's machines, plain."""
    argv = [str(Path(sys.executable).with_name("ansible")), "-i", str(inventory), "all:!vantage_points",
            "-m", "ansible.builtin.setup", "-a", "gather_subset=min"]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=way.tree, env=way.env({"ANSIBLE_STRATEGY": "linear"}),  # noqa: S603
                          capture_output=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise LabError(f"fact gathering failed: {proc.stderr.decode()[-500:]}")
    return round(time.monotonic() - started, 1)


def spread(values: list[float]) -> dict:
    return {"runs": values, "median": round(statistics.median(values), 1), "min": min(values), "max": max(values)}


def idempotent(label: str, way: Way, out: Path, inventory: Path, args: list[str] | None = None) -> float:
    res = playbook(label, ["site.yml", *(args or [])], out, inventory, way.env(), cwd=way.tree)
    if res["changed"]:
        raise LabError(f"{label}: changed {res['changed']} things: not idempotent")
    return res["seconds"]


def wait_sessions(progress=print) -> float:
    """Every PoP server's BGP sessions Established and BFD peers up, as rolling.yml's quorum check
    wants them, before a rolling run. On a slow host the lab's sessions can be down right after a
    run: after the old way's third idempotent site.yml (changed=0), tyo1's, fra1's and gru1's were
    Idle or OpenConfirm with BFD down, and the rollout's quorum check refused to start. Seconds
    waited; LabError after SETTLE_TIMEOUT."""
    topo = load()
    started = time.monotonic()
    while True:
        down = {}
        for node in (n for n in topo.of_kind("server") if not n.role):  # the PoP servers
            bgp = engine.node_run(node.name, ["vtysh", "-c", "show bgp summary json"], check=False, timeout=30).stdout
            bfd = engine.node_run(node.name, ["vtysh", "-c", "show bfd peers json"], check=False, timeout=30).stdout
            try:
                summary, peers = json.loads(bgp or "{}"), json.loads(bfd or "[]")
            except json.JSONDecodeError:
                summary, peers = {}, []
            states = {addr: p.get("state") for fam in ("ipv4Unicast", "ipv6Unicast")
                      for addr, p in summary.get(fam, {}).get("peers", {}).items()}
            bad = {addr: state for addr, state in states.items() if state != "Established"}
            bad.update({p["peer"]: f"BFD {p.get('status')}" for p in peers if p.get("status") != "up"})
            if bad or not states:
                down[node.name] = bad or "no BGP session"
        waited = time.monotonic() - started
        if not down:
            if waited >= 1:
                progress(f"[bench] every BGP session and BFD peer up after {waited:.0f} s")
            return waited
        if waited > SETTLE_TIMEOUT:
            raise LabError(f"BGP sessions or BFD peers still down {SETTLE_TIMEOUT} s after the last run: {down}")
        time.sleep(2)


def measure(way: Way, out: Path, repeat: int = REPEAT) -> dict:
    """Fresh lab, then every run of WAY (see the module's docstring)."""
    inventory = way.tree / "inventories" / "lab"
    fresh_lab()
    result: dict = {"first_converge": playbook(f"{way.name}-site-first", ["site.yml"], out, inventory, way.env(),
                                               cwd=way.tree)["seconds"]}
    idem, facts = [], []
    for i in range(repeat):
        facts.append(fact_round(way, inventory))
        idem.append(idempotent(f"{way.name}-site-idempotent-{i + 1}", way, out, inventory))
    result["idempotent"] = spread(idem)
    result["fact_round"] = spread(facts)
    runs = 1 if way.name == "old" else repeat
    rolling = []
    for i in range(runs):
        wait_sessions()  # not timed: the sessions an earlier run restarted
        rolling.append(playbook(f"{way.name}-rolling-nothing-to-change-{i + 1}", ["playbooks/rolling.yml"], out,
                                inventory, way.env(), cwd=way.tree)["seconds"])
    result["rolling_nothing_to_change"] = spread(rolling)
    if way.name == "new":
        wait_sessions()
        result["rolling_forced"] = playbook("new-rolling-forced", ["playbooks/rolling.yml", "-e", "rolling_force=true"],
                                            out, inventory, way.env(), cwd=way.tree)["seconds"]
    return result


def ratios(old: dict, new: dict) -> dict:
    """New way over old way (medians): what the issue's targets are about."""
    return {
        "idempotent": round(new["idempotent"]["median"] / old["idempotent"]["median"], 3),
        "first_converge": round(new["first_converge"] / old["first_converge"], 3),
        # The old way's rolling run with nothing to change is its full rolling run.
        "rolling_nothing_to_change_vs_old_full": round(
            new["rolling_nothing_to_change"]["median"] / old["rolling_nothing_to_change"]["median"], 3),
        "rolling_nothing_to_change_vs_new_forced": round(
            new["rolling_nothing_to_change"]["median"] / new["rolling_forced"], 3),
        "idempotent_in_fact_rounds": round(new["idempotent"]["median"] / old["fact_round"]["median"], 1),
    }


def markdown(data: dict) -> str:
    old, new, r = data["old"], data["new"], data["ratios"]

    def cell(v) -> str:
        if isinstance(v, dict):
            return f"{v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f}, {len(v['runs'])} runs)"
        return f"{v:.1f}"

    lines = [
        "# Playbook timings: the old way against the new way", "",
        "One `make bench` run on this host (2 CPU cores shared by every lab machine). Old way: commit",
        f"{data['baseline']} (plain linear strategy, the roles before the speed work); new way: this checkout",
        "(Mitogen's linear strategy, facts once per run, fewer tasks, rolling runs that skip what has not",
        "changed). Each way on a fresh lab of its own. Seconds; median (min-max, runs).", "",
        "| Run | Old way | New way | New / old |", "|---|---:|---:|---:|",
        f"| site.yml, first converge | {cell(old['first_converge'])} | {cell(new['first_converge'])} | "
        f"{r['first_converge']:.2f} |",
        f"| site.yml, idempotent (changed=0) | {cell(old['idempotent'])} | {cell(new['idempotent'])} | "
        f"{r['idempotent']:.2f} |",
        f"| rolling.yml, nothing to change (the old way rolls every PoP) | {cell(old['rolling_nothing_to_change'])} | "
        f"{cell(new['rolling_nothing_to_change'])} | {r['rolling_nothing_to_change_vs_old_full']:.2f} |",
        f"| rolling.yml, every PoP rolled (rolling_force=true) | | {cell(new['rolling_forced'])} | |",
        f"| one round of fact gathering (setup, min), same hosts | {cell(old['fact_round'])} | "
        f"{cell(new['fact_round'])} | |", "",
        f"- The new idempotent run takes {r['idempotent_in_fact_rounds']} rounds of fact gathering (old way's round).",
        f"- The new rolling run with nothing to change takes {r['rolling_nothing_to_change_vs_new_forced']:.0%} "
        "of the new way's forced full rolling run.",
    ]
    return "\n".join(lines) + "\n"


def run(out: Path, repeat: int = REPEAT, baseline: str = BASELINE) -> dict:
    with checkout(baseline) as tree:
        old = measure(Way("old", tree), out, repeat)
    new = measure(Way("new", REPO), out, repeat)
    data = {"baseline": baseline, "old": old, "new": new}
    data["ratios"] = ratios(old, new)
    return data
