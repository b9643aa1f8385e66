"""anycast-health: decide, per address family, whether this PoP server announces the anycast aggregates.

    anycast-health run                 the daemon (anycast-health.service)
    anycast-health check [4|6]         one check now; problems on stderr; exit 0 healthy, 1 not
    anycast-health status [--json]     what the daemon decided, per family (state.json, schema 1)
    anycast-health drain [--wait S]    GRACEFUL_SHUTDOWN first, withdraw once the traffic moved (<= S s)
    anycast-health undrain             announce again (once the checks pass)
    anycast-health --version

The daemon asks the local Knot, on every anycast address of a family, for the SOA of every zone,
over UDP and TCP, every `interval` seconds within `timeout`. After `fall` failed checks the family
is withdrawn, after `rise` good ones announced again, unless damping holds it down: a failure
within `damping.reset` seconds of the previous one holds the family down for `damping.hold`
seconds, doubled at each further failure up to `damping.max_hold`.

A drain (STATE_DIR/drain, kept across reboots) switches FRR to `bgp graceful-shutdown`, so the
routes leave with GRACEFUL_SHUTDOWN (65535:0) and upstreams move traffic away. The families are
withdrawn once the queries reaching the anycast addresses from outside (nftables counters) have
fallen to `drain_residual` of their rate before the drain (or to under 1 q/s), but not before
`drain_min_wait` seconds, and at the latest after the drain's wait. Undrain removes the flag:
graceful-shutdown goes (unless frr.conf itself asks for it) and the families are announced as soon
as the checks pass.

State for Prometheus (node_exporter's textfile collector) goes to the config's `textfile`, on every
change and once per check interval (anycast_health_updated_timestamp_seconds), with the count of
queries that reached the anycast addresses from outside (anycast_health_external_queries_total).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from .. import __version__, paths
from .. import state as statefile
from .check import check
from .daemon import FAMILIES, STATE_NAME, Daemon
from .files import drain_lock, read_drain, write_atomic


def load_config(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    config.setdefault("run_dir", paths.HEALTH_RUN_DIR)
    config.setdefault("state_dir", paths.HEALTH_STATE_DIR)
    config.setdefault("damping", {"hold": 10, "max_hold": 300, "reset": 300})
    config.setdefault("drain_wait", 10)
    for key in ("zones", "addresses", "aggregates", "interval", "timeout", "fall", "rise"):
        if key not in config:
            raise KeyError(key)
    return config


def read_state(config: dict) -> dict | None:
    return statefile.read(os.path.join(config["run_dir"], STATE_NAME))


def wait_for_state(config: dict, pred, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(config)
        if state and pred(state):
            return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def print_status(state: dict | None) -> None:
    if state is None:
        print("no state: is anycast-health.service running?")
        return
    drain = state.get("drain")
    if drain:
        left = drain["since"] + drain["wait"] - time.time()
        at = f"drain: set at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(drain['since']))}"
        if drain.get("withdrawn_at"):
            print(f"{at}, withdrawn {drain['withdrawn_at'] - drain['since']:.1f} s later: {drain['why']}")
        elif left > 0:
            before = drain.get("rate_before")
            print(f"{at}, withdrawing once the traffic has moved, at the latest in {left:.0f} s"
                  + (f" ({before:.1f} q/s before the drain)" if before is not None else ""))
        else:
            print(f"{at}, withdrawn")
    else:
        print("drain: not set")
    for name, fam in state["families"].items():
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fam["last_transition"]))
        print(f"{name}: {fam['state']} since {since} ({fam['reason']}); failures {fam['failures']}, "
              f"transitions {fam['transitions']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="anycast-health", description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"anycast-health (anycast-agents) {__version__}")
    ap.add_argument("--config", default=paths.HEALTH_CONFIG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="the daemon")
    ck = sub.add_parser("check", help="one check now")
    ck.add_argument("family", nargs="?", choices=["4", "6"])
    st = sub.add_parser("status", help="what the daemon decided")
    st.add_argument("--json", action="store_true")
    dr = sub.add_parser("drain", help="GRACEFUL_SHUTDOWN, then withdraw after the wait")
    dr.add_argument("--wait", type=float, help="longest wait between GRACEFUL_SHUTDOWN and the withdrawal (s)")
    dr.add_argument("--no-block", action="store_true", help="return at once instead of waiting for the withdrawal")
    ud = sub.add_parser("undrain", help="announce again once the checks pass")
    ud.add_argument("--no-block", action="store_true", help="return at once instead of waiting for the announcement")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"anycast-health: cannot use {args.config}: {exc}", file=sys.stderr)
        return 2

    if args.cmd == "run":
        daemon = Daemon(config)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(daemon, "stop", True))
        return daemon.run()
    if args.cmd == "check":
        bad = 0
        for fam in [args.family] if args.family else [f for f in FAMILIES if config["addresses"].get(f)]:
            problems = check(config, fam)
            for line in problems:
                print(f"IPv{fam}: {line}", file=sys.stderr)
            print(f"IPv{fam}: {'FAIL' if problems else 'OK'}")
            bad |= bool(problems)
        return 1 if bad else 0
    if args.cmd == "status":
        try:
            state = read_state(config)
        except statefile.SchemaError as exc:
            print(f"anycast-health: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(state, indent=1))
        else:
            print_status(state)
        return 0 if state else 3
    path = os.path.join(config["state_dir"], "drain")
    if args.cmd == "drain":
        wait = float(config["drain_wait"] if args.wait is None else args.wait)
        if wait < 0:
            print("anycast-health: --wait must be 0 or more seconds", file=sys.stderr)
            return 2
        with drain_lock(config["state_dir"]):
            current = read_drain(config["state_dir"])
            if current is None:
                write_atomic(path, json.dumps({"since": time.time(), "wait": wait}) + "\n")
        if current is None:
            print(f"drain set: GRACEFUL_SHUTDOWN now, withdrawal once the traffic has moved, "
                  f"at the latest in {wait:g} s")
        else:
            print("drain already set; keeping its start and wait")
            current_end = current["since"] + current["wait"]
            wait = max(0.0, current_end - time.time())
        if args.no_block:
            return 0
        state = wait_for_state(config, lambda s: s.get("drain") and all(
            not f["announced"] for f in s["families"].values()), wait + 15)
        print_status(state)
        return 0 if state else 1
    # undrain
    try:
        with drain_lock(config["state_dir"]):
            os.unlink(path)
        print("drain removed: announcing again once the checks pass")
    except FileNotFoundError:
        print("not drained")
    if args.no_block:
        return 0
    # Done when each family is announced, or cannot be yet (checks failing, damping holds it).
    state = wait_for_state(config, lambda s: not s.get("drain") and all(
        f["announced"] or not f["healthy"] or f["state"] == "damped" for f in s["families"].values()), 30)
    print_status(state)
    if state is None or not all(f["announced"] for f in state["families"].values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
