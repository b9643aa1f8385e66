"""Runs inside a client namespace: fixed-rate queries (SOA by default) with the NSID option; JSON out.

Bounded: at most rate x duration queries, each with its own timeout; never outlives its duration
by more than one timeout (plus --late-grace). With --stop-file it stops sending as soon as that
file exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rdatatype

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; Python does not name it): the kernel stamps each
# datagram with the time it arrived, a struct timespec in an SCM_TIMESTAMPNS control message.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@qq")
# And SO_TIMESTAMPING (linux/net_tstamp.h) for the other end: the kernel stamps the query when it
# hands it to the device layer, inside send(), and queues the stamp on the socket's error queue
# (SCM_TIMESTAMPING: three timespecs, the first one software). TX_SCHED | SOFTWARE | OPT_TSONLY.
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING = (1 << 8) | (1 << 4) | (1 << 11)
ERRQUEUE_CONTROL = 512


def _kernel_stamps(sock: socket.socket) -> list[float]:
    """Every send stamp waiting on SOCK's error queue (without blocking), as CLOCK_REALTIME seconds."""
    stamps = []
    while True:
        try:
            _data, ancillary, _flags, _addr = sock.recvmsg(1, ERRQUEUE_CONTROL, socket.MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            return stamps
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(payload) >= TIMESPEC.size:
                sec, nsec = TIMESPEC.unpack(payload[:TIMESPEC.size])
                if sec or nsec:
                    stamps.append(sec + nsec / 1e9)


class LateAnswer(dns.exception.Timeout):
    """The answer came, but after the timeout: a loss to the client, told apart from silence."""

    def __init__(self, seconds: float, response: dns.message.Message):
        super().__init__()
        self.seconds = seconds
        self.response = response


def udp_exchange(query: dns.message.Message, target: str, timeout: float,
                 grace: float = 0.0) -> tuple[dns.message.Message, float]:
    """QUERY to TARGET over UDP: (response, seconds from the kernel's send stamp to its arrival stamp).

    Judged on the kernel's times, not on when this thread runs: on a loaded host the worker can be
    kept off the CPU past the timeout while the answer waits in the socket, or between reading the
    clock and sending, and counting either as lost would measure the host's scheduler, not the
    network. (Without a send stamp, the clock read just before send() stands in.) Once the deadline
    has passed by this thread's clock, the socket is read without waiting one last time; whatever
    arrived is judged by its stamp. Raises dns.exception.Timeout when nothing arrived within TIMEOUT.
    With GRACE, it then listens that much longer: an answer that comes in that time raises
    LateAnswer (how late, and the answer), which says a packet was delayed, not dropped."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    wire = query.to_wire()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        with contextlib.suppress(OSError):  # a kernel without it: the clock before send() is used
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING)
        sock.setblocking(False)
        sock.connect((target, 53))
        before = time.time()  # CLOCK_REALTIME, the clock of the kernel's stamps
        sock.send(wire)
        stamps = _kernel_stamps(sock)
        sent = min(stamps, default=before)
        while True:
            remaining = sent + timeout + grace - time.time()
            readable, _, _ = select.select([sock], [], [], max(remaining, 0))
            if not readable:
                raise dns.exception.Timeout
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                # Readable for its error queue only: the send stamp, come late.
                stamps += _kernel_stamps(sock)
                sent = min(stamps, default=before)
                continue
            arrived = time.time()
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= TIMESPEC.size:
                    sec, nsec = TIMESPEC.unpack(payload[:TIMESPEC.size])
                    arrived = sec + nsec / 1e9
            try:
                resp = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue  # not a DNS message: keep waiting for the answer
            if not query.is_response(resp):
                continue  # a stray or late answer to something else
            if arrived - sent > timeout:
                raise LateAnswer(arrived - sent, resp)
            return resp, arrived - sent


def _nsid(resp: dns.message.Message) -> str | None:
    for opt in resp.options:
        if opt.otype == dns.edns.NSID:
            data = opt.data if hasattr(opt, "data") else opt.nsid
            return bytes(data).decode(errors="replace")
    return None


def one_query(target: str, qname: str, timeout: float, tcp: bool, qtype: str = "SOA", *,
              grace: float = 0.0) -> dict:
    query = dns.message.make_query(qname, dns.rdatatype.from_text(qtype), use_edns=0,
                                   options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
    query.flags &= ~0x0100  # RD off: an authoritative server is asked
    start = time.monotonic()
    try:
        if tcp:
            resp = dns.query.tcp(query, target, timeout=timeout)
            rtt = (time.monotonic() - start) * 1000
        else:
            resp, seconds = udp_exchange(query, target, timeout, grace)
            rtt = seconds * 1000
    except LateAnswer as late:
        # Still a timeout (not answered, as the client saw it); how late, and who answered, is kept.
        return {"rtt_ms": None, "nsid": None, "rcode": None, "error": "Timeout",
                "late_ms": round(late.seconds * 1000, 1), "late_nsid": _nsid(late.response),
                "late_rcode": dns.rcode.to_text(late.response.rcode()),
                "late_aa": bool(late.response.flags & dns.flags.AA)}
    except (dns.exception.Timeout, OSError, EOFError, dns.exception.DNSException) as exc:
        return {"rtt_ms": None, "nsid": None, "rcode": None, "error": type(exc).__name__}
    nsid = _nsid(resp)
    return {"rtt_ms": round(rtt, 3), "nsid": nsid, "rcode": dns.rcode.to_text(resp.rcode()),
            "aa": bool(resp.flags & dns.flags.AA), "answers": sum(len(rrset) for rrset in resp.answer)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--qname", default="example.com.")
    ap.add_argument("--qtype", default="SOA")
    ap.add_argument("--late-grace", type=float, default=0.0)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--stop-file")
    args = ap.parse_args()
    socket.setdefaulttimeout(args.timeout)
    count = max(1, int(args.rate * args.duration))
    interval = 1.0 / args.rate
    records: list[dict] = [{} for _ in range(count)]
    threads = []
    t0 = time.monotonic()

    def fire(i: int, t_ms: float, at: float) -> None:
        rec = one_query(args.target, args.qname, args.timeout, args.tcp, args.qtype, grace=args.late_grace)
        # at: wall-clock send time (the host's clock), to line queries up with events elsewhere.
        rec.update({"seq": i, "t_ms": round(t_ms, 1), "at": round(at, 3)})
        records[i] = rec

    sent = count
    for i in range(count):
        if args.stop_file and os.path.exists(args.stop_file):
            sent = i
            break
        due = t0 + i * interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        th = threading.Thread(target=fire, args=(i, (time.monotonic() - t0) * 1000, time.time()), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(args.timeout + args.late_grace + 2)
    json.dump(records[:sent], sys.stdout)
    return 0


if __name__ == "__main__":
    import dns.flags  # noqa: F401  (used via dns.flags.AA)
    import dns.rcode  # noqa: F401

    sys.exit(main())
