"""FRR: `bgp graceful-shutdown` in the running configuration while the node is drained."""

from __future__ import annotations

import re
import subprocess

from .files import read_flag

# frr_bgp renders graceful-shutdown for a drain too, marked so: that one follows the drain flag.
DRAIN_MARK = "! anycast-health: drained"


class Frr:
    """Keeps `bgp graceful-shutdown` in FRR's running config in line with the drain flag."""

    def __init__(self, cfg: dict, log):
        self.vtysh = cfg.get("vtysh", "/usr/bin/vtysh")
        self.conf = cfg.get("config", "/etc/frr/frr.conf")
        self.pidfile = cfg.get("bgpd_pid", "/run/frr/bgpd.pid")
        self.log = log
        self.applied = None
        self.last_look = 0.0
        self.bgpd = None
        self.said = ""

    def _say_once(self, message: str) -> None:
        # A problem that lasts is logged when it starts (and again when it changes), not every second.
        if message != self.said:
            self.said = message
            if message:
                self.log(message)

    def _asn_and_file_wants(self) -> tuple[str | None, bool]:
        try:
            with open(self.conf, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            self._say_once(f"frr: cannot read {self.conf} ({exc}): a drain cannot reach FRR")
            return None, False
        m = re.search(r"^router bgp (\d+)\s*$", text, re.M)
        # frr_bgp renders graceful-shutdown for a drain too, marked: that one follows the flag.
        file_wants = bool(re.search(r"^ bgp graceful-shutdown\s*$", text, re.M)) and DRAIN_MARK not in text
        return (m.group(1) if m else None), file_wants

    def _vtysh(self, *commands: str) -> subprocess.CompletedProcess | None:
        args = [self.vtysh]
        for c in commands:
            args += ["-c", c]
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(f"frr: vtysh failed: {exc}")
            return None

    def reconcile(self, draining: bool, now: float, force: bool = False) -> None:
        bgpd = read_flag(self.pidfile)
        if not force and bgpd == self.bgpd and self.applied == draining and now - self.last_look < 10:
            return
        self.last_look = now
        self.bgpd = bgpd
        asn, file_wants = self._asn_and_file_wants()
        if asn is None or bgpd is None:
            self.applied = None
            return
        want = draining or file_wants
        run = self._vtysh("show running-config")
        if run is None or run.returncode != 0:
            if run is not None:
                self._say_once(f"frr: vtysh 'show running-config' failed ({run.returncode}): "
                               f"{(run.stdout + run.stderr).strip()[-300:]}")
            self.applied = None
            return
        self._say_once("")
        has = bool(re.search(r"^ bgp graceful-shutdown\s*$", run.stdout, re.M))
        if has != want:
            cmd = "bgp graceful-shutdown" if want else "no bgp graceful-shutdown"
            done = self._vtysh("configure terminal", f"router bgp {asn}", cmd)
            if done is None or done.returncode != 0:
                self.log(f"frr: '{cmd}' failed: {(done.stdout + done.stderr).strip() if done else ''}")
                self.applied = None
                return
            self.log(f"frr: {cmd} ({'drain' if draining else 'undrain'})")
        self.applied = draining
