"""The DNS check: the local Knot, asked on every anycast address of a family for the SOA of every
zone, over UDP and TCP, without recursion. Only an authoritative NOERROR answer carrying the
zone's SOA passes (an expired or unloaded zone answers SERVFAIL)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype


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
            resp = dns.query.udp(query, address, timeout=left, port=port)
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


def problems(jobs: list[tuple[str, str, bool]], results: list[str | None]) -> list[str]:
    """One line per failed query: address, zone, transport and what went wrong."""
    return [f"{a} {z} {'tcp' if tcp else 'udp'}: {r}" for (a, z, tcp), r in zip(jobs, results) if r]


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
