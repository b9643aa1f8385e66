"""The DNS check: the local Knot, asked on every anycast address of a family for the SOA of every
zone, over UDP and TCP, without recursion. Only an authoritative NOERROR answer carrying the
zone's SOA passes (an expired or unloaded zone answers SERVFAIL).

Silence is judged per transport: a query left unanswered fails the check when every query of its
transport went unanswered (Knot hung, its UDP or TCP side dead). When some were answered and others
not, Knot is busy, not failed: a flood fills its UDP sockets, which drop datagrams whatever their
source, and its workers answer late. Tried on the lab, dnsperf from one region at about 65,000 q/s
(RRL answering a third): with every silence a failure, fra1 was withdrawn in each of three 8 s
floods, which moves the flood onto the next PoP. A wrong answer (SERVFAIL, REFUSED, not
authoritative, no SOA) or an error always fails. A UDP query is also sent again every UDP_RESEND
seconds until an answer comes or the timeout ends, and an answer to any send counts, as a
resolver retries. A hung Knot answers nothing and fails each round at the timeout, as before."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

# Seconds between two sends of one UDP query while no answer came (5 sends in a 0.15 s timeout).
# Only a query not answered within it is sent again: a Knot that answers in 1-20 ms gets one.
UDP_RESEND = 0.03


def udp_query(query: dns.message.Message, address: str, port: int, deadline: float) -> dns.message.Message:
    """QUERY over UDP to ADDRESS, sent again every UDP_RESEND seconds on the same socket until a
    matching answer arrives (to any send) or DEADLINE (time.monotonic()) passes: dns.exception.Timeout.
    The socket is connected, so an ICMP port unreachable fails at once (ConnectionRefusedError)."""
    wire = query.to_wire()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((address, port))
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise dns.exception.Timeout
            if now >= next_send:
                sock.send(wire)
                next_send = now + UDP_RESEND
            sock.settimeout(max(0.001, min(next_send, deadline) - now))
            try:
                data = sock.recv(65535)
            except socket.timeout:  # TimeoutError from Python 3.10 on; 3.9 has only this name
                continue
            try:
                resp = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue  # not an answer to us: keep waiting, as for a stray datagram
            if query.is_response(resp):
                return resp


def ask(address: str, zone: str, tcp: bool, port: int, deadline: float) -> str | None:
    """None when ADDRESS answers ZONE's SOA authoritatively, else what went wrong."""
    qname = dns.name.from_text(zone)
    query = dns.message.make_query(qname, dns.rdatatype.SOA)
    query.flags &= ~dns.flags.RD
    left = deadline - time.monotonic()
    if left <= 0:
        return "no time left"
    try:
        if tcp:
            resp = dns.query.tcp(query, address, timeout=left, port=port)
        else:
            resp = udp_query(query, address, port, deadline)
    except dns.exception.Timeout:
        return "no answer in time"
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        return f"query failed: {exc}"
    if resp.rcode() != dns.rcode.NOERROR:
        return f"answered {dns.rcode.to_text(resp.rcode())}"
    if not resp.flags & dns.flags.AA:
        return "answer not authoritative"
    if not any(r.rdtype == dns.rdatatype.SOA and r.name == qname for r in resp.answer):
        return "no SOA in the answer"
    return None


def check_jobs(config: dict, family: str) -> list[tuple[str, str, bool]]:
    addresses = config["addresses"].get(family) or []
    return [(a, z, tcp) for a in addresses for z in config["zones"] for tcp in (False, True)]


NO_ANSWER = "no answer in time"
SILENT = (NO_ANSWER, "no time left")


def _line(job: tuple[str, str, bool], result: str) -> str:
    address, zone, tcp = job
    return f"{address} {zone} {'tcp' if tcp else 'udp'}: {result}"


def judge(jobs: list[tuple[str, str, bool]], results: list[str | None]) -> tuple[list[str], list[str]]:
    """The queries that fail the check, and the ones it forgives, one line each (address, zone,
    transport, what went wrong). Every wrong answer or error fails, and so do the unanswered queries
    of a transport none of whose queries was answered; unanswered queries of a transport that also
    answered are Knot busy, forgiven."""
    dead = {tcp: all(r in SILENT for (_, _, t), r in zip(jobs, results) if t == tcp) for tcp in (False, True)}
    failing, forgiven = [], []
    for job, result in zip(jobs, results):
        if result:
            (forgiven if result in SILENT and not dead[job[2]] else failing).append(_line(job, result))
    return failing, forgiven


def problems(jobs: list[tuple[str, str, bool]], results: list[str | None]) -> list[str]:
    """What fails the check (judge's first list)."""
    return judge(jobs, results)[0]


def check(config: dict, family: str, pool: ThreadPoolExecutor | None = None) -> list[str]:
    """Problems found for FAMILY ('4' or '6'); empty when healthy."""
    jobs = check_jobs(config, family)
    if not jobs:
        return [f"nothing to check for IPv{family}: addresses {config['addresses'].get(family)}, "
                f"zones {config['zones']}"]
    port = int(config.get("port", 53))
    deadline = time.monotonic() + float(config["timeout"])
    own = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=len(jobs))
    try:
        futures = [pool.submit(ask, a, z, tcp, port, deadline) for a, z, tcp in jobs]
        results = [f.result() for f in futures]
    finally:
        if own:
            pool.shutdown(wait=False)
    return problems(jobs, results)
