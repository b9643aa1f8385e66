"""Shared test helpers: paths and a runner for the project's playbooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_playbook(playbook: str, inventory: Path | str, *extra: str, timeout: int = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the repository with its ansible.cfg (ENV added to the environment);
    never raises on failure."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", **(env or {}))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_collection_modifyitems(config, items):
    """Tests that need no lab first; then the lab's modules in their order (tests/lab/conftest.py)."""
    from tests.lab.conftest import lab_rank  # noqa: PLC0415

    def key(item: pytest.Item) -> tuple[int, int]:
        in_lab = item.get_closest_marker("lab") is not None
        return (1, lab_rank(item)) if in_lab else (0, 0)

    items.sort(key=key)  # stable: the order within a module stays


# Where a run's lab time goes, printed at its end (so every CI log has it): the seconds of each lab
# module (setup, calls and teardown summed) and the session's own steps (lab up and down, every
# site.yml run of the lab tests, with its label: tests.lab.fleet.SESSION_STEPS), in their order.
LAB_MODULE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::")[0]
    if module.startswith("tests/lab/"):
        LAB_MODULE_SECONDS[module] = LAB_MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not LAB_MODULE_SECONDS:
        return
    terminalreporter.section("lab time per module")
    for module, seconds in sorted(LAB_MODULE_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {module}")
    terminalreporter.write_line(f"{sum(LAB_MODULE_SECONDS.values()):8.1f} s  in all")
    # The lab tests' own copy of the module (pytest loads this file under another name than the
    # tests' `tests.conftest`).
    fleet = sys.modules.get("tests.lab.fleet")
    if fleet is not None and fleet.SESSION_STEPS:
        terminalreporter.section("lab session steps and site.yml runs")
        for line in fleet.SESSION_STEPS:
            terminalreporter.write_line(line)
