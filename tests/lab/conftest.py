"""Lab tests: one lab and one converged fleet for the whole session, always taken down, leaving nothing.

The lab comes up once (`lab_up`) and site.yml converges it once (`fleet`: the first run on fresh
machines, then a check-mode run with the plain strategy, whose results test_routing asserts). Every
module starts from a healthy fleet (`converged`): machines running, every BGP session and BFD peer
up, every PoP server announcing both families and not drained. A module that breaks something
restores it; when one did not, `converged` says what is wrong and converges the fleet again.
A test that needs a lab of its own (test_lab_crash.py) runs before the session lab comes up."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import BIN, REPO

LAB = str(BIN / "anycast-lab")


def lab_cli(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "lab"))
    proc = subprocess.run([LAB, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"anycast-lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def lab_exec(node: str, *cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """`anycast-lab exec NODE -- CMD` as the CLI answers it (exit 1 and one error line when NODE is
    unknown or not running), run from the test process (engine.node_argv): the CLI's start-up cost
    0.13-0.2 s of every command on an idle host (495 commands in test_routing, _firewall, _knot and
    _rolling alone), this 0.01 s. test_lab.py tests the CLI's exec."""
    from anycast_lab import engine  # noqa: PLC0415
    from anycast_lab.shell import LabError  # noqa: PLC0415

    try:
        argv = engine.node_argv(node, list(cmd))
    except LabError as exc:
        proc = subprocess.CompletedProcess(["anycast-lab", "exec", node, "--", *cmd], 1, "",
                                           f"anycast-lab: error: {exc}\n")
    else:
        env = dict(os.environ, PYTHONPATH=str(REPO / "lab"))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"anycast-lab exec {node} -- {' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def session_step(line: str) -> None:
    from tests.lab.fleet import SESSION_STEPS  # noqa: PLC0415

    SESSION_STEPS.append(line)


def leftovers() -> dict:
    from anycast_lab import engine  # noqa: PLC0415

    return engine.leftovers()


def mem_used_mib() -> int:
    info = dict(line.split(":", 1) for line in open("/proc/meminfo", encoding="utf-8"))
    kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kib // 1024


@pytest.fixture(scope="session")
def lab_up():
    """The lab, up for the whole session; down afterwards, with nothing left behind.

    ANYCAST_LAB_KEEP=1 (a developer's loop, never CI): reuse a lab that is up and leave it up."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if os.environ.get("ANYCAST_LAB_KEEP") == "1":
        nodes = status()
        if nodes and all(n["state"] == "running" for n in nodes if n.get("kind") != "client"):
            yield {"up_s": 0.0, "mem_mib": 0, "kept": True}
            return
    lab_cli("down", timeout=120)
    before = mem_used_mib()
    started = time.monotonic()
    lab_cli("up")
    info = {"up_s": time.monotonic() - started, "mem_mib": mem_used_mib() - before, "kept": False}
    print(f"\n[lab] up in {info['up_s']:.1f} s, lab memory ~{info['mem_mib']} MiB")
    session_step(f"[lab] up in {info['up_s']:.1f} s")
    yield info
    if os.environ.get("ANYCAST_LAB_KEEP") == "1":
        return
    started = time.monotonic()
    lab_cli("down", timeout=120)
    print(f"\n[lab] down in {time.monotonic() - started:.1f} s")
    session_step(f"[lab] down in {time.monotonic() - started:.1f} s")
    left = leftovers()
    assert not any(left.values()), f"the lab left things behind: {left}"


# The session's second run, in check mode with the plain strategy: gru1 (Debian 12) and tyo1
# (Debian 13), the primary and the monitoring node.
PLAIN_HOSTS = ("gru1", "tyo1", "primary1", "monitor1")


@pytest.fixture(scope="session")
def fleet(lab_up) -> dict:
    """site.yml twice per session (monitoring included): on the fresh lab, then in check mode
    with Ansible's plain linear strategy (ANSIBLE_STRATEGY=linear). The runs' results, by name:
    first, check.

    The check run keeps the project working without Mitogen and must find nothing to change. It
    covers PLAIN_HOSTS: a PoP server of each Debian release, the hidden primary and the monitoring
    node, so every role and both releases (the whole fleet would take twice as long). The other
    PoP servers get their check-mode pass in test_rolling.py (rolling.yml's check of every PoP
    server must find nothing to change), and molecule's converge (test_molecule.py, last) runs
    site.yml for real over the whole fleet with the default strategy and must change nothing."""
    from tests.lab.fleet import converge, fleet_problems, wait_for  # noqa: PLC0415

    runs = {"first": converge(label="session, first run", monitoring=True)}
    assert runs["first"]["rc"] == 0, runs["first"]["output"]
    runs["check"] = converge("--check", "--limit", ",".join(("localhost", *PLAIN_HOSTS)), label="session, check run",
                             monitoring=True, env={"ANSIBLE_STRATEGY": "linear"})
    # Sessions come up and both families are announced within a few seconds of the first converge.
    assert wait_for(lambda: not fleet_problems(), 90, 2), fleet_problems()
    return runs


@pytest.fixture(scope="module")
def converged(fleet) -> dict:
    """The session's fleet, healthy at the start of the module (re-converged, and said so, if not)."""
    from tests.lab.fleet import fleet_problems, restore_fleet  # noqa: PLC0415

    problems = fleet_problems()
    if problems:
        print(f"\n[lab] the fleet is not healthy at the start of this module, converging it again: {problems}")
        restore_fleet()
    return fleet


def status() -> list[dict]:
    return json.loads(lab_cli("status", "--json", check=False).stdout)


# The lab modules in the order they run, after every test that needs no lab. test_lab_crash.py
# brings a lab up and kills it: it runs first, before the session's lab exists; molecule last.
# test_monitoring early: alerts keep a history, and the faults of the others would show in it.
# test_reimage late: it leaves gru1 on another Debian release than the topology's (converged).
LAB_ORDER = ["test_lab_crash", "test_lab", "test_monitoring", "test_routing", "test_rpki", "test_firewall", "test_knot",
             "test_xot", "test_dnssec", "test_health", "test_rolling", "test_reimage", "test_molecule"]


def lab_rank(item: pytest.Item) -> int:
    name = item.path.stem
    return LAB_ORDER.index(name) if name in LAB_ORDER else len(LAB_ORDER)
