"""anycast-lab: the lab's command line (the contract other issues and tests rely on)."""

from __future__ import annotations

import argparse
import json
import os
import sys

# Only what the parser needs at the top: the engine (images, apt cache, ...) is imported by the
# commands that use it, so `exec` and `probe`, run often by people and by the tests, start without it.
from . import probe, resolver, supervise
from .shell import LabError
from .topology import DEBIAN_RELEASES, load


def _cmd_up(args) -> int:
    from . import engine  # noqa: PLC0415
    engine.up()
    return 0


def _cmd_down(args) -> int:
    from . import engine  # noqa: PLC0415
    left = engine.down()
    return 1 if any(left.values()) else 0


def _cmd_status(args) -> int:
    from . import engine  # noqa: PLC0415
    nodes = engine.status()
    if args.json:
        print(json.dumps(nodes, indent=1))
    else:
        for node in nodes:
            debian = f"debian{node['debian']}" if node.get("debian") else "-"
            print(f"{node['name']:10} {node['kind']:7} {node['state']:9} {node['netns']:14} {node['mgmt'] or '-':13} "
                  f"{debian}")
    return 0 if all(n["state"] == "running" for n in nodes) else 3


def _cmd_exec(args) -> int:
    from . import engine  # noqa: PLC0415
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    argv = engine.exec_argv(load(), args.node, cmd)
    os.execvp(argv[0], argv)  # noqa: S606 - exec replaces the CLI with the command, by design
    return 127  # not reached


def _cmd_probe(args) -> int:
    result = probe.run_probe(load(), client=args.source, target=args.target, rate=args.rate,
                             duration=args.duration, timeout=args.timeout, qname=args.qname, qtype=args.qtype,
                             tcp=args.tcp, stop_file=args.stop_file, late_grace=args.late_grace)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(probe.format_summary(result["summary"]))
    return 0


def _cmd_resolve(args) -> int:
    from .paths import state_paths  # noqa: PLC0415
    try:
        anchors = open(args.anchor, encoding="utf-8").read()  # noqa: SIM115 - read once
    except OSError as exc:
        raise LabError(f"cannot read the trust anchor file: {exc}") from exc
    questions = [(args.name, args.type)]
    result = resolver.resolve(load(), state_paths(), client=args.source, anchors=anchors, zones=args.zone,
                              questions=questions, stubs=args.stub or None, lifetime=args.lifetime)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for ans in result["answers"]:
            flags = "AD" if ans.get("ad") else "no AD"
            print(f"{ans['name']} {ans['type']}: {ans['rcode']}, {flags}")
            for line in ans.get("answer", []):
                print("  " + line)
    return 0 if all(a.get("rcode") == "NOERROR" and a.get("ad") for a in result["answers"]) else 4


def _cmd_reboot(args) -> int:
    from . import engine  # noqa: PLC0415
    took = engine.reboot(load(), args.node)
    print(f"{args.node} rebooted and running again in {took:.1f} s")
    return 0


def _cmd_poweroff(args) -> int:
    from . import engine  # noqa: PLC0415
    engine.poweroff(load(), args.node, max_off=args.max_off)
    print(f"{args.node} powered off (links silent, every process killed); power on with "
          f"'anycast-lab poweron {args.node}' (it comes back by itself after {args.max_off:.0f} s)")
    return 0


def _cmd_poweron(args) -> int:
    from . import engine  # noqa: PLC0415
    took = engine.poweron(load(), args.node)
    print(f"{args.node} powered on and running in {took:.1f} s")
    return 0


def _cmd_reimage(args) -> int:
    from . import engine  # noqa: PLC0415
    took = engine.reimage(load(), args.node, args.debian)
    print(f"{args.node} re-imaged with Debian {args.debian} and running in {took:.1f} s (fresh disk, same addresses)")
    return 0


def _cmd_silence(args) -> int:
    from . import faults  # noqa: PLC0415
    topo = load()
    if args.off:
        was = faults.restore(topo, args.node, args.iface)
        print(f"{args.node} {args.iface}: {'restored' if was else 'was not silenced'}")
    else:
        faults.silence(topo, args.node, args.iface)
        print(f"{args.node} {args.iface}: silent (link up, every frame dropped); undo with --off")
    return 0


def _cmd_gen_routers(args) -> int:
    from . import routers  # noqa: PLC0415
    for path in routers.write_all(load()):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anycast-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build images if needed and boot the whole lab (removes a stale lab first)")
    sub.add_parser("down", help="remove every namespace, mount, bridge and process of the lab")
    st = sub.add_parser("status", help="every node: name, kind, netns, mgmt address, state")
    st.add_argument("--json", action="store_true")
    ex = sub.add_parser("exec", help="run a command inside a node: exec NODE -- CMD ...")
    ex.add_argument("node")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    pr = sub.add_parser("probe", help="fixed-rate DNS queries with NSID from a client, for a bounded time")
    pr.add_argument("--from", dest="source", required=True, help="client node, e.g. cl-hkg")
    pr.add_argument("--target", default="203.0.113.53", help="address to query (must belong to the lab)")
    pr.add_argument("--rate", type=float, default=20.0, help="queries per second (max %d)" % probe.MAX_RATE)
    pr.add_argument("--duration", type=float, default=5.0, help="seconds (max %d)" % probe.MAX_DURATION)
    pr.add_argument("--timeout", type=float, default=0.5, help="per-query timeout in seconds")
    pr.add_argument("--late-grace", type=float, default=0.0,
                    help="after a UDP timeout, listen this much longer (max %g s) and record how late an answer "
                         "came (still a timeout)" % probe.MAX_LATE_GRACE)
    pr.add_argument("--qname", default="example.com.", help="name queried")
    pr.add_argument("--qtype", default="SOA", help="type queried (%s)" % ", ".join(probe.QTYPES))
    pr.add_argument("--tcp", action="store_true", help="query over TCP instead of UDP")
    pr.add_argument("--json", action="store_true", help="per-query records and the summary as JSON")
    pr.add_argument("--stop-file", help="stop sending early once this file exists (still at most --duration)")
    rs = sub.add_parser("resolve", help="ask a validating Unbound in a client namespace (exit 4 unless NOERROR + AD)")
    rs.add_argument("--from", dest="source", required=True, help="client node, e.g. cl-hkg")
    rs.add_argument("--anchor", required=True, help="file with the trust anchors (DS or DNSKEY records)")
    rs.add_argument("--zone", action="append", required=True, help="zone Unbound sends to the stub addresses")
    rs.add_argument("--stub", action="append", help="address of the zones' servers (default: the anycast addresses)")
    rs.add_argument("--lifetime", type=float, default=60.0, help="seconds Unbound may live (max %d)"
                    % resolver.MAX_LIFETIME)
    rs.add_argument("--json", action="store_true")
    rs.add_argument("name")
    rs.add_argument("type", nargs="?", default="A")
    rb = sub.add_parser("reboot", help="reboot a machine from inside and wait until it runs again")
    rb.add_argument("node")
    po = sub.add_parser("poweroff", help="pull a machine's plug: links silent, every process killed at once")
    po.add_argument("node")
    po.add_argument("--max-off", type=float, default=300.0,
                    help="seconds after which the machine powers on by itself (max %d)" % supervise.MAX_OFF_S)
    pn = sub.add_parser("poweron", help="power a machine on again after poweroff and wait until it runs")
    pn.add_argument("node")
    ri = sub.add_parser("reimage", help="re-create a server on a Debian release: fresh disk, same name and addresses")
    ri.add_argument("node")
    ri.add_argument("--debian", type=int, required=True, choices=list(DEBIAN_RELEASES), help="the release to install")
    si = sub.add_parser("silence", help="make a machine's link silent: carrier up, every frame dropped")
    si.add_argument("node")
    si.add_argument("iface")
    si.add_argument("--off", action="store_true", help="restore the link")
    sub.add_parser("gen-routers", help="regenerate lab/routers/*.conf from lab/topology.yml")
    return parser


HANDLERS = {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status, "exec": _cmd_exec, "probe": _cmd_probe,
            "resolve": _cmd_resolve, "reboot": _cmd_reboot, "poweroff": _cmd_poweroff, "poweron": _cmd_poweron,
            "reimage": _cmd_reimage, "silence": _cmd_silence, "gen-routers": _cmd_gen_routers}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except LabError as exc:
        print(f"anycast-lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("anycast-lab: interrupted; run 'anycast-lab down' to clean up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
