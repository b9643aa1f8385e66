"""A validating resolver in a client's network namespace: Unbound from Debian, on demand.

`anycast-lab resolve --from cl-hkg --anchor FILE --zone example.com NAME [TYPE]` starts Unbound
(from the resolver image layer) inside the client's namespace, with a stub zone per --zone
pointing at the anycast addresses and the trust anchors of FILE (DS or DNSKEY records), asks it
the questions with the DO bit through 127.0.0.1, and stops it. Unbound knows no other zone: the
root is a stub to nowhere, so it never sends a query outside the lab.

Bounded: Unbound lives at most --lifetime seconds; the overlay mount and the container are
removed on the way out (and by `anycast-lab down` if this process is killed).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .paths import LAB_DIR, PREFIX, StatePaths
from .shell import LabError, run
from .topology import Node, Topology

MAX_LIFETIME = 300
DEFAULT_STUBS = ("203.0.113.53", "2001:db8:53::1")


def unbound_conf(zones: list[str], stubs: list[str]) -> str:
    lines = [
        "# anycast-lab: a validating resolver for the lab's zones only",
        "server:",
        "    interface: 127.0.0.1",
        "    port: 53",
        "    access-control: 127.0.0.0/8 allow",
        "    do-daemonize: no",
        '    chroot: ""',
        '    username: ""',
        '    pidfile: ""',
        "    use-syslog: no",
        "    logfile: /dev/stderr",
        "    verbosity: 1",
        "    val-log-level: 2",
        '    module-config: "validator iterator"',
        "    trust-anchor-file: /etc/unbound/lab-anchors.txt",
        "    harden-dnssec-stripped: yes",
        "    do-not-query-localhost: yes",
        "    qname-minimisation: no",
        "",
        "# Everything outside the lab's zones goes nowhere (localhost is never queried).",
        "stub-zone:",
        '    name: "."',
        "    stub-addr: 127.0.0.1",
    ]
    for zone in zones:
        lines += ["", "stub-zone:", f'    name: "{zone.rstrip(".")}."']
        lines += [f"    stub-addr: {addr}" for addr in stubs]
    return "\n".join(lines) + "\n"


def _check(topo: Topology, client: str, stubs: list[str], lifetime: float) -> Node:
    """The client node, once CLIENT, the stub addresses and the lifetime are fit to run."""
    node = topo.client(client)
    for addr in stubs:
        topo.require_lab_address(addr, "stub address", "the resolver only asks the lab")
    if not 0 < lifetime <= MAX_LIFETIME:
        raise LabError(f"lifetime must be in (0, {MAX_LIFETIME}] seconds")
    if not Path(f"/run/netns/{node.netns}").exists():
        raise LabError(f"{client} is not running (is the lab up?)")
    return node


def resolve(topo: Topology, paths: StatePaths, *, client: str, anchors: str, zones: list[str],
            questions: list[tuple[str, str]], stubs: list[str] | None = None, lifetime: float = 60.0) -> dict:
    """Start Unbound in CLIENT's namespace, ask QUESTIONS (name, type), stop it. Returns the answers."""
    stubs = list(stubs or DEFAULT_STUBS)
    node = _check(topo, client, stubs, lifetime)
    if not anchors.strip():
        raise LabError("no trust anchor given: a validating resolver needs the zone's DS or DNSKEY")
    from .images import ensure_base, ensure_resolver  # noqa: PLC0415 - only when Unbound is started

    image = ensure_resolver(paths, ensure_base(paths))
    work = paths.run / f"resolver-{client}"
    _cleanup(work)
    upper, ovl_work, root = work / "upper", work / "work", work / "root"
    for d in (upper, ovl_work, root):
        d.mkdir(parents=True)
    etc = upper / "etc/unbound"
    etc.mkdir(parents=True)
    (etc / "lab.conf").write_text(unbound_conf(zones, stubs))
    (etc / "lab-anchors.txt").write_text(anchors.strip() + "\n")
    lower = ":".join(str(p) for p in image.layers)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={ovl_work}",
         str(root)])
    log = work / "unbound.log"
    proc = None
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["timeout", "-s", "TERM", str(int(lifetime)), "systemd-nspawn", "--quiet", "--keep-unit",
                 "--register=no", f"--machine={PREFIX}resolver-{client}", "-D", str(root),
                 f"--network-namespace-path=/run/netns/{node.netns}", "--resolv-conf=off",
                 "--timezone=off", "--link-journal=no", "--", "/usr/sbin/unbound", "-d", "-c", "/etc/unbound/lab.conf"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        argv = ["env", f"PYTHONPATH={LAB_DIR}", sys.executable, "-m", "anycast_lab.resolve_worker",
                "--server", "127.0.0.1", "--deadline", str(min(lifetime, 30))]
        for name, qtype in questions:
            argv += ["--question", f"{name} {qtype}"]
        started = time.monotonic()
        done = run(argv, netns=node.netns, timeout=lifetime + 10, check=False)
        if done.returncode != 0:
            raise LabError(f"resolver queries failed: {done.stderr.strip()}\n{_tail(log)}")
        answers = json.loads(done.stdout)
        return {"client": client, "zones": zones, "stubs": stubs, "answers": answers,
                "seconds": round(time.monotonic() - started, 2), "unbound_log": _tail(log, 40)}
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        _cleanup(work)


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _cleanup(work: Path) -> None:
    root = work / "root"
    if root.is_mount():
        if run(["umount", str(root)], check=False).returncode != 0:
            run(["umount", "-l", str(root)], check=False)
    shutil.rmtree(work, ignore_errors=True)
