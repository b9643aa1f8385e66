"""molecule's default scenario on the session's lab (last of the lab modules).

`molecule test` alone runs destroy, syntax, create, converge, idempotence, verify and destroy on a
lab of its own. Here the session's lab is up and converged already, so molecule reuses it: syntax,
create (`anycast-lab up` has nothing to do), converge, verify, and never destroy (the session takes
the lab down). On a converged fleet molecule's converge is its idempotence step: site.yml again
over the whole fleet, which must change nothing on any machine. Its recap is asserted here, as
molecule's idempotence step would, instead of running site.yml once more. It is the session's
only real second run of site.yml over the whole fleet (tests/lab/conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import BIN, REPO
from tests.lab.fleet import SERVERS, recap

pytestmark = pytest.mark.lab

MACHINES = (*SERVERS, "primary1", "monitor1")  # molecule.yml's platforms


def molecule(step: str, env: dict[str, str]) -> str:
    proc = subprocess.run([str(BIN / "molecule"), step], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, (step, out[-6000:])
    return out


def test_molecule_converges_with_nothing_to_change_and_verifies(converged):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_CONFIG", None)  # molecule writes its own
    # Forget what an earlier run recorded (molecule keeps "created", "converged" between runs).
    molecule("reset", env)
    outputs = {step: molecule(step, env) for step in ("syntax", "create", "converge", "verify")}
    for step, out in outputs.items():
        assert f"default > {step}: Executed: Successful" in out, (step, out[-3000:])
    # The idempotence step's own rule, on the converge of a fleet that was converged already.
    counts = recap(outputs["converge"])
    assert set(MACHINES) <= set(counts), outputs["converge"][-3000:]
    changed = {host: counts[host] for host in MACHINES
               if counts[host]["changed"] or counts[host]["failed"] or counts[host]["unreachable"]}
    assert not changed, (changed, outputs["converge"][-6000:])
    verified = re.search(r"=+ (\d+) passed(?:, (\d+) skipped)? in", outputs["verify"])
    assert verified and int(verified.group(1)) > 0 and " failed" not in verified.group(0), outputs["verify"][-3000:]
