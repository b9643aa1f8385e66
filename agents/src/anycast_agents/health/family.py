"""The decision, per address family: fall/rise hysteresis, damping, drain."""

from __future__ import annotations


class Family:
    """Hysteresis (fall/rise), damping and drain for one address family."""

    def __init__(self, name: str, cfg: dict, announced: bool, now: float):
        self.name = name
        self.cfg = cfg
        # A restart of the daemon keeps what keepalived was told: no withdrawal just for that.
        self.healthy = announced
        self.announced = announced
        self.ok_streak = cfg["rise"] if announced else 0
        self.fail_streak = 0
        self.first_fail = None  # wall time of the first failed check of the current streak
        self.problems: list[str] = []
        self.flaps = 0
        self.last_failure = None
        self.hold_until = 0.0
        self.failures = 0
        self.transitions = 0
        self.last_transition = now
        self.detected = None  # when the last failure was first seen
        self.withdraw_started = None  # detection time of a withdrawal not yet seen in the kernel
        self.withdraw_seconds = None
        self.reason = "started" if announced else "starting: waiting for the checks to rise"

    def fail_now(self, now: float, problems: list[str], detected: float) -> None:
        """A failure that needs no confirmation (Knot stopped or crashed)."""
        self.problems = problems
        self.ok_streak = 0
        self.fail_streak = max(self.fail_streak, self.cfg["fall"])
        if self.first_fail is None:
            self.first_fail = detected
        if self.healthy:
            self._failed(now, detected)

    def result(self, now: float, problems: list[str], started: float) -> None:
        """The outcome of one check that started at wall time STARTED."""
        self.problems = problems
        if problems:
            self.ok_streak = 0
            self.fail_streak += 1
            if self.first_fail is None:
                self.first_fail = started
            if self.healthy and self.fail_streak >= self.cfg["fall"]:
                self._failed(now, self.first_fail)
        else:
            self.fail_streak = 0
            self.first_fail = None
            self.ok_streak += 1
            if not self.healthy and self.ok_streak >= self.cfg["rise"]:
                self.healthy = True

    def _failed(self, now: float, detected: float) -> None:
        damping = self.cfg["damping"]
        self.healthy = False
        self.failures += 1
        if self.last_failure is not None and now - self.last_failure <= damping["reset"]:
            self.flaps += 1
        else:
            self.flaps = 1
        self.last_failure = now
        if self.flaps >= 2:
            hold = min(damping["hold"] * 2 ** (self.flaps - 2), damping["max_hold"])
            self.hold_until = max(self.hold_until, now + hold)
        self.detected = detected

    def held(self, now: float) -> float:
        return max(0.0, self.hold_until - now)

    def decide(self, now: float, drained: bool) -> tuple[bool, str] | None:
        """(announce?, why) when the decision changes, else None."""
        if drained:
            want, why = False, "drained"
        elif not self.healthy:
            want, why = False, "; ".join(self.problems[:3]) or "checks failing"
        elif self.held(now) > 0:
            want, why = False, f"damped: {self.flaps} failures within {self.cfg['damping']['reset']:g} s, " \
                               f"held down {self.held(now):.0f} s more"
        elif self.ok_streak > self.cfg["rise"]:
            # Past `rise` the count is left out, so that a healthy family's reason, and with it
            # state.json and the textfile, stays the same from one check to the next.
            want, why = True, f"more than {self.cfg['rise']} good checks in a row"
        else:
            want, why = True, f"{self.ok_streak} good check{'' if self.ok_streak == 1 else 's'} in a row"
        changed = want != self.announced
        if changed:
            self.announced = want
            self.transitions += 1
            self.last_transition = now
            # A withdrawal for a failure is timed until the routes leave the kernel; a drain is not.
            self.withdraw_started = self.detected if not want and not drained else None
        self.reason = why
        return (want, why) if changed else None

    def state(self, now: float, drain: dict | None, drained: bool) -> str:
        if self.announced:
            return "draining" if drain else "announced"
        if drained:
            return "drained"
        if self.healthy and self.held(now) > 0:
            return "damped"
        return "withdrawn"
