"""The probe worker's UDP exchange (lab/anycast_lab/probe_worker.py) against a server on loopback:
an answer is judged by when the kernel received it, not by when the worker got to read it."""

from __future__ import annotations

import select
import socket
import threading
import time

import dns.exception
import dns.message
import pytest

from anycast_lab import probe_worker


class Server:
    """A UDP DNS server on 127.0.0.1 that answers each query after DELAY seconds, optionally first
    sending a datagram that is not the answer (garbage, then an answer with another ID)."""

    def __init__(self, delay: float = 0.0, strays: bool = False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.delay, self.strays = delay, strays
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        data, peer = self.sock.recvfrom(65535)
        query = dns.message.from_wire(data)
        time.sleep(self.delay)
        if self.strays:
            self.sock.sendto(b"\x00garbage", peer)
            other = dns.message.make_response(query)
            other.id = (query.id + 1) % 65536
            self.sock.sendto(other.to_wire(), peer)
        self.sock.sendto(dns.message.make_response(query).to_wire(), peer)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def to_port(monkeypatch):
    """udp_exchange sends to port 53; point its socket at the test server's port instead."""
    servers = []

    def make(**kwargs) -> Server:
        server = Server(**kwargs)
        servers.append(server)
        real_connect = socket.socket.connect

        def connect(sock, address):
            return real_connect(sock, (address[0], server.port))
        monkeypatch.setattr(socket.socket, "connect", connect)
        return server
    yield make
    for server in servers:
        server.close()


def query() -> dns.message.Message:
    return dns.message.make_query("example.com.", "SOA")


def test_an_answer_in_time_returns_its_round_trip(to_port):
    to_port(delay=0.05)
    resp, seconds = probe_worker.udp_exchange(q := query(), "127.0.0.1", timeout=0.5)
    assert q.is_response(resp)
    assert 0.05 <= seconds < 0.5


def test_no_answer_within_the_timeout_is_a_timeout(to_port):
    to_port(delay=0.4)
    with pytest.raises(dns.exception.Timeout):
        probe_worker.udp_exchange(query(), "127.0.0.1", timeout=0.2)


def test_an_answer_that_arrived_in_time_counts_even_when_the_worker_reads_it_late(to_port, monkeypatch):
    # The worker kept off the CPU for 1.5 s after sending (a loaded host): the answer, sent back at
    # once, waits in the socket. Its kernel arrival stamp says it came within the 1 s timeout.
    to_port(delay=0.0)
    real_select = select.select
    calls = []

    def starved(r, w, x, timeout):
        if not calls:
            time.sleep(1.5)
        calls.append(timeout)
        return real_select(r, w, x, 0)
    monkeypatch.setattr(probe_worker.select, "select", starved)
    resp, seconds = probe_worker.udp_exchange(query(), "127.0.0.1", timeout=1.0)
    assert seconds < 1.0 and resp.rcode() == 0


def test_a_late_answer_read_late_is_still_a_timeout(to_port, monkeypatch):
    to_port(delay=0.3)
    real_select = select.select

    def starved(r, w, x, timeout):
        time.sleep(0.6)  # the worker wakes after the answer arrived, but it arrived after 0.2 s
        return real_select(r, w, x, 0)
    monkeypatch.setattr(probe_worker.select, "select", starved)
    with pytest.raises(dns.exception.Timeout):
        probe_worker.udp_exchange(query(), "127.0.0.1", timeout=0.2)


def test_datagrams_that_are_not_the_answer_are_skipped(to_port):
    to_port(delay=0.0, strays=True)
    q = query()
    resp, _ = probe_worker.udp_exchange(q, "127.0.0.1", timeout=0.5)
    assert resp.id == q.id


def test_the_round_trip_starts_at_the_kernels_send_stamp_not_at_the_clock_read_before_it(to_port, monkeypatch):
    # The worker read the clock, then was kept off the CPU for 1 s before send() (a loaded host): the
    # answer, sent back at once, came within the timeout of the query leaving, which is what counts.
    to_port(delay=0.0)
    real_time = time.time
    reads = []

    def clock() -> float:
        reads.append(1)
        return real_time() - (1.0 if len(reads) == 1 else 0.0)  # the first read: 1 s before send()
    monkeypatch.setattr(probe_worker.time, "time", clock)
    resp, seconds = probe_worker.udp_exchange(query(), "127.0.0.1", timeout=0.5)
    assert resp.rcode() == 0 and 0 <= seconds < 0.5


def test_without_send_stamps_the_clock_read_before_send_stands_in(to_port, monkeypatch):
    to_port(delay=0.0)
    monkeypatch.setattr(probe_worker, "_kernel_stamps", lambda sock: [])
    real_time = time.time
    reads = []

    def clock() -> float:
        reads.append(1)
        return real_time() - (1.0 if len(reads) == 1 else 0.0)
    monkeypatch.setattr(probe_worker.time, "time", clock)
    with pytest.raises(dns.exception.Timeout):
        probe_worker.udp_exchange(query(), "127.0.0.1", timeout=0.5)


def test_with_a_grace_a_late_answer_says_how_late_it_came_and_is_still_a_timeout(to_port):
    to_port(delay=0.4)
    with pytest.raises(probe_worker.LateAnswer) as late:
        probe_worker.udp_exchange(q := query(), "127.0.0.1", timeout=0.2, grace=1.0)
    assert isinstance(late.value, dns.exception.Timeout)
    assert 0.4 <= late.value.seconds < 1.2 and q.is_response(late.value.response)


def test_with_a_grace_silence_is_a_plain_timeout_after_timeout_and_grace(to_port):
    to_port(delay=1.0)
    start = time.monotonic()
    with pytest.raises(dns.exception.Timeout) as exc:
        probe_worker.udp_exchange(query(), "127.0.0.1", timeout=0.2, grace=0.3)
    assert not isinstance(exc.value, probe_worker.LateAnswer)
    assert 0.5 <= time.monotonic() - start < 0.9


def test_a_late_answer_is_recorded_as_a_timeout_with_how_late_and_who(to_port, monkeypatch):
    to_port(delay=0.3)
    monkeypatch.setattr(probe_worker, "_nsid", lambda resp: "fra1")
    rec = probe_worker.one_query("127.0.0.1", "example.com.", 0.1, False, grace=1.0)
    assert rec["error"] == "Timeout" and rec["rcode"] is None and rec["nsid"] is None
    assert rec["late_nsid"] == "fra1" and 300 <= rec["late_ms"] < 1100
    assert rec["late_rcode"] == "NOERROR" and rec["late_aa"] is False
