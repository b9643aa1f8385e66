"""Keep one lab machine's systemd-nspawn running across reboots, like the power button of a server.

systemd-nspawn exits with status 133 when the machine inside reboots. A real server loses its
volatile network state when it reboots; the lab's machines keep their network namespace (the
lab wires it from outside), so between two boots this supervisor puts the namespace back to
what the lab built: addresses on `lo` other than the loopback ones are removed, and so is every
route that the kernel did not create itself (routes of FRR, keepalived, NetworkManager, tests).
Whatever the machine configures persistently must then come back on its own: that is what a
reboot test proves.

`anycast-lab poweroff` pulls the plug: it leaves a marker file (POWERED_OFF in the machine's
state directory) and kills every process of the machine at once. The supervisor then waits,
without a machine, until `anycast-lab poweron` removes the marker (or the marker's own deadline
passes), clears the volatile network state as a reboot would, and boots the machine again.

Any other exit status (poweroff from inside, SIGTERM from `anycast-lab down`, a crash) ends the
supervisor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REBOOT_STATUS = 133
MARK = "anycast_lab.supervise"
CGROUP_ENV = "ANYCAST_LAB_CGROUP_DIR"  # the machine's own cgroup2 directory, set by the engine
POWERED_OFF = "powered-off"
MAX_OFF_S = 600


def _ip(netns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)


def reset_volatile_network(netns: str) -> None:
    """What a reboot clears: global addresses on lo, and every route not made by the kernel."""
    for family in ("-4", "-6"):
        _ip(netns, family, "addr", "flush", "dev", "lo", "scope", "global")
        proc = _ip(netns, "-j", family, "route", "show", "table", "all")
        try:
            routes = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            routes = []
        # ip leaves "protocol" out for "boot", the default of `ip route add`.
        for proto in sorted({str(r.get("protocol", "boot")) for r in routes} - {"kernel"}):
            _ip(netns, family, "route", "flush", "table", "all", "proto", proto)


def wait_powered_on(marker: str) -> None:
    """While MARKER exists (the machine is powered off), wait; bounded by its deadline."""
    try:
        with open(marker, encoding="utf-8") as fh:
            deadline = float(fh.read().strip() or 0)
    except (OSError, ValueError):
        deadline = 0.0
    deadline = min(deadline, time.time() + MAX_OFF_S)
    while os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.1)
    if os.path.exists(marker):
        print("[supervise] powered off for longer than allowed; powering on again", flush=True)
        os.unlink(marker)


def main(argv: list[str]) -> int:
    """supervise NODE NETNS [--state DIR] -- systemd-nspawn ARGS..."""
    state_dir = None
    if len(argv) >= 4 and argv[2] == "--state":
        state_dir, argv = argv[3], argv[:2] + argv[4:]
    if len(argv) < 4 or argv[2] != "--":
        print(f"usage: python -m {MARK} NODE NETNS [--state DIR] -- systemd-nspawn ...", file=sys.stderr)
        return 2
    node, netns, nspawn = argv[0], argv[1], argv[3:]
    marker = os.path.join(state_dir, POWERED_OFF) if state_dir else None
    cgroup = os.environ.get(CGROUP_ENV)
    if cgroup:
        # Into the machine's own cgroup before nspawn starts: nspawn makes the machine's cgroup
        # namespace there, so no two machines' systemd ever share a cgroup (a unit's cgroup that
        # never empties, a stop that kills another machine's processes).
        with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    boots = 0
    while True:
        boots += 1
        status = subprocess.call(nspawn)  # noqa: S603 - argv built by the engine
        if marker and os.path.exists(marker):
            print(f"[supervise] {node} powered off (boot {boots} ended with status {status})", flush=True)
            wait_powered_on(marker)
            print(f"[supervise] {node} powered on; resetting its volatile network state", flush=True)
            # Links come back with the power (poweron did it already; an automatic power-on did not).
            from .faults import restore_all  # noqa: PLC0415 - only the power-on path needs nft

            restore_all(netns)
            reset_volatile_network(netns)
            continue
        if status != REBOOT_STATUS:
            return status
        print(f"[supervise] {node} rebooted (boot {boots}); resetting its volatile network state", flush=True)
        reset_volatile_network(netns)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
