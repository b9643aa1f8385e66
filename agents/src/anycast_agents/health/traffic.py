"""Traffic: the queries reaching the anycast addresses from outside, and when a drain may withdraw."""

from __future__ import annotations

import json
import subprocess

NFT_TABLE = "anycast_health"  # nftables table (family inet) holding the query counters
IDLE_QPS = 1.0  # below this many queries per second a drained node counts as idle


class Traffic:
    """Counts the DNS queries that reach the anycast addresses from outside (not from lo).

    An nftables table of its own (inet anycast_health) counts UDP packets and TCP SYNs to port
    53 of the anycast addresses; the daemon samples it every second (every 0.25 s during a drain)
    and keeps the last minute. Without nft the drain simply waits its full time.
    """

    KEEP = 60.0
    EVERY = 1.0  # seconds between two samples
    EVERY_DRAINING = 0.25

    def __init__(self, addresses: dict, port: int, log, nft: str = "nft"):
        self.log = log
        self.nft = nft
        self.samples: list[tuple[float, int]] = []
        self.last_total: int | None = None  # the counters' sum at the last sample (for Prometheus)
        self.ok = bool(nft) and self._setup(addresses, port)
        if not nft:
            log("traffic: not counted (no nft configured); a drain waits its full time")

    def _setup(self, addresses: dict, port: int) -> bool:
        rules = []
        for fam, match in (("4", "ip daddr"), ("6", "ip6 daddr")):
            if addresses.get(fam):
                dst = "{ " + ", ".join(addresses[fam]) + " }"
                rules += [f'    iifname != "lo" {match} {dst} udp dport {port} counter',
                          f'    iifname != "lo" {match} {dst} tcp dport {port} tcp flags & (syn | ack) == syn counter']
        # add + delete + define in one transaction: replaces an older table atomically.
        text = "\n".join([f"add table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}",
                          f"table inet {NFT_TABLE} {{", "  chain input {",
                          "    type filter hook input priority -150; policy accept;", *rules, "  }", "}", ""])
        try:
            proc = subprocess.run([self.nft, "-f", "-"], input=text, capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(f"traffic: nft unusable ({exc}); a drain waits its full time")
            return False
        if proc.returncode != 0:
            self.log(f"traffic: nft refused the counters ({proc.stderr.strip()}); a drain waits its full time")
            return False
        return True

    def total(self) -> int | None:
        try:
            proc = subprocess.run([self.nft, "-j", "list", "chain", "inet", NFT_TABLE, "input"],
                                  capture_output=True, text=True, timeout=5, check=False)
            data = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            data = None
        if data is None:
            return None
        count = 0
        for item in data.get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    count += int(expr["counter"].get("packets", 0))
        return count

    def sample(self, now: float, draining: bool = False) -> None:
        every = self.EVERY_DRAINING if draining else self.EVERY
        if not self.ok or (self.samples and now - self.samples[-1][0] < every):
            return
        total = self.total()
        if total is None:
            return
        if self.samples and total < self.samples[-1][1]:
            self.samples = []  # the table was replaced (another daemon start): a new series
        self.samples.append((now, total))
        self.last_total = total
        while self.samples and self.samples[0][0] < now - self.KEEP:
            self.samples.pop(0)

    def rate(self, start: float, end: float) -> float | None:
        """Queries per second between the samples closest to START and END (None if unknown)."""
        inside = [s for s in self.samples if start - 0.3 <= s[0] <= end + 0.3]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.4:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


class DrainTimer:
    """When a drain withdraws: after the traffic moved away, or at the end of its wait."""

    def __init__(self, cfg: dict):
        self.min_wait = float(cfg.get("drain_min_wait", 2))
        self.residual = float(cfg.get("drain_residual", 0.05))
        self.since = None  # the drain this decision belongs to
        self.done_at = None
        self.before = None
        self.after = None
        self.why = None

    def done(self, now: float, drain: dict | None, traffic: Traffic) -> bool:
        if drain is None:
            self.since = self.done_at = self.before = self.after = self.why = None
            return False
        if self.since != drain["since"]:
            self.since, self.done_at, self.after, self.why = drain["since"], None, None, None
            self.before = traffic.rate(drain["since"] - 5, drain["since"])
            if drain.get("withdrawn_at") is not None:  # decided before a restart of the daemon
                self.done_at, self.why = drain["withdrawn_at"], drain.get("why")
                self.before, self.after = drain.get("rate_before"), drain.get("rate_after")
        if self.done_at is not None:
            return True
        end = drain["since"] + drain["wait"]
        if now >= end:
            self.done_at = now
            self.after = traffic.rate(now - 1, now)
            self.why = "the drain's wait is over"
            return True
        if self.before is None or now < drain["since"] + min(self.min_wait, drain["wait"]):
            return False
        current = traffic.rate(now - 1, now)
        if current is None:
            return False
        if current <= max(self.residual * self.before, IDLE_QPS):
            self.done_at, self.after = now, current
            self.why = (f"traffic moved: {self.before:.1f} q/s before the drain, {current:.1f} q/s "
                        f"{now - drain['since']:.1f} s after it")
            return True
        return False

    def report(self) -> dict | None:
        if self.since is None:
            return None
        return {"rate_before": self.before, "rate_after": self.after, "withdrawn_at": self.done_at,
                "why": self.why}
