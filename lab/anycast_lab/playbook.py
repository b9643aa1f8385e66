"""ansible-playbook from the lab's tools (make bench): timed, its output in a log as it runs,
the PLAY RECAP read back."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .paths import REPO
from .shell import LabError

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: ok, changed, unreachable, failed."""
    return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
            for m in RECAP.finditer(output)}


def playbook(label: str, args: list[str], out: Path, inventory: Path | None = None, env: dict | None = None, *,
             cwd: Path = REPO) -> dict:
    """Run ansible-playbook ARGS (from CWD, the repository unless said, on the lab inventory), timed;
    its output in out/logs/LABEL.log. An error unless it succeeded."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i",
            str(inventory or REPO / "inventories" / "lab"), *args]
    log = logs / f"{label}.log"
    print(f"[bench] {label}: {' '.join(argv[1:])} (follow it: tail -f {log})", flush=True)
    started = time.monotonic()
    with log.open("w") as handle:  # written as it runs
        proc = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env,  # noqa: S603
                              timeout=3600, check=False)
    seconds = round(time.monotonic() - started, 1)
    hosts = recap(log.read_text())
    if proc.returncode != 0:
        raise LabError(f"{label} failed (rc={proc.returncode}) after {seconds} s; see {logs / (label + '.log')}")
    result = {"seconds": seconds, "hosts": len(hosts), "changed": sum(h["changed"] for h in hosts.values())}
    print(f"[bench] {label}: {seconds} s, {result['hosts']} hosts, changed={result['changed']}", flush=True)
    return result
