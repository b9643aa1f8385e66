"""keepalived's heartbeat check (role anycast_health, files/heartbeat-fresh): fresh while the time the
anycast-health daemon wrote into its heartbeat is at most MAX_AGE seconds old; anything else fails,
so that a stopped, crashed or hung daemon never keeps an announcement alive."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "roles/anycast_health/files/heartbeat-fresh"


def fresh(path, *args: str) -> bool:
    """The script as keepalived runs it: through its own shebang (bash -eu)."""
    proc = subprocess.run([str(SCRIPT), *args], env={"ANYCAST_HEALTH_HEARTBEAT": str(path), "PATH": ""},
                          capture_output=True, text=True, timeout=10, check=False)
    assert proc.stdout == proc.stderr == ""
    return proc.returncode == 0


@pytest.mark.parametrize(("age", "args", "ok"), [
    (0, (), True), (2, (), True), (5, (), False), (600, (), False),
    (5, ("10",), True), (12, ("10",), False), (-1, (), True),
])
def test_the_age_of_the_written_time_decides(tmp_path, age, args, ok):
    """The daemon's own format (Unix time, milliseconds); the default budget is 3 s. No other
    program runs (PATH is empty): bash builtins only."""
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{time.time() - age:.3f}\n")
    assert fresh(beat, *args) is ok


@pytest.mark.parametrize("content", [None, "", "\n", "soon\n", "-5\n", "1e9\n"])
def test_a_missing_empty_or_garbled_heartbeat_fails(tmp_path, content):
    beat = tmp_path / "heartbeat"
    if content is not None:
        beat.write_text(content)
    assert not fresh(beat)


def test_a_garbled_budget_fails(tmp_path):
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{time.time():.3f}\n")
    assert not fresh(beat, "3; true")
