"""Lab tests: they bring the lab up themselves and always take it down, leaving nothing."""

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


def leftovers() -> dict:
    from anycast_lab import engine  # noqa: PLC0415

    return engine.leftovers()


def mem_used_mib() -> int:
    info = dict(line.split(":", 1) for line in open("/proc/meminfo", encoding="utf-8"))
    kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kib // 1024


@pytest.fixture(scope="module")
def lab_up():
    """The lab, up for the tests of one module; down afterwards, with nothing left behind.

    ANYCAST_LAB_KEEP=1 (a developer's loop, never CI): reuse a lab that is up and leave it up."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if os.environ.get("ANYCAST_LAB_KEEP") == "1":
        nodes = status()
        if nodes and all(n["state"] == "running" for n in nodes if n.get("kind") != "client"):
            yield {"up_s": 0.0, "mem_mib": 0}
            return
    lab_cli("down", timeout=120)
    before = mem_used_mib()
    started = time.monotonic()
    lab_cli("up")
    info = {"up_s": time.monotonic() - started, "mem_mib": mem_used_mib() - before}
    print(f"\n[lab] up in {info['up_s']:.1f} s, lab memory ~{info['mem_mib']} MiB")
    yield info
    if os.environ.get("ANYCAST_LAB_KEEP") == "1":
        return
    started = time.monotonic()
    lab_cli("down", timeout=120)
    print(f"\n[lab] down in {time.monotonic() - started:.1f} s")
    left = leftovers()
    assert not any(left.values()), f"the lab left things behind: {left}"


def status() -> list[dict]:
    return json.loads(lab_cli("status", "--json", check=False).stdout)
