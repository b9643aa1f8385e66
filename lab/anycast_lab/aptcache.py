"""The lab's apt cache: apt-cacher-ng on the management bridge, so PoP servers install
frr, knot and keepalived with apt exactly as in production, through one local cache.

It runs with a private configuration (nothing in the host's /etc is touched) and forwards
Debian requests to the mirror the host itself uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

from .images import host_mirror
from .paths import StatePaths
from .shell import LabError, processes, progress

MARK = "anycast-lab"


def _conf(paths: StatePaths, address: str, port: int) -> str:
    return "\n".join([
        f"# {MARK}: private apt-cacher-ng configuration",
        f"CacheDir: {paths.acng_cache}",
        f"LogDir: {paths.acng}/log",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"PidFile: {paths.acng}/pid",
        f"SocketPath: {paths.acng}/socket",
        f"Port: {port}",
        f"BindAddress: {address}",
        "ForeGround: 0",
        "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
        "Remap-secdeb: security.debian.org deb.debian.org/debian-security /debian-security ; "
        "deb.debian.org/debian-security",
        "ExThreshold: 4",
        "",
    ])


def running_pids(paths: StatePaths) -> list[int]:
    conf_dir = str(paths.acng)
    return [pid for pid, argv in processes() if argv and argv[0].endswith("apt-cacher-ng") and conf_dir in argv]


def start(paths: StatePaths, topo) -> None:
    address, port = str(topo.mgmt_gateway), topo.apt_cache_port
    paths.acng.mkdir(parents=True, exist_ok=True)
    (paths.acng / "log").mkdir(exist_ok=True)
    paths.acng_cache.mkdir(parents=True, exist_ok=True)
    (paths.acng / "acng.conf").write_text(_conf(paths, address, port))
    (paths.acng / "backends_debian").write_text(host_mirror() + "/\n")
    subprocess.run(["apt-cacher-ng", "-c", str(paths.acng)], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            progress(f"apt cache listening on {address}:{port} (mirror {host_mirror()})")
            return
        time.sleep(0.2)
    raise LabError(f"apt-cacher-ng did not start on {address}:{port} (see {paths.acng}/log)")


def stop(paths: StatePaths) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = running_pids(paths)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and running_pids(paths):
            time.sleep(0.1)
