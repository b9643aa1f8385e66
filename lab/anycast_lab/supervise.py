"""Keep one lab machine's systemd-nspawn running across reboots, like the power button of a server.

systemd-nspawn exits with status 133 when the machine inside reboots. A real server loses its
volatile network state when it reboots; the lab's machines keep their network namespace (the
lab wires it from outside), so between two boots this supervisor puts the namespace back to
what the lab built: addresses on `lo` other than the loopback ones are removed, and so is every
route that the kernel did not create itself (routes of FRR, keepalived, NetworkManager, tests).
Whatever the machine configures persistently must then come back on its own: that is what a
reboot test proves.

Any other exit status (poweroff, SIGTERM from `anycast-lab down`, a crash) ends the supervisor.
"""

from __future__ import annotations

import json
import subprocess
import sys

REBOOT_STATUS = 133
MARK = "anycast_lab.supervise"


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


def main(argv: list[str]) -> int:
    """supervise NODE NETNS -- systemd-nspawn ARGS..."""
    if len(argv) < 4 or argv[2] != "--":
        print(f"usage: python -m {MARK} NODE NETNS -- systemd-nspawn ...", file=sys.stderr)
        return 2
    node, netns, nspawn = argv[0], argv[1], argv[3:]
    boots = 0
    while True:
        boots += 1
        status = subprocess.call(nspawn)  # noqa: S603 - argv built by the engine
        if status != REBOOT_STATUS:
            return status
        print(f"[supervise] {node} rebooted (boot {boots}); resetting its volatile network state", flush=True)
        reset_volatile_network(netns)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
