"""Runs inside a client namespace: asks a recursive resolver questions with the DO bit; JSON out.

Waits for the resolver to answer (it may still be starting) until --deadline seconds have passed;
each question is then asked once. Bounded: a timeout per query and one overall deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def ask(server: str, name: str, qtype: str, timeout: float) -> dict:
    query = dns.message.make_query(name, dns.rdatatype.from_text(qtype), want_dnssec=True)
    query.flags |= dns.flags.RD | dns.flags.AD
    resp = dns.query.udp(query, server, timeout=timeout)
    if resp.flags & dns.flags.TC:
        resp = dns.query.tcp(query, server, timeout=timeout)
    return {
        "name": name,
        "type": qtype,
        "rcode": dns.rcode.to_text(resp.rcode()),
        "ad": bool(resp.flags & dns.flags.AD),
        "ra": bool(resp.flags & dns.flags.RA),
        "answer": [line for rrset in resp.answer for line in rrset.to_text().splitlines()],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--question", action="append", required=True, help="'NAME TYPE'")
    ap.add_argument("--deadline", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    end = time.monotonic() + args.deadline
    # Ready when it answers anything (SERVFAIL included) for the first question.
    name, qtype = args.question[0].split()
    while True:
        try:
            ask(args.server, name, qtype, min(args.timeout, 1.0))
            break
        except (dns.exception.DNSException, OSError) as exc:
            if time.monotonic() >= end:
                print(f"the resolver did not answer within {args.deadline:g} s: {exc!r}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    out = []
    for question in args.question:
        name, qtype = question.split()
        try:
            out.append(ask(args.server, name, qtype, args.timeout))
        except (dns.exception.DNSException, OSError) as exc:
            out.append({"name": name, "type": qtype, "rcode": None, "ad": False, "error": repr(exc)})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
