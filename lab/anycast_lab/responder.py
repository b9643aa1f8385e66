"""A minimal authoritative responder for lab tests: answers SOA for any name with AA set and
NSID = its identity, on UDP and TCP. Bounded lifetime; used only inside lab namespaces."""

from __future__ import annotations

import argparse
import socket
import socketserver
import threading
import time

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset


def answer(wire: bytes, identity: str) -> bytes:
    query = dns.message.from_wire(wire)
    resp = dns.message.make_response(query)
    resp.flags |= dns.flags.AA
    question = query.question[0]
    resp.answer.append(dns.rrset.from_text(question.name, 3600, "IN", "SOA",
                                           f"ns.{identity}. hostmaster. 1 3600 600 86400 60"))
    if query.edns >= 0 and any(o.otype == dns.edns.NSID for o in query.options):
        resp.use_edns(0, options=[dns.edns.GenericOption(dns.edns.NSID, identity.encode())])
    return resp.to_wire()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--identity", required=True)
    ap.add_argument("--lifetime", type=float, default=60)
    args = ap.parse_args()
    family = socket.AF_INET6 if ":" in args.address else socket.AF_INET
    ident = args.identity

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            sock.sendto(answer(data, ident), self.client_address)

    class TCP(socketserver.StreamRequestHandler):
        def handle(self):
            size = int.from_bytes(self.rfile.read(2), "big")
            out = answer(self.rfile.read(size), ident)
            self.wfile.write(len(out).to_bytes(2, "big") + out)

    class UServer(socketserver.ThreadingUDPServer):
        address_family = family
        allow_reuse_address = True

    class TServer(socketserver.ThreadingTCPServer):
        address_family = family
        allow_reuse_address = True

    servers = [UServer((args.address, 53), UDP), TServer((args.address, 53), TCP)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(args.lifetime)
    for srv in servers:
        srv.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
