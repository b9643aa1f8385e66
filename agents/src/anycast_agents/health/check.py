"""The DNS check: the local Knot, asked on every anycast address of a family for the SOA of every
zone, over UDP and TCP, without recursion. Only an authoritative NOERROR answer carrying the
zone's SOA passes (an expired or unloaded zone answers SERVFAIL).

Silence is judged per transport: a query left unanswered fails the check when every query of its
transport went unanswered (Knot hung, its UDP or TCP side dead). When some were answered and others
not, Knot is busy, not failed: a flood fills its UDP sockets, which drop datagrams whatever their
source, and its workers answer late. Tried on the lab, dnsperf from one region at about 65,000 q/s
(RRL answering a third): with every silence a failure, fra1 was withdrawn in each of three 8 s
floods, which moves the flood onto the next PoP. A flood can also leave all of a check's UDP
datagrams among those the kernel drops for full socket buffers: a UDP side that answered nothing
while the kernel dropped datagrams and Knot kept reading its sockets, with TCP answering right, is
busy too (flooded(); 3 floods of 11 withdrew fra1 on the lab before). A wrong
answer (SERVFAIL, REFUSED, not authoritative, no SOA) or an error always fails. A UDP query is
also sent again every UDP_RESEND seconds until an answer comes or the timeout ends, and an answer
to any send counts, as a resolver retries. A hung Knot answers nothing and fails each round at
the timeout, as before."""

from __future__ import annotations

import errno
import functools
import os
import selectors
import socket
import struct
import time

import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

# Seconds between two sends of one UDP query while no answer came (5 sends in a 0.15 s timeout).
# Only a query not answered within it is sent again: a Knot that answers in 1-20 ms gets one.
UDP_RESEND = 0.03


# What the checks cost is dnspython building every query and parsing every answer: 40 of each a
# second per server on the lab, about 60 % of the daemon's CPU. A zone's query is the same bytes
# but for its ID, so it is built once (_template, cached); Knot answers a zone's SOA query with
# the same bytes round after round (but for the ID) until the zone changes, and the verdict on an
# answer depends on nothing but its bytes and the query's, so it is kept (_VERDICTS), keyed by
# both without the ID. An answer is parsed when its bytes are new, or its ID is not the query's.
_VERDICTS: dict[tuple[bytes, bytes], str | None] = {}
VERDICTS_MAX = 256  # forgotten all at once when full: a few rounds parse again


@functools.cache
def _template(zone: str) -> tuple[bytes, dns.name.Name]:
    """ZONE's SOA query (recursion not desired) in wire format, and ZONE as a name."""
    qname = dns.name.from_text(zone)
    query = dns.message.make_query(qname, dns.rdatatype.SOA)
    query.flags &= ~dns.flags.RD
    return query.to_wire(), qname


class _Query:
    """One job of ask_all: its query, its socket, and what came back."""

    def __init__(self, address: str, zone: str, tcp: bool, port: int):
        self.template, self.qname = _template(zone)
        self.wire = struct.pack("!H", dns.entropy.random_16()) + self.template[2:]  # a new ID each time
        self.tcp = tcp
        self.result: str | None = None
        self.done = False
        self.next_send = 0.0
        self.buffer = b""
        self.connected = False
        self.pending = struct.pack("!H", len(self.wire)) + self.wire if tcp else b""
        self.writing = tcp  # registered for EVENT_WRITE until the query is sent
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            if tcp:
                code = self.sock.connect_ex((address, port))
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, os.strerror(code))
            else:
                self.sock.connect((address, port))
        except OSError as exc:
            self.finish(f"query failed: {exc}")

    def finish(self, result: str | None) -> None:
        self.result, self.done = result, True

    def judge_answer(self, data: bytes) -> None:
        """DATA judged when it is the answer to this query; over UDP, anything else is ignored (a
        stray datagram), over TCP it fails the query."""
        key = (self.template, data[2:])
        if data[:2] == self.wire[:2] and key in _VERDICTS:
            self.finish(_VERDICTS[key])
            return
        try:
            resp = dns.message.from_wire(data)
        except dns.exception.DNSException as exc:
            if self.tcp:
                self.finish(f"query failed: {exc}")
            return
        if dns.message.from_wire(self.wire).is_response(resp):
            if len(_VERDICTS) >= VERDICTS_MAX:
                _VERDICTS.clear()
            _VERDICTS[key] = verdict(resp, self.qname)
            self.finish(_VERDICTS[key])
        elif self.tcp:
            self.finish("query failed: an answer to another query")


def verdict(resp: dns.message.Message, qname: dns.name.Name) -> str | None:
    """None for an authoritative NOERROR answer carrying QNAME's SOA, else what is wrong with it."""
    if resp.rcode() != dns.rcode.NOERROR:
        return f"answered {dns.rcode.to_text(resp.rcode())}"
    if not resp.flags & dns.flags.AA:
        return "answer not authoritative"
    if not any(r.rdtype == dns.rdatatype.SOA and r.name == qname for r in resp.answer):
        return "no SOA in the answer"
    return None


def _step(q: _Query, readable: bool, writable: bool) -> None:
    """Move Q on with what its socket allows now; errors end it as a failed query."""
    try:
        if q.tcp:
            if writable and q.pending:
                if not q.connected:
                    code = q.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise OSError(code, os.strerror(code))
                    q.connected = True
                q.pending = q.pending[q.sock.send(q.pending):]
            if readable:
                data = q.sock.recv(65537)
                if not data:
                    raise EOFError("the server closed the connection")
                q.buffer += data
                if len(q.buffer) >= 2:
                    size = struct.unpack("!H", q.buffer[:2])[0]
                    if len(q.buffer) >= 2 + size:
                        q.judge_answer(q.buffer[2:2 + size])
        elif readable:
            while not q.done:
                try:
                    data = q.sock.recv(65535)
                except BlockingIOError:
                    break
                q.judge_answer(data)
    except (OSError, EOFError) as exc:
        q.finish(f"query failed: {exc}")


def ask_all(jobs: list[tuple[str, str, bool]], port: int, deadline: float) -> list[str | None]:
    """Every job's query (address, zone, tcp) at once, from this one thread, until each is answered or
    DEADLINE (time.monotonic()) passes; per job, None when it answered ZONE's SOA authoritatively,
    else what went wrong. A UDP query is sent again every UDP_RESEND seconds on its socket until an
    answer to any send arrives; the sockets are connected, so an ICMP port unreachable fails a UDP
    query at once. One thread and a selector instead of a thread per query:
    on the lab (40 queries a second) it used 15 ms of CPU a second where the 8 threads used 24."""
    if deadline - time.monotonic() <= 0:
        return ["no time left"] * len(jobs)
    queries: list[_Query] = []
    with selectors.DefaultSelector() as sel:
        try:
            for address, zone, tcp in jobs:
                q = _Query(address, zone, tcp, port)
                queries.append(q)
                if not q.done:
                    sel.register(q.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if tcp else 0), q)
            while True:
                now = time.monotonic()
                waiting = [q for q in queries if not q.done]
                if not waiting or now >= deadline:
                    break
                for q in waiting:
                    if not q.tcp and now >= q.next_send:
                        try:
                            q.sock.send(q.wire)
                        except OSError as exc:
                            q.finish(f"query failed: {exc}")
                            sel.unregister(q.sock)
                            continue
                        q.next_send = now + UDP_RESEND
                    elif q.writing and not q.pending:
                        sel.modify(q.sock, selectors.EVENT_READ, q)
                        q.writing = False
                waiting = [q for q in waiting if not q.done]
                if not waiting:
                    break
                wake = min([deadline] + [q.next_send for q in waiting if not q.tcp])
                for key, events in sel.select(max(0.0, wake - time.monotonic())):
                    q = key.data
                    if not q.done:
                        _step(q, bool(events & selectors.EVENT_READ), bool(events & selectors.EVENT_WRITE))
                    if q.done:  # a late answer or a closed connection must not wake the loop again
                        sel.unregister(q.sock)
        finally:
            for q in queries:
                q.sock.close()
    return [q.result if q.done else "no answer in time" for q in queries]


def check_jobs(config: dict, family: str) -> list[tuple[str, str, bool]]:
    addresses = config["addresses"].get(family) or []
    return [(a, z, tcp) for a in addresses for z in config["zones"] for tcp in (False, True)]


NO_ANSWER = "no answer in time"
SILENT = (NO_ANSWER, "no time left")


def _line(job: tuple[str, str, bool], result: str) -> str:
    address, zone, tcp = job
    return f"{address} {zone} {'tcp' if tcp else 'udp'}: {result}"


# A UDP side counts as flooded, not dead, only while the node's applications read at least this
# many UDP datagrams during the check (the kernel counts InDatagrams when a socket is read): a
# flooded Knot reads thousands in 0.15 s, a node whose Knot reads no UDP only its BFD packets, a few.
UDP_READ_MIN = 100


def udp_counters(family: str, snmp: str = "/proc/net/snmp", snmp6: str = "/proc/net/snmp6") -> tuple[int, int] | None:
    """The kernel's UDP counters of FAMILY ('4' or '6') in this network namespace: datagrams read by
    the applications (InDatagrams) and datagrams dropped because the receiving socket's buffer was
    full (RcvbufErrors); None when unreadable."""
    try:
        if family == "6":
            with open(snmp6, encoding="ascii") as fh:
                found = dict(line.split()[:2] for line in fh if line.startswith("Udp6"))
            return int(found["Udp6InDatagrams"]), int(found["Udp6RcvbufErrors"])
        with open(snmp, encoding="ascii") as fh:
            rows = [line.split() for line in fh if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("InDatagrams")]), int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError, KeyError):
        return None


def flooded(before: tuple[int, int] | None, after: tuple[int, int] | None) -> bool:
    """Between two udp_counters readings: the kernel dropped datagrams for full socket buffers while
    the node's sockets were read (UDP_READ_MIN datagrams or more): Knot's UDP side busy, not stuck."""
    if before is None or after is None:
        return False
    return after[1] > before[1] and after[0] - before[0] >= UDP_READ_MIN


def judge(jobs: list[tuple[str, str, bool]], results: list[str | None],
          udp_overflowing: bool = False) -> tuple[list[str], list[str]]:
    """The queries that fail the check, and the ones it forgives, one line each (address, zone,
    transport, what went wrong). Every wrong answer or error fails, and so do the unanswered queries
    of a transport none of whose queries was answered; unanswered queries of a transport that also
    answered are Knot busy, forgiven. So is a UDP side that answered nothing while the node was
    flooded (UDP_OVERFLOWING, see flooded(): the kernel dropped datagrams for full receive buffers
    while Knot kept reading its sockets) and TCP answered right: all of a check's few datagrams can
    be among those dropped. A hung Knot answers no TCP, and a stuck UDP side reads nothing."""
    dead = {tcp: all(r in SILENT for (_, _, t), r in zip(jobs, results) if t == tcp) for tcp in (False, True)}
    if udp_overflowing and any(r is None for (_, _, t), r in zip(jobs, results) if t):
        dead[False] = False
    failing, forgiven = [], []
    for job, result in zip(jobs, results):
        if result:
            (forgiven if result in SILENT and not dead[job[2]] else failing).append(_line(job, result))
    return failing, forgiven


def problems(jobs: list[tuple[str, str, bool]], results: list[str | None],
             udp_overflowing: bool = False) -> list[str]:
    """What fails the check (judge's first list)."""
    return judge(jobs, results, udp_overflowing)[0]


def check(config: dict, family: str) -> list[str]:
    """Problems found for FAMILY ('4' or '6'); empty when healthy."""
    jobs = check_jobs(config, family)
    if not jobs:
        return [f"nothing to check for IPv{family}: addresses {config['addresses'].get(family)}, "
                f"zones {config['zones']}"]
    port = int(config.get("port", 53))
    counters = udp_counters(family)
    results = ask_all(jobs, port, time.monotonic() + float(config["timeout"]))
    return problems(jobs, results, flooded(counters, udp_counters(family)))
