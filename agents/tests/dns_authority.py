"""A small DNS authority on 127.0.0.1 for the agents' tests: UDP and TCP on one port, SOA for its
zones, behaviour switchable per transport (silent, dropped datagrams, rcode, AA). A test that needs
other answers subclasses it and overrides answer()."""

from __future__ import annotations

import socket
import struct
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rrset


class Authority:
    """Answers SOA for its zones on 127.0.0.1, UDP and TCP; behaviour switchable per transport."""

    def __init__(self, zones):
        self.zones = set(zones)
        self.rcode = dns.rcode.NOERROR
        self.aa = True
        self.silent = {"udp": False, "tcp": False}
        # UDP datagrams still to drop, per zone asked (a flood overflowing the socket).
        self.udp_drops: dict[str, int] = {}
        self.udp_seen: dict[str, int] = {}
        self.udp, self.tcp, self.port = self._bind()
        self.tcp.listen(16)
        for sock in (self.udp, self.tcp):
            sock.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._serve_udp, self._serve_tcp)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _bind(attempts: int = 20):
        """A UDP and a TCP socket on one free port of 127.0.0.1 (a port free for UDP may be
        taken for TCP: try another)."""
        for _ in range(attempts):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            return udp, tcp, port
        raise OSError(f"no port free for both UDP and TCP on 127.0.0.1 after {attempts} tries")

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        resp = dns.message.make_response(query)
        if self.aa:
            resp.flags |= dns.flags.AA
        name = query.question[0].name.to_text().rstrip(".")
        if self.rcode != dns.rcode.NOERROR or name not in self.zones:
            resp.set_rcode(self.rcode if name in self.zones else dns.rcode.REFUSED)
        else:
            resp.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "SOA", f"ns1.{name}. h.{name}. 1 2 3 4 5"))
        return resp.to_wire()

    def _serve_udp(self):
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            name = dns.message.from_wire(data).question[0].name.to_text().rstrip(".")
            self.udp_seen[name] = self.udp_seen.get(name, 0) + 1
            if self.udp_drops.get(name, 0) > 0:
                self.udp_drops[name] -= 1
                continue
            if not self.silent["udp"]:
                self.udp.sendto(self.answer(data), peer)

    def _serve_tcp(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    data = conn.recv(size)
                    if not self.silent["tcp"]:
                        out = self.answer(data)
                        conn.sendall(struct.pack("!H", len(out)) + out)
                    else:
                        self.stop.wait(1)
                except (OSError, struct.error):
                    pass

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()
