"""molecule's default scenario on the session's lab (last of the lab modules): create (the lab is
up: `anycast-lab up` has nothing to do), syntax, converge (site.yml), idempotence, verify
(testinfra on the lab's machines). The session takes the lab down, not molecule
(--destroy=never); `molecule test` alone still creates and destroys a lab of its own."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import BIN, REPO

pytestmark = pytest.mark.lab


def test_molecule_converges_is_idempotent_and_verifies(converged):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_CONFIG", None)  # molecule writes its own
    # Forget what an earlier run recorded (molecule keeps "created", "converged" between runs).
    subprocess.run([str(BIN / "molecule"), "reset"], cwd=REPO, env=env, capture_output=True, timeout=300, check=True)
    proc = subprocess.run([str(BIN / "molecule"), "test", "--destroy=never"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Skipping, '--destroy=never' requested." in out, out[-3000:]
    for step in ("create", "converge", "idempotence", "verify"):
        assert f"default > {step}: Executed: Successful" in out, (step, out[-3000:])
    verified = re.search(r"=+ (\d+) passed(?:, (\d+) skipped)? in", out)
    assert verified and int(verified.group(1)) > 0 and " failed" not in verified.group(0), out[-3000:]
