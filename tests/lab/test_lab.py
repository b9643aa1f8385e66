"""The lab itself: every node boots, the Internet converges, clients reach it, probes measure it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from anycast_lab.topology import load
from tests.conftest import BIN, REPO
from tests.lab.conftest import lab_cli, status

pytestmark = pytest.mark.lab
TOPO = load()


def test_status_json_every_node_running(lab_up):
    nodes = {n["name"]: n for n in status()}
    assert set(nodes) == set(TOPO.nodes)
    for name, node in nodes.items():
        assert set(node) >= {"name", "kind", "netns", "mgmt", "state"}
        assert node["state"] == "running", node
        assert node["kind"] == TOPO.nodes[name].kind
        assert node["netns"] == "alab-" + name
    assert nodes["hkg1"]["mgmt"] == "198.18.0.11"


def test_every_machine_runs_its_release_on_cgroup2(lab_up):
    """The mixed fleet of the topology (servers on Debian 12 and 13, routers on 12), every machine's
    systemd on a unified cgroup hierarchy."""
    nodes = {n["name"]: n for n in status()}
    for node in TOPO.machines():
        assert nodes[node.name]["debian"] == node.debian, nodes[node.name]
    for name in ("hkg1", "tyo1", "primary1", "bb-fra"):
        out = lab_cli("exec", name, "--", "sh", "-c", "cut -d. -f1 /etc/debian_version; stat -f -c %T /sys/fs/cgroup")
        assert out.stdout.split() == [str(TOPO.nodes[name].debian), "cgroup2fs"], (name, out.stdout)
    assert "systemd 257" in lab_cli("exec", "tyo1", "--", "systemctl", "--version").stdout
    # Each machine in a cgroup of its own: one journald cgroup per machine, under the machine's name.
    journals = {}
    for pid in subprocess.run(["pgrep", "-x", "systemd-journal"], capture_output=True, text=True,
                              check=False).stdout.split():
        cgroup = next(line for line in open(f"/proc/{pid}/cgroup", encoding="utf-8") if line.startswith("0::"))
        journals[cgroup.strip()] = pid
    machines = {m.name for m in TOPO.machines()}
    owners = {path.split("/")[2] for path in journals if path.startswith("0::/anycast-lab/")}
    assert owners == machines and len(journals) >= len(machines), sorted(journals)


def test_up_again_is_idempotent(lab_up):
    proc = lab_cli("up", timeout=300)
    assert "nothing to do" in proc.stderr
    assert all(n["state"] == "running" for n in status())


def test_exec_runs_inside_the_node_and_returns_its_exit_code(lab_up):
    assert lab_cli("exec", "tyo1", "--", "hostname").stdout.strip() == "tyo1"
    assert lab_cli("exec", "cl-gru", "--", "ip", "-br", "addr", "show", "eth1").stdout.split()[2] == "100.80.5.2/24"
    assert lab_cli("exec", "bb-fra", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    missing = lab_cli("exec", "nosuch", "--", "true", check=False)
    assert missing.returncode == 1 and "no node 'nosuch'" in missing.stderr


def _bgp_peers(router: str) -> dict[str, dict]:
    out = json.loads(lab_cli("exec", router, "--", "vtysh", "-c", "show bgp summary json").stdout)
    peers = {}
    for family in ("ipv4Unicast", "ipv6Unicast"):
        peers.update(out.get(family, {}).get("peers", {}))
    return peers


def test_all_internet_bgp_sessions_established(lab_up):
    servers = {n.name for n in TOPO.of_kind("server")}
    deadline = time.monotonic() + 90
    while True:
        down = {}
        total = 0
        for router in TOPO.of_kind("router"):
            for addr, peer in _bgp_peers(router.name).items():
                if peer.get("desc") in servers:
                    continue  # our servers run no BGP until the routing roles converge them
                if str(peer.get("desc", "")).startswith("collector "):
                    continue  # the route collector runs once the monitoring role converges it (test_rpki)
                total += 1
                if peer.get("state") != "Established":
                    down[f"{router.name}->{peer.get('desc')}({addr})"] = peer.get("state")
        if not down or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert total >= 80
    assert not down, f"sessions not Established: {down}"


def test_every_client_reaches_every_backbone_router(lab_up):
    backbone = [n for n in TOPO.of_kind("router") if n.role == "backbone"]
    failures = []
    for client in TOPO.of_kind("client"):
        targets = " ".join(f"{b.loopback4} {b.loopback6}" for b in backbone)
        script = f"for t in {targets}; do ping -c 1 -W 2 -q $t >/dev/null || echo FAIL $t; done"
        out = lab_cli("exec", client.name, "--", "sh", "-c", script).stdout
        failures += [f"{client.name} -> {line.split()[1]}" for line in out.splitlines() if line.startswith("FAIL")]
    assert not failures, failures


def test_transits_offer_our_servers_bgp_with_md5_and_bfd(lab_up):
    running = lab_cli("exec", "tr-hkg", "--", "vtysh", "-c", "show running-config").stdout
    for server, addr in (("hkg1", "100.64.20.2"), ("hkg2", "100.64.21.2")):
        assert f"neighbor {addr} password lab-{server}-transit" in running
        assert f"neighbor {addr} bfd profile pop" in running
    bfd = lab_cli("exec", "tr-hkg", "--", "vtysh", "-c", "show bfd peers brief").stdout
    assert "100.64.20.2" in bfd


@pytest.fixture
def responder_in_london(lab_up):
    """A small authoritative responder in the London client network (NSID cl-lon), for 60 s at most."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", "alab-cl-lon", str(BIN / "python"), "-m", "anycast_lab.responder",
         "--address", "100.80.4.2", "--identity", "cl-lon", "--lifetime", "60"],
        stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO / "lab"), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.readline().strip() == "ready"
    yield "100.80.4.2"
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("client,path,rtt", [
    ("cl-hkg", ["cl-hkg", "isp-hkg", "tr-hkg", "bb-hkg", "bb-lon", "isp-lon", "cl-lon"], 97.3),
    ("cl-syd", ["cl-syd", "isp-syd", "bb-hkg", "bb-lon", "isp-lon", "cl-lon"], 170.84),
    ("cl-lon", ["cl-lon"], 0.0),
])
def test_probe_records_answers_gap_path_and_modelled_rtt(responder_in_london, client, path, rtt):
    proc = lab_cli("probe", "--from", client, "--target", responder_in_london, "--rate", "20", "--duration", "2",
                   "--json")
    result = json.loads(proc.stdout)
    summary = result["summary"]
    assert summary["sent"] == 40 == len(result["records"])
    assert summary["answered"] == 40 and summary["lost"] == 0
    assert summary["answers_per_node"] == {"cl-lon": 40}
    assert summary["longest_gap_ms"] < 200
    assert summary["path"] == path
    # Modelled: twice the one-way latency of every link crossed (great-circle km / 200).
    hops = zip(path, path[1:], strict=False)
    expected = 2 * sum(next(i.latency_ms for i in TOPO.nodes[a].interfaces if i.peer == b) for a, b in hops)
    assert summary["modelled_rtt_ms"] == pytest.approx(expected, abs=0.01) == pytest.approx(rtt, abs=0.01)
    assert all(r["nsid"] == "cl-lon" and r["rcode"] == "NOERROR" for r in result["records"])


def test_probe_counts_losses_when_nothing_answers(lab_up):
    result = json.loads(lab_cli("probe", "--from", "cl-tyo", "--target", "100.80.4.2", "--rate", "10",
                                "--duration", "1", "--timeout", "0.2", "--json").stdout)
    assert result["summary"]["sent"] == 10
    assert result["summary"]["lost"] == 10
    assert result["summary"]["longest_gap_ms"] == 1000.0


def test_probe_refuses_targets_outside_the_lab(lab_up):
    for target in ("8.8.8.8", "10.0.0.1", "192.168.1.1", "example.com"):
        proc = lab_cli("probe", "--from", "cl-hkg", "--target", target, check=False)
        assert proc.returncode == 1
        assert "error" in proc.stderr


@pytest.fixture
def test_prefix_from_every_transit(lab_up):
    """Every regional transit originates the same test prefixes, like four PoPs announcing one aggregate;
    afterwards they stop (the session's lab goes on)."""
    prefixes = {4: "100.127.53.0/24", 6: "2001:db8:ff53::/48"}
    transits = [n for n in TOPO.of_kind("router") if n.role == "transit"]

    def configure(no: str) -> None:
        for tr in transits:
            lab_cli("exec", tr.name, "--", "vtysh", "-c", "conf t",
                    "-c", f"{no}ip route {prefixes[4]} blackhole", "-c", f"{no}ipv6 route {prefixes[6]} blackhole",
                    "-c", f"router bgp {tr.asn}", "-c", "address-family ipv4 unicast",
                    "-c", f"{no}network {prefixes[4]}", "-c", "exit-address-family",
                    "-c", "address-family ipv6 unicast", "-c", f"{no}network {prefixes[6]}")

    configure("")
    time.sleep(3)
    yield {4: "100.127.53.53", 6: "2001:db8:ff53::53"}
    configure("no ")


def test_each_region_reaches_its_geographically_nearest_pop(test_prefix_from_every_transit):
    from anycast_lab.probe import walk_path  # noqa: PLC0415

    nearest = {"cl-hkg": "tr-hkg", "cl-tyo": "tr-tyo", "cl-gru": "tr-gru", "cl-syd": "tr-hkg", "cl-lon": "tr-fra",
               "cl-lax": "tr-tyo"}
    reached = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reached = {(client, fam): walk_path(TOPO, client, addr)["reached"]
                   for client in nearest for fam, addr in test_prefix_from_every_transit.items()}
        if all(reached[(c, f)] == nearest[c] for c, f in reached):
            break
        time.sleep(2)
    assert {k: v for k, v in reached.items() if v != nearest[k[0]]} == {}


def test_reimage_refuses_what_it_cannot_do_and_touches_nothing(lab_up):
    router = lab_cli("reimage", "bb-fra", "--debian", "12", check=False)
    assert router.returncode == 1 and "bb-fra is a router; only servers are re-imaged" in router.stderr
    unknown = lab_cli("reimage", "nosuch", "--debian", "13", check=False)
    assert unknown.returncode == 1 and "'nosuch' is not a machine of the lab" in unknown.stderr
    release = lab_cli("reimage", "hkg1", "--debian", "11", check=False)
    assert release.returncode == 2 and "invalid choice: 11" in release.stderr
    assert all(n["state"] == "running" for n in status())
