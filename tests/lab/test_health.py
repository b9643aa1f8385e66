"""Issue 6 on the lab: anycast_health announces a node's aggregates exactly while its Knot answers.

Every fault runs with a client probing the anycast address at a steady rate (50 queries/s, one
every 20 ms) from before the fault until after it; the assertion is on what the client saw: the
longest stretch without an answer, and which PoP answered before and after. The figures are
printed ("[health] ...") for the closing note and the reports.

The server under test is fra1, the only PoP server London's client (cl-lon) reaches: when fra1
withdraws, London's queries move across the lab's Internet to another PoP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_playbook
from tests.lab.conftest import LAB, lab_cli
from tests.lab.fleet import (
    AGGREGATES,
    INVENTORY,
    SERVERS,
    SERVICE,
    established_and_bfd_up,
    graceful_shutdown_seen,
    health,
    host_vars,
    probe,
    received,
    sessions,
    sh,
    upstreams,
    vtysh_json,
    wait_for,
)

pytestmark = pytest.mark.lab

NODE, CLIENT, ROUTER = "fra1", "cl-lon", "tr-fra"
# fra1's address on its session with tr-fra, per family.
NODE_ADDR = {fam: ours for server, _, router, fam, ours in sessions() if server == NODE and router == ROUTER}
# tr-fra's address on that session, per family.
ROUTER_ADDR = {fam: next(u[f"ipv{fam}"] for u in upstreams(NODE) if u["name"] == "transit") for fam in (4, 6)}
RATE = 50
# A node's own withdrawal of a crashed Knot: from the daemon seeing the failure until the routes
# left the kernel (its metric). 6-50 ms on fra1 and gru1 on the dev lab.
NODE_WITHDRAW_S = 0.25
# The longest client outage the core faults may cause on fra1; gru1's test holds its clients to
# these plus São Paulo's path hunting (SAO_PAULO_PATH_HUNT_MS).
CORE_BUDGET_MS = {"Knot killed (SIGKILL)": 500, "Knot hung (SIGSTOP)": 1000, "node powered off": 1500}


def announced(server: str, fam: int | None = None) -> bool:
    fams = health(server).get("families", {})
    names = [f"ipv{fam}"] if fam else ["ipv4", "ipv6"]
    return bool(fams) and all(fams.get(n, {}).get("announced") for n in names)


def at_router(fam: int = 4) -> dict:
    """What tr-fra receives from fra1 (before its inbound filter)."""
    return received(ROUTER, fam, NODE_ADDR[fam])


def only_aggregates_or_nothing() -> None:
    """I4: whatever happened, fra1 sends its upstream the aggregate or nothing."""
    for fam in (4, 6):
        got = set(at_router(fam))
        assert got <= {AGGREGATES[fam]}, f"tr-fra received {got} from fra1 over IPv{fam}"


class Probe:
    """`anycast-lab probe` from a client, in the background, through a fault."""

    def __init__(self, fam: int = 4, duration: float = 10, client: str = CLIENT, qname: str = "example.com."):
        self.duration = duration
        self.stop_file = Path(tempfile.mkdtemp(prefix="anycast-probe-")) / "stop"
        env = dict(os.environ, PYTHONPATH=str(REPO / "lab"))
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [LAB, "probe", "--from", client, "--target", SERVICE[fam], "--rate", str(RATE),
             "--duration", str(duration), "--timeout", "0.5", "--qname", qname, "--json",
             "--stop-file", str(self.stop_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.started = time.monotonic()

    def stop(self) -> None:
        """End the probe before DURATION (the run's end is then when it really stopped sending)."""
        self.stop_file.touch()

    def wait_started(self, seconds: float) -> None:
        """Sleep until SECONDS into the probe: the fault comes after a steady stretch."""
        time.sleep(max(0.0, self.started + seconds - time.monotonic()))

    def result(self) -> dict:
        try:
            out, err = self.proc.communicate(timeout=self.duration + 120)
        finally:
            shutil.rmtree(self.stop_file.parent, ignore_errors=True)
        assert self.proc.returncode == 0, err
        data = json.loads(out)
        records = data["records"]
        answered = [r for r in records if r.get("nsid")]
        summary = data["summary"]
        duration = summary["duration_s"]  # shorter than asked when stopped early
        # The client's outage: the longest stretch without a good answer (authoritative NOERROR),
        # edges of the run included. A SERVFAIL is an answer, not service.
        good = [r["t_ms"] for r in records if r.get("rcode") == "NOERROR" and r.get("aa")]
        edges = [0.0, *good, duration * 1000.0]
        summary["outage_ms"] = max(b - a for a, b in zip(edges, edges[1:], strict=False))
        summary["first"] = answered[0]["nsid"] if answered else None
        summary["last"] = answered[-1]["nsid"] if answered else None
        # Who answered, in order, collapsed: fra1 -> tyo1 -> fra1 is two moves.
        seq = []
        for r in answered:
            if not seq or seq[-1] != r["nsid"]:
                seq.append(r["nsid"])
        summary["sequence"] = seq
        return summary


def through(fault: str, command: str, duration: float, undo: str | None = None) -> dict:
    """A probe from 2 s before COMMAND (on fra1) until DURATION; its summary, reported as FAULT.
    UNDO (on fra1) once the probe has ended, also when it failed."""
    p = Probe(duration=duration)
    p.wait_started(2)
    sh(NODE, command)
    try:
        s = p.result()
    finally:
        if undo:
            sh(NODE, undo)
    report(fault, s)
    return s


# Longest client outage per (node, fault), for the side-by-side table of the last test.
OUTAGES: dict[tuple[str, str], float] = {}


def report(fault: str, s: dict, node: str = NODE) -> None:
    OUTAGES[(node, fault)] = s["outage_ms"]
    print(f"\n[health] {fault}: longest client outage {s['outage_ms']:.0f} ms; sent {s['sent']}, "
          f"lost {s['lost']}, rcodes {s['rcodes']}; answered by {' -> '.join(s['sequence'])}")


@pytest.fixture
def steady(converged):
    """fra1 announced and serving London, with damping forgotten (a restarted daemon adopts what
    keepalived announces and starts its counts afresh); afterwards, fra1 serves London again."""
    sh(NODE, "systemctl restart anycast-health")
    assert wait_for(lambda: announced(NODE) and at_router(4) and at_router(6), 60, 0.5), health(NODE)
    yield
    only_aggregates_or_nothing()
    assert wait_for(lambda: announced(NODE), 90, 1), health(NODE)
    assert wait_for(lambda: at_router(4) and at_router(6), 60, 1)


def test_nothing_but_the_aggregates_and_every_server_announces_both_families(converged):
    for server in SERVERS:
        state = health(server)
        assert {f: v["state"] for f, v in state["families"].items()} == {"ipv4": "announced", "ipv6": "announced"}
        routes = sh(server, "ip -4 route show type blackhole; ip -6 route show type blackhole").stdout
        assert AGGREGATES[4] in routes and AGGREGATES[6] in routes
    assert set(at_router(4)) == {AGGREGATES[4]} and set(at_router(6)) == {AGGREGATES[6]}


def health_prom(server: str) -> str:
    """The metrics anycast-health writes for node_exporter's textfile collector on SERVER."""
    return sh(server, "cat /var/lib/prometheus/node-exporter/anycast_health.prom").stdout


def withdraw_seconds(prom: str) -> float:
    """From health_prom's text: the last withdrawal of IPv4, seconds from the failure's detection
    until the routes left the kernel (the daemon's own metric)."""
    return float(re.search(r'anycast_health_withdraw_seconds\{family="ipv4"\} (\S+)', prom).group(1))


def test_knot_killed_withdraws_at_once(steady):
    s = through("Knot killed (SIGKILL)", "pkill -KILL -x knotd", duration=6)
    assert s["first"] == NODE and s["sequence"][1] != NODE, s["sequence"]
    assert s["outage_ms"] <= CORE_BUDGET_MS["Knot killed (SIGKILL)"], s
    # The node itself saw the routes leave the kernel within milliseconds of the crash.
    prom = health_prom(NODE)
    withdraw = withdraw_seconds(prom)
    print(f"[health] Knot killed: routes out of fra1's kernel {withdraw * 1000:.0f} ms after the crash")
    assert withdraw <= NODE_WITHDRAW_S, health(NODE)
    assert re.search(r'anycast_health_failures_total\{family="ipv4"\} 1(\.0)?$', prom, re.M), prom


def test_knot_hung_withdraws_within_the_check_budget(steady):
    p = Probe(duration=7)
    p.wait_started(2)
    sh(NODE, "pkill -STOP -x knotd")
    try:
        assert wait_for(lambda: not at_router(4), 5, 0.2), "fra1 still announces with Knot stopped"
    finally:
        time.sleep(max(0.0, p.started + 5 - time.monotonic()))
        sh(NODE, "pkill -CONT -x knotd")
    s = p.result()
    report("Knot hung (SIGSTOP)", s)
    assert s["first"] == NODE and len(s["sequence"]) >= 2, s["sequence"]
    assert s["outage_ms"] <= CORE_BUDGET_MS["Knot hung (SIGSTOP)"], s
    reason = health(NODE)["families"]["ipv4"]
    assert reason["failures"] == 1


FLOOD_S = 8


def missing_at_router() -> dict[int, str]:
    """Per family whose aggregate tr-fra does not hold from fra1 now: the session's state and what
    its received-routes read returned ({} when both are there)."""
    out = {}
    for fam in (4, 6):
        routes = at_router(fam)
        if AGGREGATES[fam] not in routes:
            afi = "ipv4" if fam == 4 else "ipv6"
            state = vtysh_json(ROUTER, f"show bgp neighbors {NODE_ADDR[fam]} json", check=False)
            out[fam] = (f"session {state.get(NODE_ADDR[fam], {}).get('bgpState', 'unreadable')}, "
                        f"{afi} received-routes {sorted(routes) or 'empty'}")
    return out


def test_a_flood_that_rrl_absorbs_withdraws_nothing(steady, tmp_path):
    """Issue 24: dnsperf from London at the highest rate it reaches here (no rate limit, 60,000
    queries outstanding) at the anycast address fra1 serves, for FLOOD_S seconds. RRL drops or
    truncates most answers and Knot's UDP sockets overflow; fra1's checks (retried, silence judged
    per transport) keep it announced: withdrawing would push the flood onto the next PoP."""
    queries = tmp_path / "queries"
    queries.write_text("example.com SOA\nwww.example.com A\nexample.net NS\n")

    def counters() -> dict[str, int]:
        out = sh(NODE, "knotc stats mod-rrl; nstat -az UdpRcvbufErrors Udp6RcvbufErrors").stdout
        return {k: int(v) for k, v in re.findall(r"^(mod-rrl\.\w+|Udp6?RcvbufErrors)\s*=?\s*(\d+)", out, re.M)}

    before, rrl, since = health(NODE)["families"], counters(), int(time.time()) - 1
    from anycast_lab import engine  # noqa: PLC0415 - the lab's code, on the path only for lab tests
    from anycast_lab.failover import health_timing  # noqa: PLC0415

    argv = engine.node_argv(CLIENT, ["dnsperf", "-s", SERVICE[4], "-d", str(queries), "-l", str(FLOOD_S),
                                     "-c", "16", "-T", "2", "-q", "60000", "-t", "1",
                                     # One line per timed-out query otherwise: a full pipe stops dnsperf.
                                     "-O", "suppress=timeout,congestion,sendfailed,sockready,unexpected"])
    flood = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    gone, glitches, deadline = [], [], time.monotonic() + FLOOD_S + 30
    try:
        while flood.poll() is None and time.monotonic() < deadline:
            missing = missing_at_router()
            if missing:
                # Read again before calling it a withdrawal: a real one lasts at least the rise
                # time (rise x interval, 1.6 s here) and a session reset longer, so a route that is
                # back 0.3 s later was never withdrawn, only missing from that read (ci61 saw one
                # such sample, cause unknown). Both are kept, with what the router said.
                time.sleep(0.3)
                (gone if missing_at_router() else glitches).append(missing)
            time.sleep(0.5)
    finally:
        if flood.poll() is None:
            flood.kill()
        out = flood.communicate(timeout=30)[0]
    assert flood.returncode == 0, f"dnsperf ended with {flood.returncode} (killed after {FLOOD_S + 30} s?):\n{out}"
    after, rrl_after = health(NODE)["families"], counters()
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    done = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    delta = {k: rrl_after.get(k, 0) - rrl.get(k, 0) for k in rrl_after}
    socket_drops = delta.get("UdpRcvbufErrors", 0) + delta.get("Udp6RcvbufErrors", 0)
    failed_rounds = sh(NODE, f"journalctl -u anycast-health --since @{since} -o cat | grep -c 'check failed'",
                       check=False).stdout.strip()
    print(f"\n[health] flood from {CLIENT}: {sent / FLOOD_S:.0f} q/s for {FLOOD_S} s, {done} answered, RRL dropped "
          f"{delta.get('mod-rrl.dropped', 0)} and slipped {delta.get('mod-rrl.slipped', 0)}, {socket_drops} "
          f"datagrams dropped by full sockets; fra1 logged {failed_rounds} failed check(s), "
          f"never {health_timing()['fall']} in a row")
    # A flood: more than the lab's RRL limit many times over, and RRL and the sockets did shed it.
    assert sent / FLOOD_S >= 5000, out
    assert delta.get("mod-rrl.dropped", 0) + delta.get("mod-rrl.slipped", 0) > 0, delta
    # Nothing withdrawn, at any moment, in either family: fra1's daemon never left the announced
    # state (its counters), and tr-fra held both aggregates from fra1 whenever it was read.
    for fam in ("ipv4", "ipv6"):
        assert after[fam]["state"] == "announced", after[fam]
        assert (after[fam]["failures"], after[fam]["transitions"]) == \
            (before[fam]["failures"], before[fam]["transitions"]), (before[fam], after[fam])
    assert not gone, f"tr-fra lost fra1's aggregates {len(gone)} time(s) during the flood: {gone}"
    if glitches:
        print(f"[health] a read of tr-fra came back without fra1's aggregates, and with them 0.3 s later: "
              f"{glitches}")


def test_knot_answering_servfail_for_one_zone_withdraws(steady):
    """example.net lost on fra1 (purged, and the primary refuses transfers meanwhile): Knot
    still answers example.com but SERVFAIL for example.net."""
    p = Probe(duration=7, qname="example.net.")
    p.wait_started(2)
    lab_cli("exec", "primary1", "--", "knotc", "zone-xfr-freeze", "example.net")
    try:
        sh(NODE, "knotc -f zone-purge example.net")
        assert wait_for(lambda: not announced(NODE, 4), 5, 0.2)
        assert "example.net udp: answered SERVFAIL" in health(NODE)["families"]["ipv4"]["reason"]
    finally:
        lab_cli("exec", "primary1", "--", "knotc", "zone-xfr-thaw", "example.net")
    s = p.result()
    sh(NODE, "knotc zone-retransfer example.net")
    report("Knot SERVFAIL for example.net", s)
    assert s["first"] == NODE and s["sequence"][1] != NODE, s["sequence"]
    assert s["outage_ms"] <= 2000, s


def test_frr_restarted(steady):
    s = through("FRR restarted", "systemctl restart frr", duration=12)
    assert s["outage_ms"] <= 1500, s
    # FRR re-learns keepalived's routes from the kernel: fra1 is back without the checks moving.
    assert wait_for(lambda: at_router(4) and at_router(6), 30, 0.5)
    assert health(NODE)["families"]["ipv4"]["transitions"] == 0


def test_keepalived_restarted(steady):
    since = time.time()
    s = through("keepalived restarted", "systemctl restart keepalived", duration=8)
    assert s["outage_ms"] <= 1500, s
    assert s["last"] == NODE, s["sequence"]
    # No announcement before its heartbeat check passed (the journal from this test on: an earlier
    # test's recovery may have entered MASTER state within the last seconds too).
    log = sh(NODE, f"journalctl -u keepalived --no-pager -o short-iso-precise --since @{since:.0f}").stdout
    lines = log.splitlines()
    first_master = next(i for i, line in enumerate(lines) if "Entering MASTER STATE" in line)
    assert any("VRRP_Script(heartbeat) succeeded" in line for line in lines[:first_master]), log


def test_a_hung_health_daemon_is_withdrawn_by_its_stale_heartbeat(steady):
    """anycast-health stopped dead (SIGSTOP) while Knot serves: no check runs and keepalived's own
    check (heartbeat-fresh, every second, fall 2) sees the heartbeat go stale after its 3 s, so fra1
    withdraws rather than keep an announcement no check stands behind. London moves away; Knot
    answers what still arrives. SIGCONT: the heartbeat is fresh again and fra1 announces."""
    pid = sh(NODE, "systemctl show -p MainPID --value anycast-health").stdout.strip()
    assert pid not in ("", "0"), pid
    p = Probe(duration=16)
    p.wait_started(2)
    stopped, stopped_at = time.monotonic(), time.time()
    sh(NODE, f"kill -STOP {pid}")
    try:
        assert wait_for(lambda: not at_router(4) and not at_router(6), 20, 0.2), health(NODE)
        withdrawn_s = time.monotonic() - stopped
    finally:
        sh(NODE, f"kill -CONT {pid}")
    s = p.result()
    report("anycast-health hung (SIGSTOP)", s)
    print(f"[health] anycast-health hung: withdrawn from tr-fra after {withdrawn_s:.1f} s")
    # 3 s of age, two failed checks a second apart, the withdrawal reaching tr-fra.
    assert withdrawn_s <= 8, withdrawn_s
    assert s["outage_ms"] <= 1500, s  # the queries in flight while the routes move, as for the others
    assert s["sequence"][0] == NODE and len(s["sequence"]) >= 2, s["sequence"]  # London moved away
    log = sh(NODE, f"journalctl -u keepalived --no-pager -o cat --since @{stopped_at:.0f}").stdout
    assert "VRRP_Script(heartbeat) failed" in log, log[-2000:]


def test_a_keepalived_config_keepalived_refuses_never_reaches_it(steady):
    """I7: a virtual_router_id out of range reaches `keepalived -t`, which refuses it; the file,
    keepalived and the announcement stay as they were."""
    conf = "sha256sum /etc/keepalived/keepalived.conf"
    before, pid = sh(NODE, conf).stdout, sh(NODE, "pidof -s keepalived").stdout
    proc = run_playbook("site.yml", INVENTORY, "-l", NODE, "--tags", "health",
                        "-e", '{"anycast_health_vrid": {"ipv4": 300, "ipv6": 54}}')
    assert proc.returncode != 0 and "failed to validate" in proc.stdout, proc.stdout[-3000:]
    assert sh(NODE, conf).stdout == before and sh(NODE, "pidof -s keepalived").stdout == pid
    s = probe(CLIENT, SERVICE[4], rate=20, duration=2)
    assert s["answers_per_node"] == {NODE: 40} and announced(NODE), s


def journal_times(node: str, unit: str, pattern: str) -> list[float]:
    out = sh(node, f"journalctl -b -u {unit} --no-pager -o json --output-fields=MESSAGE").stdout
    times = []
    for line in out.splitlines():
        entry = json.loads(line)
        if re.search(pattern, str(entry.get("MESSAGE", ""))):
            times.append(int(entry["__REALTIME_TIMESTAMP"]) / 1e6)
    return times


def test_node_rebooted_announces_only_after_its_checks_rose(steady):
    p = Probe(duration=40)
    p.wait_started(2)
    took = lab_cli("reboot", NODE, timeout=300).stdout.strip()
    assert wait_for(lambda: announced(NODE), 60, 0.5), health(NODE)
    # Back at the upstream, then a steady stretch in which London is answered by fra1 again.
    assert wait_for(lambda: at_router(4), 30, 0.2), at_router(4)
    time.sleep(3)
    p.stop()
    s = p.result()
    report(f"node rebooted ({took})", s)
    assert s["outage_ms"] <= 1500, s
    assert s["sequence"][0] == NODE and s["sequence"][-1] == NODE and len(s["sequence"]) >= 3, s["sequence"]
    rose = journal_times(NODE, "anycast-health", r"^ipv4: announce")
    master = journal_times(NODE, "keepalived", r"ANYCAST_IPV4\) Entering MASTER STATE")
    assert rose and master and min(master) >= min(rose), (rose, master)


def test_node_powered_off_upstream_drops_it_through_bfd(steady):
    p = Probe(duration=8)
    p.wait_started(2)
    lab_cli("poweroff", NODE, "--max-off", "120")
    try:
        s = p.result()
    finally:
        lab_cli("poweron", NODE, timeout=300)
    report("node powered off", s)
    assert s["first"] == NODE and s["last"] != NODE, s["sequence"]
    assert s["outage_ms"] <= CORE_BUDGET_MS["node powered off"], s
    assert wait_for(lambda: announced(NODE), 90, 1), health(NODE)


def test_node_upstream_links_down(steady):
    """fra1's only upstream link goes down and stays down: London moves to another PoP through BFD
    and the router's loss of carrier."""
    s = through("upstream link down", "ip link set eth1 down", duration=8, undo="ip link set eth1 up")
    assert s["first"] == NODE and s["last"] != NODE, s["sequence"]
    assert s["outage_ms"] <= 1500, s


def interface_with(node: str, address: str) -> str:
    """The interface of NODE that holds ADDRESS."""
    out = sh(node, f"ip -o addr show to {address}").stdout.split()
    assert out, f"{node} has no interface with {address}"
    return out[1].split("@")[0]


def active_profile(node: str, iface: str) -> str:
    """The NetworkManager profile active on NODE's IFACE ('' when none)."""
    return sh(node, f"nmcli -g GENERAL.CONNECTION device show {iface}", check=False).stdout.strip()


# How long the link stays down: shorter than NetworkManager's carrier-wait-timeout (6 s), and longer,
# when NetworkManager would deactivate the profile and remove the addresses without ignore-carrier.
NM_CARRIER_WAIT_S = 6
@pytest.mark.parametrize(("side", "flap_s"), [("server", 2), ("router", 2), ("router", 10)])
def test_an_upstream_link_flap_heals_by_itself(steady, side, flap_s):
    """fra1's upstream link goes down and comes back after FLAP_S (a switch port reset, a cable
    reseat, `ip link set down` then `up`), on fra1's side or on tr-fra's (fra1 loses the carrier).
    The link is upstream_links' NetworkManager profile, kept active through the carrier loss
    (ignore-carrier), and both ends keep their IPv6 addresses (net.ipv6.conf.all.keep_addr_on_down:
    sysctl_tuning on the server, the lab's router setup on the router; Linux would flush them, and
    the IPv6 session would stay down for good), so both sessions and BFD peers come back by
    themselves, both families are announced again, and London is answered by fra1 again on both,
    with no one acting."""
    node_iface = interface_with(NODE, NODE_ADDR[4])
    node, iface = (NODE, node_iface) if side == "server" else (ROUTER, interface_with(ROUTER, ROUTER_ADDR[4]))
    assert sh(node, "sysctl -n net.ipv6.conf.all.keep_addr_on_down").stdout.strip() == "1"
    assert active_profile(NODE, node_iface) == f"anycast-{node_iface}"
    p4, p6 = Probe(fam=4, duration=60), Probe(fam=6, duration=60)
    p6.wait_started(2)
    sh(node, f"ip link set {iface} down")
    down = time.monotonic()
    if flap_s > NM_CARRIER_WAIT_S:
        # Past NetworkManager's carrier-wait-timeout: without ignore-carrier it would have
        # deactivated the profile and removed the addresses by now (checked on the lab: it does).
        time.sleep(NM_CARRIER_WAIT_S + 2)
        during = sh(NODE, f"ip -br addr show {node_iface}").stdout
        assert NODE_ADDR[4] in during and NODE_ADDR[6] in during, during
        assert active_profile(NODE, node_iface) == f"anycast-{node_iface}"
    time.sleep(max(0.0, flap_s - (time.monotonic() - down)))
    sh(node, f"ip link set {iface} up")
    up = time.monotonic()
    healed = wait_for(lambda: not any(established_and_bfd_up(NODE).values()) and at_router(4) and at_router(6), 30, 0.2)
    back_s = time.monotonic() - up
    time.sleep(3)  # a steady stretch with fra1 answering again
    p4.stop()
    p6.stop()
    s4, s6 = p4.result(), p6.result()
    for fam, s in ((4, s4), (6, s6)):
        report(f"upstream link flap ({flap_s} s down) on the {side}'s side, IPv{fam} client", s)
    print(f"[health] {flap_s} s flap on the {side}'s side: sessions, BFD and both families at tr-fra back "
          f"{back_s:.1f} s after the link came up")
    assert healed, (established_and_bfd_up(NODE), at_router(4), at_router(6))
    addrs = sh(NODE, f"ip -br addr show {node_iface}").stdout
    assert NODE_ADDR[4] in addrs and NODE_ADDR[6] in addrs, addrs
    assert active_profile(NODE, node_iface) == f"anycast-{node_iface}"  # never deactivated
    for s in (s4, s6):
        # Away while the link was down, back to fra1 afterwards; the outage is the move away.
        assert s["first"] == NODE and s["last"] == NODE and len(s["sequence"]) >= 3, s["sequence"]
        assert s["outage_ms"] <= 1500, s


def test_the_upstream_link_comes_back_from_its_profile_at_boot(steady):
    """fra1 boots with its upstream link bare (its addresses flushed, as on a machine whose network
    configuration lives nowhere else): NetworkManager applies upstream_links' stored profile at
    boot, and the sessions, BFD and both families come back with no one acting. The lab wires the
    links only when it comes up, so without the profile fra1 would stay cut off."""
    iface = interface_with(NODE, NODE_ADDR[4])
    profile = f"anycast-{iface}"
    wanted = next(i for i in host_vars(NODE)["anycast_interfaces"] if i["name"] == iface)
    stored = sh(NODE, f"nmcli -g connection.autoconnect,ipv4.method,ipv4.addresses,ipv6.method,ipv6.addresses "
                      f"connection show {profile}").stdout.replace("\\:", ":").split("\n")  # -g escapes colons
    assert stored[:5] == ["yes", "manual", wanted["ipv4"], "manual", wanted["ipv6"]], stored
    p = Probe(duration=60)
    p.wait_started(2)
    sh(NODE, f"ip addr flush dev {iface} scope global")
    took = lab_cli("reboot", NODE, timeout=300).stdout.strip()
    assert wait_for(lambda: announced(NODE, 4) and announced(NODE, 6), 60, 0.5), health(NODE)
    healed = wait_for(lambda: not any(established_and_bfd_up(NODE).values()) and at_router(4) and at_router(6), 30, 0.2)
    time.sleep(3)
    p.stop()
    s = p.result()
    report(f"upstream link bare at boot ({took})", s)
    assert healed, (established_and_bfd_up(NODE), at_router(4), at_router(6))
    addrs = sh(NODE, f"ip -br addr show {iface}").stdout
    assert NODE_ADDR[4] in addrs and NODE_ADDR[6] in addrs, addrs
    assert active_profile(NODE, iface) == profile
    assert s["first"] == NODE and s["last"] == NODE, s["sequence"]


UNMANAGED_CONF = "/etc/NetworkManager/conf.d/95-lab-test-unmanaged.conf"


def test_an_upstream_interface_networkmanager_leaves_alone_is_refused_naming_it(converged):
    """On a server where NetworkManager does not manage the upstream interface (here through
    keyfile.unmanaged-devices; on Debian an ifupdown stanza does the same), the role stops with the
    host, the interface and the reason, instead of writing a profile that would never apply. Once
    the interface is NetworkManager's again, the next run activates the profile."""
    iface = interface_with(NODE, NODE_ADDR[4])
    sh(NODE, f"printf '[keyfile]\\nunmanaged-devices=interface-name:mgmt0;interface-name:{iface}\\n' "
             f"> {UNMANAGED_CONF}; systemctl restart NetworkManager")
    try:
        refused = run_playbook("site.yml", INVENTORY, "--limit", NODE, "--tags", "links")
    finally:
        sh(NODE, f"rm -f {UNMANAGED_CONF}; systemctl restart NetworkManager")
    out = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0, out[-2000:]
    assert f"{NODE}: upstream interface {iface}: NetworkManager does not manage it (state 10 (unmanaged))" in out, \
        out[-2000:]
    assert "/etc/network/interfaces" in out
    # Managed again, NetworkManager only assumes the interface as it finds it; the role's next run
    # puts its profile back.
    again = run_playbook("site.yml", INVENTORY, "--limit", NODE, "--tags", "links")
    assert again.returncode == 0, again.stdout[-3000:]
    assert active_profile(NODE, iface) == f"anycast-{iface}"
    assert wait_for(lambda: not any(established_and_bfd_up(NODE).values()), 30, 0.5), established_and_bfd_up(NODE)


def test_only_ipv6_broken_moves_only_ipv6(steady):
    """The IPv6 service address disappears from fra1's lo: IPv6 moves away, IPv4 does not move."""
    p4, p6 = Probe(fam=4, duration=8), Probe(fam=6, duration=8)
    p6.wait_started(2)
    sh(NODE, f"ip -6 addr del {SERVICE[6]}/128 dev lo")
    try:
        assert wait_for(lambda: not announced(NODE, 6), 5, 0.2), health(NODE)
        s4, s6 = p4.result(), p6.result()
        assert announced(NODE, 4)
    finally:
        sh(NODE, f"ip -6 addr add {SERVICE[6]}/128 dev lo")
    report("only IPv6 broken, IPv6 client", s6)
    report("only IPv6 broken, IPv4 client", s4)
    assert s4["sequence"] == [NODE] and s4["lost"] == 0, s4
    assert s6["first"] == NODE and s6["last"] != NODE, s6["sequence"]
    assert s6["outage_ms"] <= 2000, s6
    assert at_router(4) and not at_router(6)


def test_knot_crashing_every_few_seconds_is_damped(steady):
    """Six crashes three seconds apart: without damping fra1 would come back after each one."""
    p = Probe(duration=22)
    p.wait_started(2)
    for _ in range(6):
        sh(NODE, "pkill -KILL -x knotd")
        time.sleep(3)
    state = health(NODE)["families"]["ipv4"]
    s = p.result()
    report("Knot crashing every 3 s", s)
    moves_back = s["sequence"][1:].count(NODE)
    print(f"[health] 6 crashes: fra1 announced again {moves_back} time(s) during the flapping; "
          f"state then {state['state']} ({state['reason']})")
    assert state["failures"] == 6, state
    assert state["state"] in ("damped", "withdrawn"), state
    assert moves_back <= 1, s["sequence"]
    # The hold ends by itself once Knot is quiet.
    assert wait_for(lambda: announced(NODE), 60, 1), health(NODE)


def test_drain_marks_graceful_shutdown_withdraws_and_survives_a_reboot(steady):
    def gshut_at_router() -> bool:
        return graceful_shutdown_seen(ROUTER, AGGREGATES[4], NODE_ADDR[4])

    p = Probe(duration=12)
    p.wait_started(1)
    out = sh(NODE, "anycast-health drain --no-block").stdout
    assert "at the latest in 5 s" in out
    assert wait_for(gshut_at_router, 4, 0.2), "tr-fra never saw GRACEFUL_SHUTDOWN from fra1"
    assert at_router(4), "withdrawn before the drain's wait"
    assert wait_for(lambda: not at_router(4) and not at_router(6), 10, 0.2)
    assert health(NODE)["families"]["ipv4"]["state"] == "drained"
    s = p.result()
    report("drain", s)
    assert s["outage_ms"] <= 500, s
    # Drained across a reboot: nothing announced after boot.
    lab_cli("reboot", NODE, timeout=300)
    assert wait_for(lambda: health(NODE).get("families", {}).get("ipv4", {}).get("state") == "drained", 60, 1)
    time.sleep(3)
    assert not at_router(4) and not at_router(6)
    prom = health_prom(NODE)
    assert "anycast_health_drained 1" in prom
    out = sh(NODE, "anycast-health undrain").stdout
    assert "ipv4: announced" in out and "ipv6: announced" in out, out
    assert wait_for(lambda: at_router(4) and not gshut_at_router(), 10, 0.5)


SEED002 = "lab/playbooks/seed002.yml"  # the lab's own: seed 002's health recipe, for make bench


def test_seed002_playbook_runs_the_seeds_recipe_and_goes_back(steady):
    """The lab's lab/playbooks/seed002.yml (make bench's comparison): keepalived with seed 002's dig
    check and no daemon. Knot stopped is withdrawn only after the seed's checks (fall 2, interval 2),
    not at once; a drain is refused; the way back leaves the node exactly as site.yml does
    (anycast_health's daemon, announced, and a check-mode site.yml with nothing to change)."""
    seed = run_playbook(SEED002, INVENTORY, "-l", NODE)
    try:
        assert seed.returncode == 0, seed.stdout[-3000:]
        assert sh(NODE, "systemctl is-active anycast-health", check=False).stdout.strip() == "inactive"
        conf = sh(NODE, "cat /etc/keepalived/keepalived.conf").stdout
        assert "script \"/usr/local/bin/dns-health.sh\"" in conf and "track_file" not in conf, conf
        assert "+time=1 +tries=1" in sh(NODE, "cat /usr/local/bin/dns-health.sh").stdout
        # The daemon's knot.service drop-in is gone; Knot's sandbox (role knot_dns) stays.
        assert sh(NODE, "ls /etc/systemd/system/knot.service.d/", check=False).stdout.split() == ["sandbox.conf"]
        assert wait_for(lambda: at_router(4) and at_router(6), 30, 0.5)
        s = through("seed 002's recipe, Knot stopped", "systemctl stop knot", duration=10, undo="systemctl start knot")
        assert s["first"] == NODE and s["last"] != NODE, s["sequence"]
        # Two failed checks 2 s apart: 2.68-2.99 s in three runs on the lab, once 1.46 s (keepalived's
        # own scheduling of the script; the daemon's withdrawal of a stopped Knot is about 0.2 s).
        assert 1000 <= s["outage_ms"] <= 7000, s
        drain = run_playbook("playbooks/drain.yml", INVENTORY, "-e", f"target={NODE}")
        assert drain.returncode != 0 and "cannot be drained" in drain.stdout, drain.stdout[-3000:]
    finally:
        back = run_playbook(SEED002, INVENTORY, "-l", NODE, "-e", "lab_health=daemon")
    assert back.returncode == 0, back.stdout[-3000:]
    assert sh(NODE, "systemctl is-active anycast-health", check=False).stdout.strip() == "active"
    assert sh(NODE, "ls /etc/systemd/system/knot.service.d/").stdout.split() == ["anycast-health.conf", "sandbox.conf"]
    assert sh(NODE, "test -e /usr/local/bin/dns-health.sh", check=False).returncode == 1
    assert wait_for(lambda: announced(NODE) and at_router(4) and at_router(6), 60, 0.5), health(NODE)
    check = run_playbook("site.yml", INVENTORY, "-l", NODE, "--tags", "health", "--check")
    assert check.returncode == 0 and f"{NODE}" in check.stdout, check.stdout[-3000:]
    assert re.search(rf"^{NODE}\s+: ok=\d+\s+changed=0\s", check.stdout, re.M), check.stdout[-3000:]


# The same core faults on a Debian 12 PoP server: gru1 (Knot 3.2, FRR 8.4, keepalived 2.2), whose
# only client region is São Paulo's, against fra1 (Debian 13) above.
OLD = {"node": "gru1", "client": "cl-gru", "router": "tr-gru"}
# What São Paulo's network adds to any withdrawal by gru1, whatever its Debian: tr-gru holds no
# second path for the aggregate (bb-gru's best is through tr-gru itself) until bb-gru has processed
# the withdrawal and sent its next best, and the client's ISP is one more BGP hop behind tr-gru.
# Measured with `ip monitor route` on the dev lab (Knot killed, four runs on gru1, two on fra1):
# the transit had its new path 155-169 ms after it dropped gru1's (tr-fra for fra1: 103-105 ms) and
# isp-gru 50 ms later, so São Paulo's client saw 360-420 ms and London's 220-260 ms for the same
# node reaction (the routes out of the kernel 20-40 ms after `pkill` returned, on both). One CI run
# under load gave 620 ms. The client budgets below are fra1's plus this; the node's own part is
# held to fra1's bound alone.
SAO_PAULO_PATH_HUNT_MS = 200
OLD_ADDR = {fam: ours for server, _, router, fam, ours in sessions()
            if server == OLD["node"] and router == OLD["router"]}


def debian(node: str) -> int:
    return int(sh(node, "cut -d. -f1 /etc/debian_version").stdout.strip())


def test_the_core_faults_on_debian_12_keep_the_same_budgets(converged):
    """Knot killed, Knot hung and the node powered off on gru1 (Debian 12), with the budgets the
    tests above hold fra1 (Debian 13) to, plus São Paulo's longer path hunting for the clients; the
    node's own withdrawal is held to the same bound on both. The figures of both, side by side."""
    node, client, router = OLD["node"], OLD["client"], OLD["router"]
    assert debian(node) == 12 and debian(NODE) == 13

    def upstream_has_it() -> bool:
        return all(received(router, fam, OLD_ADDR[fam]) for fam in (4, 6))

    def steady_old() -> None:
        sh(node, "systemctl restart anycast-health")
        assert wait_for(lambda: announced(node) and upstream_has_it(), 90, 0.5), health(node)

    def fault(name: str, duration: float, act, undo=None) -> dict:
        steady_old()
        p = Probe(duration=duration, client=client)
        p.wait_started(2)
        act()
        try:
            s = p.result()
        finally:
            if undo:
                undo()
        report(name, s, node=node)
        assert s["first"] == node and s["sequence"][1:2] != [node], s["sequence"]
        assert s["outage_ms"] <= CORE_BUDGET_MS[name] + SAO_PAULO_PATH_HUNT_MS, s
        return s

    fault("Knot killed (SIGKILL)", 6, lambda: sh(node, "pkill -KILL -x knotd"))
    # The node's own part, the one its Debian could change: fra1's bound (test_knot_killed_...).
    assert withdraw_seconds(health_prom(node)) <= NODE_WITHDRAW_S, health(node)

    def hang() -> None:
        sh(node, "pkill -STOP -x knotd")
        assert wait_for(lambda: not upstream_has_it(), 5, 0.2), f"{node} still announces with Knot stopped"

    fault("Knot hung (SIGSTOP)", 7, hang, undo=lambda: sh(node, "pkill -CONT -x knotd"))
    fault("node powered off", 8, lambda: lab_cli("poweroff", node, "--max-off", "120"),
          undo=lambda: lab_cli("poweron", node, timeout=300))
    assert wait_for(lambda: announced(node) and upstream_has_it(), 90, 1), health(node)

    print(f"\n[health] longest client outage, ms: {'fault':24} {NODE} (Debian 13)  {node} (Debian 12)")
    for name in CORE_BUDGET_MS:
        new, old = OUTAGES.get((NODE, name)), OUTAGES.get((node, name))
        print(f"[health]                          {name:24} {'-' if new is None else f'{new:.0f}':>17}  "
              f"{'-' if old is None else f'{old:.0f}':>17}")
