"""The health daemon: checks the local Knot per address family, decides, tells keepalived.

It does not touch routes itself. keepalived does: one lone VRRP instance per family, MASTER (and
its kernel blackhole routes for the aggregates, which FRR redistributes) exactly while the file
RUN_DIR/ipv4 (or ipv6) holds 0, the file RUN_DIR/knot-down holds 0 (knot.service's drop-in writes
1 there the moment Knot stops or crashes) and the daemon's heartbeat is fresh. The daemon clears
knot-down again once it has counted the crash as a failure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from .. import __version__
from .. import state as statefile
from . import metrics
from .check import ask_all, check_jobs, flooded, judge, udp_counters
from .family import Family
from .files import drain_lock, read_drain, read_flag, write_atomic
from .frr import Frr
from .traffic import DrainTimer, Traffic

FAMILIES = {"4": "ipv4", "6": "ipv6"}
TICK = 0.05  # seconds between two looks at knot-down and at the kernel's routes
# The textfile is written when the state changes, and otherwise at most this often (seconds): its
# anycast_health_updated_timestamp_seconds tells Prometheus that the daemon still runs. Every check
# (5 a second) cost a rename on the node's disk for nothing.
TEXTFILE_EVERY = 1.0
BUSY_LOG_EVERY = 10.0  # seconds: unanswered queries forgiven as busy (check.judge) are logged as a count
STATE_NAME = "state.json"


def kernel_routes(family: str) -> set[str]:
    """Destinations of the blackhole routes in the main table (what keepalived installed)."""
    try:
        proc = subprocess.run(["ip", "-j", f"-{family}", "route", "show", "type", "blackhole"],
                              capture_output=True, text=True, timeout=5, check=False)
        return {r.get("dst", "") for r in json.loads(proc.stdout or "[]")}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return set()


def log(msg: str) -> None:
    print(msg, flush=True)


class Daemon:
    def __init__(self, config: dict):
        self.config = config
        self.run_dir = config["run_dir"]
        self.state_dir = config["state_dir"]
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(self.state_dir, exist_ok=True)
        now = time.time()
        self.families = {}
        for fam, name in FAMILIES.items():
            if not config["addresses"].get(fam) or not config["aggregates"].get(fam):
                continue
            adopted = read_flag(self.flag(name)) == "0"
            self.families[fam] = Family(name, config, adopted, now)
            self.tell_keepalived(self.families[fam])
            log(f"{name}: {'announced (adopted from keepalived)' if adopted else 'withdrawn until the checks rise'}")
        # One thread asks every query of a check at once (check.ask_all), while this one keeps ticking.
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.frr = Frr(config.get("frr", {}), log)
        self.traffic = Traffic(config["addresses"], int(config.get("port", 53)), log, config.get("nft", "nft"))
        self.drain_timer = DrainTimer(config)
        self.state_last = None
        self.textfile_args: tuple[dict | None, bool] = (None, False)
        self.textfile_at = 0.0  # monotonic time of the last write
        # Per family: unanswered queries forgiven since the last log line, and when that was.
        self.busy = {fam: {"count": 0, "logged_at": 0.0, "example": ""} for fam in self.families}
        self.stop = False

    def flag(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def tell_keepalived(self, fam: Family) -> None:
        want = "0" if fam.announced else "1"
        if read_flag(self.flag(fam.name)) != want:
            write_atomic(self.flag(fam.name), want + "\n")

    def knot_event(self) -> float | None:
        """Wall time at which knot.service's drop-in reported a stop, if it did."""
        path = os.path.join(self.run_dir, "knot-down")
        if read_flag(path) != "1":
            return None
        try:
            return os.stat(path).st_mtime
        except OSError:
            return time.time()

    def tick(self, drain: dict | None) -> None:
        now = time.time()
        self.traffic.sample(now, draining=drain is not None and self.drain_timer.done_at is None)
        crashed = self.knot_event()
        if crashed is not None:
            for fam in self.families.values():
                fam.fail_now(now, ["knot.service stopped"], crashed)
        self.apply(now, drain)
        if crashed is not None:
            # Counted: from now on the checks decide when Knot is back.
            write_atomic(os.path.join(self.run_dir, "knot-down"), "0\n")
        for fam_key, fam in self.families.items():
            if fam.withdraw_started is not None:
                if not (set(self.config["aggregates"][fam_key]) & kernel_routes(fam_key)):
                    fam.withdraw_seconds = max(0.0, now - fam.withdraw_started)
                    log(f"{fam.name}: routes out of the kernel {fam.withdraw_seconds:.3f} s after the failure was seen")
                    fam.withdraw_started = None
                elif now - fam.withdraw_started > 10:
                    log(f"{fam.name}: routes still in the kernel 10 s after the withdrawal (is keepalived running?)")
                    fam.withdraw_started = None

    def apply(self, now: float, drain: dict | None) -> None:
        was = self.drain_timer.done_at is not None
        drained = self.drain_timer.done(now, drain, self.traffic)
        if drained and not was:
            log(f"drain: withdrawing: {self.drain_timer.why}")
            if drain is not None and drain.get("withdrawn_at") is None:
                self.remember_withdrawal(drain)
        for fam in self.families.values():
            change = fam.decide(now, drained)
            if change:
                log(f"{fam.name}: {'announce' if change[0] else 'withdraw'}: {change[1]}")
            # Written every time: keepalived's init_file or an operator may have changed it.
            self.tell_keepalived(fam)
        self.frr.reconcile(drain is not None, now)
        self.write_state(now, drain, drained)

    def remember_withdrawal(self, drain: dict) -> None:
        """Write the withdrawal into the drain flag, unless an undrain removed the flag meanwhile."""
        path = os.path.join(self.state_dir, "drain")
        with drain_lock(self.state_dir):
            current = read_drain(self.state_dir)
            if current is None or current["since"] != drain["since"]:
                return
            report = self.drain_timer.report() or {}
            write_atomic(path, json.dumps({"since": drain["since"], "wait": drain["wait"], **report}) + "\n")

    def write_state(self, now: float, drain: dict | None, drained: bool) -> None:
        report = self.drain_timer.report()
        state = {"time": now, "drain": dict(drain, **report) if drain and report else drain, "families": {
            f.name: {"state": f.state(now, drain, drained), "announced": f.announced, "healthy": f.healthy,
                     "reason": f.reason, "held_down_seconds": math.ceil(f.held(now)), "failures": f.failures,
                     "transitions": f.transitions, "last_transition": f.last_transition,
                     "withdraw_seconds": f.withdraw_seconds, "problems": f.problems}
            for f in self.families.values()}}
        # Called every tick: the files (and the Prometheus text) are made only when something changed.
        key = json.dumps({k: v for k, v in state.items() if k != "time"}, sort_keys=True, default=str)
        if key == self.state_last:
            return
        # The textfile first: whoever sees a new state.json finds the metrics already saying the same.
        self.write_textfile(now, drain, drained)
        statefile.write(os.path.join(self.run_dir, STATE_NAME), statefile.document(
            state["time"], state["drain"], state["families"], __version__))
        self.state_last = key

    def write_textfile(self, now: float, drain: dict | None, drained: bool) -> None:
        """The metrics for node_exporter: on every change, and at least every TEXTFILE_EVERY
        seconds (refresh_textfile), so that a stale anycast_health_updated_timestamp_seconds tells
        that the daemon stopped."""
        textfile = self.config.get("textfile")
        if textfile and os.path.isdir(os.path.dirname(textfile)):
            metrics.write_textfile(textfile, self.families, drain, now, drained=drained,
                                   queries=self.traffic.last_total)
        self.textfile_args = (drain, drained)
        self.textfile_at = time.monotonic()

    def refresh_textfile(self) -> None:
        """The textfile again with the last state, once TEXTFILE_EVERY seconds have passed."""
        if time.monotonic() - self.textfile_at >= TEXTFILE_EVERY:
            self.write_textfile(time.time(), *self.textfile_args)

    def heartbeat(self) -> None:
        # The time in the file is what keepalived's heartbeat-fresh reads (one rename: never empty).
        write_atomic(os.path.join(self.run_dir, "heartbeat"), f"{time.time():.3f}\n")

    def note_busy(self, fam_key: str, lines: list[str], now: float) -> None:
        """Forgiven silences, logged at most every BUSY_LOG_EVERY seconds with their count (a flood
        would otherwise write several lines a second)."""
        busy = self.busy[fam_key]
        busy["count"] += len(lines)
        busy["example"] = lines[0] if lines else busy["example"]
        if busy["count"] and now - busy["logged_at"] >= BUSY_LOG_EVERY:
            count = busy["count"]
            log(f"{self.families[fam_key].name}: {count} quer{'y' if count == 1 else 'ies'} unanswered in time, "
                f"Knot busy, not failed (it answered others of the same transport, or TCP while a flood filled "
                f"its UDP sockets; not counted), e.g. {busy['example']}")
            busy["count"], busy["logged_at"] = 0, now

    def run(self) -> int:
        interval, timeout = float(self.config["interval"]), float(self.config["timeout"])
        port = int(self.config.get("port", 53))
        last_problems = {}
        while not self.stop:
            started_mono, started = time.monotonic(), time.time()
            drain = read_drain(self.state_dir)
            deadline = started_mono + timeout
            jobs = {fam: check_jobs(self.config, fam) for fam in self.families}
            every = [job for fam_jobs in jobs.values() for job in fam_jobs]
            counters = {fam: udp_counters(fam) for fam in jobs}
            future = self.pool.submit(ask_all, every, port, deadline)
            while not future.done() and time.monotonic() < deadline + 1:
                self.tick(drain)
                time.sleep(TICK)
            answers = future.result() if future.done() else ["no answer in time"] * len(every)
            now = time.time()
            for fam_key, fam_jobs in jobs.items():
                fam = self.families[fam_key]
                results, answers = answers[:len(fam_jobs)], answers[len(fam_jobs):]
                found, forgiven = judge(fam_jobs, results, flooded(counters[fam_key], udp_counters(fam_key)))
                self.note_busy(fam_key, forgiven, now)
                if found and found != last_problems.get(fam_key):
                    log(f"{fam.name}: check failed ({fam.fail_streak + 1} in a row): {'; '.join(found[:4])}")
                last_problems[fam_key] = found
                fam.result(now, found, started)
            self.apply(now, drain)
            self.heartbeat()
            self.refresh_textfile()
            while not self.stop and time.monotonic() < started_mono + interval:
                self.tick(read_drain(self.state_dir))
                time.sleep(TICK)
        log("stopping; keepalived keeps the last decision until the heartbeat goes stale")
        self.pool.shutdown(wait=False, cancel_futures=True)
        return 0
