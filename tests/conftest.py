"""Shared test helpers: paths and a runner for the project's playbooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_playbook(playbook: str, inventory: Path | str, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the repository with its ansible.cfg; never raises on failure."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.fixture
def repo() -> Path:
    return REPO
