"""Issue 22 on the lab: a PoP server moves from Debian 12 to Debian 13 the way a real fleet moves,
one server at a time, while clients of every region query the anycast address.

The documented path (README, "Debian releases and re-imaging a server"): drain.yml, then a fresh disk on the
new release with the same name and addresses (`anycast-lab reimage`), then rejoin.yml, which keeps
the fresh server drained while the roles converge it, verifies it locally, and announces it again.
gru1 is the test's server: the only server of its PoP, so São Paulo's clients must move to other
PoPs and back. The module leaves gru1 on Debian 13, converged and announcing (the lab's status
says so); the session's fleet stays mixed (hkg on Debian 12)."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.conftest import lab_cli
from tests.lab.fleet import sh
from tests.lab.test_rolling import (
    Regions,
    announced_to_upstream,
    drain_flag,
    losses,
    playbook,
    rarely_late,
    report,
    totals,
)

pytestmark = pytest.mark.lab

SERVER = "gru1"


def release(node: str) -> int:
    nodes = json.loads(lab_cli("status", "--json", check=False).stdout)
    return next(n["debian"] for n in nodes if n["name"] == node)


def test_a_pop_server_reimaged_from_debian_12_to_13_loses_no_query(converged, tmp_path):
    assert release(SERVER) == 12
    assert sh(SERVER, "cut -d. -f1 /etc/debian_version").stdout.strip() == "12"
    regions = Regions(tmp_path, duration=600)
    started = time.monotonic()

    proc, drain_s = playbook("drain.yml", "-e", f"target={SERVER}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not announced_to_upstream(SERVER)

    reimage_started = time.monotonic()
    out = lab_cli("reimage", SERVER, "--debian", "13", timeout=600)
    reimage_s = time.monotonic() - reimage_started
    assert f"{SERVER} re-imaged with Debian 13" in out.stdout, out.stdout + out.stderr
    # A fresh disk: nothing of the old server is left, the drain flag included.
    assert sh(SERVER, "cut -d. -f1 /etc/debian_version").stdout.strip() == "13"
    assert sh(SERVER, "command -v knotd", check=False).returncode != 0
    assert not drain_flag(SERVER)

    proc, rejoin_s = playbook("rejoin.yml", "-e", f"target={SERVER}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f"{SERVER} (Debian 13." in proc.stdout and "converged and verified while drained" in proc.stdout, \
        proc.stdout[-3000:]
    total_s = time.monotonic() - started
    result = regions.stop()
    report(f"re-image {SERVER} 12 -> 13 (drain {drain_s:.0f} s, re-image {reimage_s:.0f} s, "
           f"rejoin {rejoin_s:.0f} s)", total_s, result)

    assert totals(result)[1] == 0, losses(result)
    assert rarely_late(result), losses(result)
    assert release(SERVER) == 13
    assert sh(SERVER, "knotc -V").stdout.split()[-1].startswith("3.4"), "Debian 13's Knot"
    assert not drain_flag(SERVER) and announced_to_upstream(SERVER)
    # São Paulo's clients moved away during the drain, and came back to their own PoP (undrain.yml
    # probes from the PoP's vantage point).
    assert len(result["cl-gru"]["answers_per_node"]) > 1, result["cl-gru"]
    assert f"gru from cl-gru: 203.0.113.53 answered by {SERVER}" in proc.stdout, proc.stdout[-2000:]
