"""anycast-health (anycast_agents.health): the DNS check against a small authority on 127.0.0.1
(UDP and TCP), the decision per family (fall, rise, damping, drain), and the daemon end to end
with its files for keepalived and Prometheus."""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from dns_authority import Authority
from prometheus_client.parser import text_string_to_metric_families

from anycast_agents.health.check import UDP_READ_MIN, UDP_RESEND, ask_all, flooded, judge, problems, udp_counters
from anycast_agents.health.cli import load_config, main
from anycast_agents.health.daemon import Daemon
from anycast_agents.health.family import Family
from anycast_agents.health.files import read_drain
from anycast_agents.health.frr import DRAIN_MARK, Frr
from anycast_agents.health.metrics import prom_text
from anycast_agents.health.traffic import DrainTimer


@pytest.fixture
def authority():
    server = Authority(["example.com", "example.net"])
    yield server
    server.close()


def config_for(tmp_path, authority, **overrides):
    config = {"zones": ["example.com", "example.net"], "addresses": {"4": ["127.0.0.1"], "6": []},
              "aggregates": {"4": ["203.0.113.0/24"], "6": []}, "interval": 0.1, "timeout": 0.5,
              "fall": 2, "rise": 3, "port": authority.port if authority else 53,
              "run_dir": str(tmp_path / "run"), "state_dir": str(tmp_path / "state"),
              "textfile": str(tmp_path / "anycast_health.prom"),
              "damping": {"hold": 10, "max_hold": 40, "reset": 60}, "drain_wait": 5,
              # Never an nftables table in the host running the tests.
              "nft": "",
              # No FRR here: the daemon finds no bgpd and leaves graceful-shutdown alone.
              "frr": {"vtysh": "/nonexistent/vtysh", "config": str(tmp_path / "frr.conf"),
                      "bgpd_pid": str(tmp_path / "bgpd.pid")}}
    config.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def run_check(tmp_path, authority, family="4", **overrides):
    return main(["--config", str(config_for(tmp_path, authority, **overrides)), "check", family])


# --- the DNS check --------------------------------------------------------------------------


def test_passes_when_every_zone_answers_authoritatively_over_udp_and_tcp(tmp_path, authority, capsys):
    assert run_check(tmp_path, authority) == 0
    assert capsys.readouterr().out == "IPv4: OK\n"


@pytest.mark.parametrize("breakage,message", [
    ("servfail", "example.com udp: answered SERVFAIL"),
    ("not_aa", "answer not authoritative"),
    ("udp_silent", "udp: no answer in time"),
    ("tcp_silent", "tcp: no answer in time"),
    ("unknown_zone", "example.org udp: answered REFUSED"),
])
def test_fails_and_says_why(tmp_path, authority, capsys, breakage, message):
    extra = {}
    if breakage == "servfail":
        authority.rcode = dns.rcode.SERVFAIL
    elif breakage == "not_aa":
        authority.aa = False
    elif breakage == "udp_silent":
        authority.silent["udp"] = True
    elif breakage == "tcp_silent":
        authority.silent["tcp"] = True
    else:
        extra = {"zones": ["example.com", "example.org"]}
    assert run_check(tmp_path, authority, timeout=0.3, **extra) == 1
    out = capsys.readouterr()
    assert message in out.err
    assert "IPv4: FAIL" in out.out


def test_a_hung_server_fails_every_query_and_names_each(tmp_path, authority, capsys):
    authority.silent = {"udp": True, "tcp": True}
    assert run_check(tmp_path, authority, timeout=0.3) == 1
    err = capsys.readouterr().err
    for zone in ("example.com", "example.net"):
        for proto in ("udp", "tcp"):
            assert f"127.0.0.1 {zone} {proto}: no answer in time" in err


def test_a_lost_udp_query_is_sent_again_within_the_timeout_and_passes(tmp_path, authority, capsys):
    """A flood that overflows Knot's UDP socket drops the check's datagrams too: one or two lost
    sends of a query are not a dead Knot. Sends every UDP_RESEND (0.03 s) within the timeout (0.5 s
    here, not the lab's 0.15 s: the answer to the third send must not depend on this host's load;
    without the resends no answer would come at all)."""
    authority.udp_drops = {"example.com": 1, "example.net": 2}
    assert run_check(tmp_path, authority, timeout=0.5) == 0, capsys.readouterr().err
    assert authority.udp_seen == {"example.com": 2, "example.net": 3}
    authority.udp_drops = {"example.com": 20, "example.net": 20}
    assert run_check(tmp_path, authority, timeout=0.15) == 1
    assert "127.0.0.1 example.net udp: no answer in time" in capsys.readouterr().err
    time.sleep(0.1)  # the last send may still be on its way to the server's thread
    most = math.ceil(0.15 / UDP_RESEND)
    assert 2 <= authority.udp_seen["example.net"] - 3 <= most, "sent again, every UDP_RESEND within the timeout"


def test_silence_fails_only_when_the_whole_transport_is_silent():
    """Busy (a flood): some UDP queries unanswered, others answered: forgiven, but named by judge().
    Dead: every query of one transport unanswered fails, whatever the other transport does. A wrong
    answer fails beside any silence."""
    jobs = [("192.0.2.1", "a.example", False), ("192.0.2.1", "b.example", False),
            ("192.0.2.1", "a.example", True), ("192.0.2.1", "b.example", True)]
    silent = "no answer in time"
    assert problems(jobs, [None, silent, None, None]) == []
    assert judge(jobs, [None, silent, None, None])[1] == ["192.0.2.1 b.example udp: no answer in time"]
    assert problems(jobs, [silent, "no time left", None, None]) == [
        "192.0.2.1 a.example udp: no answer in time", "192.0.2.1 b.example udp: no time left"]
    assert judge(jobs, [silent, silent, None, None])[1] == []
    assert problems(jobs, [None, None, silent, silent]) == [
        "192.0.2.1 a.example tcp: no answer in time", "192.0.2.1 b.example tcp: no answer in time"]
    assert problems(jobs, [None, "answered SERVFAIL", silent, None]) == ["192.0.2.1 b.example udp: answered SERVFAIL"]


def test_udp_silent_while_the_kernel_drops_for_full_sockets_and_tcp_answers_is_busy_not_dead():
    """A flood overflows Knot's UDP sockets: all of a check's datagrams may be dropped (seen on the
    lab: 1 flood in 5 withdrew fra1 with "udp: no answer in time" for both zones, TCP answering).
    Flooded (flooded(): buffer drops while the sockets are read) and TCP answering right, that
    silence is forgiven; not flooded, or with TCP silent too (a hung Knot), it fails as before."""
    jobs = [("192.0.2.1", "a.example", False), ("192.0.2.1", "b.example", False),
            ("192.0.2.1", "a.example", True), ("192.0.2.1", "b.example", True)]
    silent = "no answer in time"
    udp_silent = [silent, silent, None, None]
    assert problems(jobs, udp_silent) == ["192.0.2.1 a.example udp: no answer in time",
                                          "192.0.2.1 b.example udp: no answer in time"]
    assert judge(jobs, udp_silent, udp_overflowing=True) == (
        [], ["192.0.2.1 a.example udp: no answer in time", "192.0.2.1 b.example udp: no answer in time"])
    assert len(problems(jobs, [silent] * 4, udp_overflowing=True)) == 4  # hung: TCP silent too
    assert problems(jobs, [silent, silent, None, "answered SERVFAIL"], udp_overflowing=True) == [
        "192.0.2.1 b.example tcp: answered SERVFAIL"]
    assert problems(jobs, ["answered REFUSED", silent, None, None], udp_overflowing=True) == [
        "192.0.2.1 a.example udp: answered REFUSED"]


def test_a_flood_is_buffer_drops_while_the_sockets_are_read_per_family(tmp_path):
    """flooded(): the kernel dropped UDP datagrams for full buffers (RcvbufErrors) while the node's
    sockets were read (InDatagrams, counted as they are read): Knot's UDP side busy. Drops while
    nothing reads (a stuck UDP side with traffic queuing up) are not a flood."""
    snmp, snmp6 = tmp_path / "snmp", tmp_path / "snmp6"
    snmp.write_text("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
                    "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
                    "Udp: 1000 3 7 990 42 0\nUdpLite: InDatagrams\nUdpLite: 0\n")
    snmp6.write_text("Udp6InDatagrams                 \t500\nUdp6RcvbufErrors                \t17\n"
                     "Udp6IgnoredMulti                \t0\n")
    assert udp_counters("4", str(snmp), str(snmp6)) == (1000, 42)
    assert udp_counters("6", str(snmp), str(snmp6)) == (500, 17)
    assert udp_counters("6", str(snmp), str(tmp_path / "missing")) is None
    assert flooded((1000, 42), (1000 + UDP_READ_MIN, 43))
    assert not flooded((1000, 42), (1003, 900))  # dropped, but nothing read them: stuck, not busy
    assert not flooded((1000, 42), (90000, 42))  # read a lot, nothing dropped: the silence is not the flood's
    assert not flooded(None, (2000, 50)) and not flooded((1000, 42), None)
    assert udp_counters("4") is not None  # this host's own counters


def test_a_closed_udp_port_fails_at_once_not_at_the_timeout(tmp_path, capsys):
    """Nothing listening on the address (Knot gone from it): the ICMP port unreachable is the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run_check(tmp_path, None, port=port, timeout=5) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1 example.com udp: query failed" in err and "no answer in time" not in err, err


def test_a_closed_tcp_port_fails_at_once_and_the_other_queries_of_the_check_still_answer(authority):
    """Every query of a check goes out at once from one thread (check.ask_all): a refused TCP
    connection fails its own query at once, the others of the same check are answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    started = time.monotonic()
    assert ask_all([("127.0.0.1", "example.com", True)], closed, started + 5) == [
        "query failed: [Errno 111] Connection refused"]
    jobs = [("127.0.0.1", zone, tcp) for zone in ("example.com", "example.net", "example.org") for tcp in (False, True)]
    results = ask_all(jobs, authority.port, time.monotonic() + 5)
    assert time.monotonic() - started < 2
    assert results == [None, None, None, None, "answered REFUSED", "answered REFUSED"]


def test_an_answer_seen_before_is_judged_without_parsing_and_a_changed_one_is_parsed(authority, monkeypatch):
    """The check parses an answer only when its bytes (but the ID) are new: round after round the
    same answer costs no parse, a changed one (SERVFAIL) is parsed and judged again, and the
    earlier answer, once back, is judged as before. Every query has an ID of its own."""
    from anycast_agents.health import check  # noqa: PLC0415

    monkeypatch.setattr(check, "_VERDICTS", {})
    parsed, real_from_wire = [], dns.message.from_wire

    def counting(wire, *args, **kwargs):
        msg = real_from_wire(wire, *args, **kwargs)
        if threading.current_thread() is threading.main_thread():  # the check's, not the authority's
            parsed.append(msg.id)
        return msg

    monkeypatch.setattr(check.dns.message, "from_wire", counting)
    jobs = [("127.0.0.1", "example.com", tcp) for tcp in (False, True)]

    def rounds(count):
        parsed.clear()
        results = [ask_all(jobs, authority.port, time.monotonic() + 5) for _ in range(count)]
        return results, len(parsed)

    # The first answer and its query parsed; the other transport's answer is the same bytes.
    assert rounds(1) == ([[None, None]], 2)
    assert rounds(5) == ([[None, None]] * 5, 0)
    authority.rcode = dns.rcode.SERVFAIL
    assert rounds(3) == ([["answered SERVFAIL"] * 2] * 3, 2)
    authority.rcode = dns.rcode.NOERROR
    assert rounds(2) == ([[None, None]] * 2, 0)
    queries = [check._Query("127.0.0.1", "example.com", False, authority.port) for _ in range(20)]
    for q in queries:
        q.sock.close()
    assert len({q.wire[:2] for q in queries}) > 15  # a random ID each, not one reused
    assert {q.wire[2:] for q in queries} == {queries[0].template[2:]}


def test_a_family_without_addresses_fails_and_a_bad_config_is_exit_2(tmp_path, authority, capsys):
    assert run_check(tmp_path, authority, family="6") == 1
    assert "nothing to check for IPv6" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.json"), "check"]) == 2
    (tmp_path / "partial.json").write_text(json.dumps({"zones": ["example.com"]}))
    assert main(["--config", str(tmp_path / "partial.json"), "status"]) == 2
    assert "cannot use" in capsys.readouterr().err


# --- the decision per family ----------------------------------------------------------------

CFG = {"fall": 2, "rise": 3, "damping": {"hold": 10, "max_hold": 40, "reset": 60}}


def feed(fam, now, ok, drained=False):
    fam.result(now, [] if ok else ["127.0.0.1 example.com udp: answered SERVFAIL"], now)
    return fam.decide(now, drained)


def test_withdrawn_at_start_until_rise_good_checks_then_withdrawn_after_fall_bad_ones():
    fam = Family("ipv4", CFG, announced=False, now=0)
    assert [feed(fam, t, True) for t in (1, 2)] == [None, None]
    assert feed(fam, 3, True) == (True, "3 good checks in a row")
    assert feed(fam, 4, False) is None  # one bad check is not enough (fall 2)
    assert feed(fam, 5, True) is None
    assert feed(fam, 6, False) is None
    change = feed(fam, 7, False)
    assert change[0] is False and "answered SERVFAIL" in change[1]
    assert fam.withdraw_started == 6  # detection: the first failed check of the streak
    assert (fam.transitions, fam.failures) == (2, 1)


def test_a_restarted_daemon_keeps_an_announcement_it_finds():
    fam = Family("ipv4", CFG, announced=True, now=0)
    assert feed(fam, 1, True) is None and fam.announced


def test_a_knot_crash_withdraws_without_waiting_for_fall():
    fam = Family("ipv4", CFG, announced=True, now=0)
    fam.fail_now(5.0, ["knot.service stopped"], detected=4.98)
    assert fam.decide(5.0, False) == (False, "knot.service stopped")
    assert fam.withdraw_started == 4.98
    # Back only after `rise` good checks.
    assert [feed(fam, t, True) for t in (6, 7)] == [None, None]
    assert feed(fam, 8, True)[0] is True


def flap(fam, at):
    """A crash at AT, then good checks every second until the family is announced; when."""
    fam.fail_now(at, ["knot.service stopped"], at)
    fam.decide(at, False)
    t = at
    while not fam.announced:
        t += 1
        feed(fam, t, True)
    return t


def test_damping_holds_a_flapping_family_down_longer_each_time_and_forgets_after_reset():
    fam = Family("ipv4", CFG, announced=True, now=0)
    assert flap(fam, 100) == 103           # first failure: back after rise (3 checks)
    assert flap(fam, 105) == 115           # second within reset: held 10 s
    assert flap(fam, 116) == 136           # third: 20 s
    assert flap(fam, 137) == 177           # fourth: 40 s (max_hold)
    assert flap(fam, 178) == 218           # fifth: still 40 s, the maximum
    assert flap(fam, 218 + 61) == 218 + 61 + 3  # quiet for longer than reset: forgiven


def test_a_drained_family_is_withdrawn_whatever_its_health_and_comes_back_after_undrain():
    fam = Family("ipv4", CFG, announced=True, now=0)
    drain = {"since": 10, "wait": 5}
    assert fam.state(12, drain, False) == "draining"
    assert feed(fam, 12, True, drained=False) is None
    assert feed(fam, 15, True, drained=True) == (False, "drained")
    assert fam.state(15, drain, True) == "drained"
    assert fam.withdraw_started is None  # a drain is not a failure
    assert fam.failures == 0
    assert feed(fam, 16, True, drained=False) == (True, "more than 3 good checks in a row")


def test_a_healthy_familys_reason_stays_the_same_from_one_check_to_the_next():
    """The count of good checks is given up to `rise`: beyond it the reason (and state.json, written
    only when the state changes) would change with every check."""
    fam = Family("ipv4", CFG, announced=False, now=0)
    reasons = []
    for t in range(1, 10):
        feed(fam, t, True)
        reasons.append(fam.reason)
    assert reasons[2] == "3 good checks in a row" and fam.announced
    assert set(reasons[3:]) == {"more than 3 good checks in a row"}
    feed(fam, 10, False)  # one failure (fall 2) starts the count again
    assert [feed(fam, t, True) or fam.reason for t in (11, 12)] == ["1 good check in a row", "2 good checks in a row"]


class FakeTraffic:
    """Traffic with a given query rate over time: rate_at(t) queries per second."""

    def __init__(self, rate_at):
        self.rate_at = rate_at

    def rate(self, start, end):
        return self.rate_at(end)


def drain_timeline(rate_at, since=100.0, wait=10.0, cfg=None):
    """Seconds after SINCE at which the drain withdraws, and its report."""
    timer = DrainTimer(cfg or {"drain_min_wait": 2, "drain_residual": 0.05})
    traffic, drain = FakeTraffic(rate_at), {"since": since, "wait": wait}
    t = since
    while not timer.done(t, drain, traffic):
        t = round(t + 0.25, 2)
        assert t <= since + wait + 1, "the drain never ended"
    return t - since, timer.report()


def test_a_drain_withdraws_as_soon_as_the_traffic_has_moved_but_not_before_the_minimum_wait():
    # 200 q/s before the drain; the upstream moves it 3.5 s after the drain started.
    after, report = drain_timeline(lambda t: 200.0 if t < 103.5 else 4.0)
    assert after == 3.5
    assert report["rate_before"] == 200.0 and report["rate_after"] == 4.0
    assert "traffic moved" in report["why"]
    # Moved at once (or an idle node): still the minimum wait, for GRACEFUL_SHUTDOWN to go out.
    assert drain_timeline(lambda t: 200.0 if t <= 100 else 0.0)[0] == 2.0
    assert drain_timeline(lambda t: 0.5)[0] == 2.0


def test_a_drain_whose_traffic_stays_waits_its_full_time():
    after, report = drain_timeline(lambda t: 200.0 if t <= 100 else 30.0)  # 15 % stay: not moved
    assert after == 10.0
    assert report["why"] == "the drain's wait is over"
    # Traffic unknown (no nft, or the daemon started during the drain): the full wait as well.
    assert drain_timeline(lambda t: None)[0] == 10.0
    # A wait shorter than the minimum wins.
    assert drain_timeline(lambda t: 0.0, wait=1.0)[0] == 1.0


def test_a_drain_decision_is_kept_until_undrain_and_made_again_for_a_new_drain():
    timer = DrainTimer({"drain_min_wait": 2, "drain_residual": 0.05})
    quiet = FakeTraffic(lambda t: 0.0)
    assert timer.done(103, {"since": 100, "wait": 10}, quiet)
    assert timer.done(200, {"since": 100, "wait": 10}, FakeTraffic(lambda t: 500.0))  # sticky
    assert not timer.done(201, None, quiet) and timer.report() is None
    assert not timer.done(300.5, {"since": 300, "wait": 10}, quiet)  # a new drain: min wait again


def test_an_unreadable_drain_flag_counts_as_drained(tmp_path):
    assert read_drain(str(tmp_path)) is None
    (tmp_path / "drain").write_text("garbage")
    assert read_drain(str(tmp_path)) == {"since": 0.0, "wait": 0.0}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from Prometheus's text format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_text_has_state_transitions_and_withdrawal_time():
    fam = Family("ipv4", CFG, announced=True, now=0)
    fam.fail_now(5.0, ["knot.service stopped"], detected=5.0)
    fam.decide(5.0, False)
    fam.withdraw_seconds = 0.021
    text = prom_text({"4": fam}, None, 6.0)
    got = samples(text)
    v4 = (("family", "ipv4"),)
    assert got[("anycast_health_announced", v4)] == 0
    assert got[("anycast_health_state", (("family", "ipv4"), ("state", "withdrawn")))] == 1
    assert got[("anycast_health_state", (("family", "ipv4"), ("state", "announced")))] == 0
    assert got[("anycast_health_transitions_total", v4)] == 1
    assert got[("anycast_health_last_transition_timestamp_seconds", v4)] == 5.0
    assert got[("anycast_health_withdraw_seconds", v4)] == 0.021
    assert got[("anycast_health_drained", ())] == 0
    assert "# TYPE anycast_health_transitions_total counter" in text
    assert got[("anycast_health_updated_timestamp_seconds", ())] == 6.0
    # Without nftables counters the daemon does not invent a traffic figure.
    assert "external_queries_total" not in text
    assert samples(prom_text({"4": fam}, None, 6.0, queries=1234))[("anycast_health_external_queries_total", ())] \
        == 1234


# --- the daemon end to end ------------------------------------------------------------------


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def daemon(tmp_path, authority):
    config = load_config(str(config_for(tmp_path, authority, interval=0.3, timeout=0.25,
                                           damping={"hold": 30, "max_hold": 60, "reset": 60})))
    d = Daemon(config)
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    yield d, tmp_path / "run", tmp_path
    d.stop = True
    thread.join(5)


def ipv4_state(run_dir) -> dict:
    return json.loads((run_dir / "state.json").read_text())["families"]["ipv4"]


def flag(run_dir, name="ipv4"):
    path = run_dir / name
    return path.read_text().strip() if path.exists() else None


def test_daemon_tells_keepalived_announce_withdraw_and_knot_crash(daemon, authority):
    d, run_dir, tmp_path = daemon
    assert flag(run_dir) == "1"  # at start: withdrawn until the checks rise
    assert wait_until(lambda: flag(run_dir) == "0")
    assert (run_dir / "heartbeat").exists()
    assert "ipv6" not in json.loads((run_dir / "state.json").read_text())["families"]

    authority.rcode = dns.rcode.SERVFAIL
    assert wait_until(lambda: flag(run_dir) == "1")
    # keepalived is told first; the state file follows within the same tick.
    assert wait_until(lambda: ipv4_state(run_dir)["state"] == "withdrawn")
    assert "answered SERVFAIL" in ipv4_state(run_dir)["reason"]

    authority.rcode = dns.rcode.NOERROR
    assert wait_until(lambda: flag(run_dir) == "0")  # first failure: back after rise
    authority.rcode = dns.rcode.SERVFAIL
    assert wait_until(lambda: flag(run_dir) == "1")
    authority.rcode = dns.rcode.NOERROR
    # Second failure within reset: damping holds it down (hold 30 s), healthy but not announced.
    assert wait_until(lambda: ipv4_state(run_dir)["state"] == "damped")
    assert flag(run_dir) == "1"
    prom = (tmp_path / "anycast_health.prom").read_text()
    assert 'anycast_health_state{family="ipv4",state="damped"} 1' in prom
    assert 'anycast_health_failures_total{family="ipv4"} 2' in prom
    assert 'anycast_health_transitions_total{family="ipv4"} 4' in prom

    # Nothing changes any more, yet the file is rewritten about every second (TEXTFILE_EVERY):
    # a stale timestamp is how Prometheus tells a stopped daemon from a quiet one.
    def stamp():
        text = (tmp_path / "anycast_health.prom").read_text()
        line = next(x for x in text.splitlines() if x.startswith("anycast_health_updated_timestamp_seconds "))
        return float(line.split()[1])
    first = stamp()
    assert wait_until(lambda: stamp() >= first + 0.5, timeout=5)


def test_a_steady_daemon_rewrites_neither_file_at_every_check(tmp_path, authority):
    """Checks every 0.1 s, all passing: once the family is announced and past `rise`, state.json is
    not written again (nothing in it changed) and the textfile only about once a second."""
    d = Daemon(load_config(str(config_for(tmp_path, authority, interval=0.1, timeout=0.08))))
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    try:
        run_dir, textfile = tmp_path / "run", tmp_path / "anycast_health.prom"
        assert wait_until(lambda: flag(run_dir) == "0")
        assert wait_until(lambda: ipv4_state(run_dir)["reason"] == "more than 3 good checks in a row")
        inodes = {"state": set(), "textfile": set()}
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # each write replaces the file: another inode and mtime
            for name, path in (("state", run_dir / "state.json"), ("textfile", textfile)):
                st = path.stat()
                inodes[name].add((st.st_ino, st.st_mtime_ns))
            time.sleep(0.01)
        assert len(inodes["state"]) == 1, inodes
        assert 2 <= len(inodes["textfile"]) <= 4, inodes  # 25 checks; 3 refreshes at one a second
    finally:
        d.stop = True
        thread.join(5)


def test_daemon_counts_a_knot_crash_and_clears_the_crash_flag(daemon):
    d, run_dir, _ = daemon
    assert wait_until(lambda: flag(run_dir) == "0")
    (run_dir / "knot-down").write_text("1\n")
    assert wait_until(lambda: flag(run_dir, "knot-down") == "0")
    assert flag(run_dir) == "1"  # withdrawn before the crash flag is cleared
    state = ipv4_state(run_dir)
    assert state["failures"] == 1 and state["reason"] == "knot.service stopped"


def test_drain_and_undrain_from_the_command_line(daemon, capsys):
    d, run_dir, tmp_path = daemon
    config = str(tmp_path / "config.json")
    assert wait_until(lambda: flag(run_dir) == "0")
    assert main(["--config", config, "drain", "--wait", "0.5"]) == 0
    assert flag(run_dir) == "1"
    out = capsys.readouterr().out
    assert "at the latest in 0.5 s" in out and "ipv4: drained" in out
    flag_file = json.loads((tmp_path / "state" / "drain").read_text())
    assert flag_file["wait"] == 0.5
    assert flag_file["withdrawn_at"] >= flag_file["since"] and flag_file["why"] == "the drain's wait is over"
    assert main(["--config", config, "drain", "--no-block"]) == 0
    assert "drain already set" in capsys.readouterr().out
    assert main(["--config", config, "undrain"]) == 0
    assert flag(run_dir) == "0"
    assert "ipv4: announced" in capsys.readouterr().out
    assert not (tmp_path / "state" / "drain").exists()
    assert main(["--config", config, "drain", "--wait", "-1"]) == 2


def test_a_restarted_daemon_keeps_a_drained_node_withdrawn_however_long_the_drain_wait(tmp_path, authority):
    """The withdrawal is noted in the drain flag: a daemon restarted in the middle of a long drain
    (the role restarts it while rolling.yml applies a change) does not announce again."""
    config = load_config(str(config_for(tmp_path, authority, interval=0.1, timeout=0.08)))
    (tmp_path / "state").mkdir()
    now = time.time()
    (tmp_path / "state" / "drain").write_text(json.dumps(
        {"since": now - 3, "wait": 600, "withdrawn_at": now - 1, "why": "traffic moved: 40.0 q/s before",
         "rate_before": 40.0, "rate_after": 0.0}))
    d = Daemon(config)
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    try:
        assert wait_until((tmp_path / "run" / "state.json").exists)
        time.sleep(1.5)  # 15 good checks: rise is 3
        assert flag(tmp_path / "run") == "1"
        state = ipv4_state(tmp_path / "run")
        assert state["state"] == "drained" and state["healthy"], state
        assert json.loads((tmp_path / "run" / "state.json").read_text())["drain"]["why"].startswith("traffic moved")
    finally:
        d.stop = True
        thread.join(5)


@pytest.mark.parametrize("conf,wants", [
    ("router bgp 65053\n bgp router-id 1.1.1.1\nexit\n", False),
    ("router bgp 65053\n bgp graceful-shutdown\nexit\n", True),            # the inventory asks for it
    (DRAIN_MARK + "; graceful-shutdown follows the drain flag\nrouter bgp 65053\n bgp graceful-shutdown\n",
     False),                                                                 # rendered for a drain only
])
def test_undrain_keeps_graceful_shutdown_only_when_the_inventory_asks(tmp_path, conf, wants):
    (tmp_path / "frr.conf").write_text(conf)
    frr = Frr({"config": str(tmp_path / "frr.conf")}, print)
    assert frr._asn_and_file_wants() == ("65053", wants)


def test_a_frr_conf_it_cannot_read_or_a_failing_vtysh_is_logged_once(tmp_path):
    """Seen on Debian 13 under the sandbox: /etc/frr is 0700, the daemon could not read frr.conf, and
    a drain never reached FRR without a word in the log."""
    (tmp_path / "bgpd.pid").write_text("4242\n")
    vtysh = tmp_path / "vtysh"
    vtysh.write_text("#!/bin/sh\necho '% Permission denied' >&2\nexit 1\n")
    vtysh.chmod(0o755)
    said: list[str] = []
    frr = Frr({"config": str(tmp_path / "missing" / "frr.conf"), "bgpd_pid": str(tmp_path / "bgpd.pid"),
               "vtysh": str(vtysh)}, said.append)
    for now in (0.0, 11.0, 22.0):
        frr.reconcile(True, now)
    assert len(said) == 1 and said[0].startswith(f"frr: cannot read {tmp_path}/missing/frr.conf"), said
    assert "a drain cannot reach FRR" in said[0]
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "frr.conf").write_text("router bgp 65053\n")
    for now in (33.0, 44.0):
        frr.reconcile(True, now)
    assert said[1:] == ["frr: vtysh 'show running-config' failed (1): % Permission denied"], said
    assert frr.applied is None
