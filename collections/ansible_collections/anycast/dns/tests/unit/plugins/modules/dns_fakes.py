"""A DNS server on 127.0.0.1 for the modules that query (zone_serial, anycast_probe)."""

from __future__ import annotations

import socket
import threading

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset


class FakeAuthority:
    """UDP on 127.0.0.1: answers the SOA of its zones; serial/rcode/AA per zone, changeable while running."""

    def __init__(self, zones: dict[str, int]):
        self.zones = dict(zones)
        self.rcode = {z: dns.rcode.NOERROR for z in zones}
        self.authoritative = True
        self.nsid = None  # the server's name, sent back when a query asks for NSID
        self.after = None  # (queries, zone, serial): switch the serial after that many queries
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            self.queries += 1
            if self.after and self.queries > self.after[0]:
                self.zones[self.after[1]] = self.after[2]
            name = query.question[0].name.to_text().rstrip(".")
            resp = dns.message.make_response(query)
            if self.authoritative:
                resp.flags |= dns.flags.AA
            if self.nsid and any(o.otype == dns.edns.NSID for o in query.options):
                resp.use_edns(0, options=[dns.edns.GenericOption(dns.edns.NSID, self.nsid.encode())])
            if name not in self.zones:
                resp.set_rcode(dns.rcode.REFUSED)
            elif self.rcode[name] != dns.rcode.NOERROR:
                resp.set_rcode(self.rcode[name])
            else:
                resp.answer.append(dns.rrset.from_text(
                    name + ".", 300, "IN", "SOA", f"ns1.{name}. h.{name}. {self.zones[name]} 3600 600 86400 300"))
            self.sock.sendto(resp.to_wire(), peer)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def no_command(argv):  # the module runs no command
    raise AssertionError(argv)
