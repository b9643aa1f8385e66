"""A killed `up` followed by `down` leaves nothing behind.

It needs a lab of its own, which it kills: it runs first among the lab modules (tests/lab/conftest.py,
LAB_ORDER), before the session's lab comes up."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from anycast_lab import engine
from tests.conftest import REPO
from tests.lab.conftest import LAB, lab_cli, leftovers

pytestmark = pytest.mark.lab


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_killed_up_then_down_leaves_nothing():
    lab_cli("down", timeout=120)
    proc = subprocess.Popen([LAB, "up"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(REPO / "lab")), start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # Kill it in the middle: some machines started, not all booted.
        while time.monotonic() < deadline and len(engine.nspawn_pids()) < 8 and proc.poll() is None:
            time.sleep(0.1)
        assert engine.nspawn_pids(), "up never started a machine"
        assert any(leftovers().values())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    lab_cli("down", timeout=120)
    left = leftovers()
    assert not any(left.values()), left
