"""What the lab tests share: the fleet as the lab inventory describes it, and helpers that look
inside the lab's machines."""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import json
import re
import subprocess
import time

import yaml

from tests.conftest import BIN, REPO, run_playbook
from tests.lab.conftest import lab_cli, lab_exec

INVENTORY = REPO / "inventories/lab"
# The session's steps (lab up and down, each site.yml run with its label and time), printed at the
# end of the run (tests/conftest.py, pytest_terminal_summary).
SESSION_STEPS: list[str] = []
SERVERS = ["hkg1", "hkg2", "tyo1", "fra1", "gru1"]
POP_OF = {"hkg1": "hkg", "hkg2": "hkg", "tyo1": "tyo", "fra1": "fra", "gru1": "gru"}
SERVICE = {4: "203.0.113.53", 6: "2001:db8:53::1"}
AGGREGATES = {4: "203.0.113.0/24", 6: "2001:db8:53::/48"}
OUR_ASN = 65053
# The upstream router at the other end of each server's session, by upstream name.
ROUTER_OF = {"transit": {"hkg1": "tr-hkg", "hkg2": "tr-hkg", "tyo1": "tr-tyo", "fra1": "tr-fra", "gru1": "tr-gru"},
             "hkix": {"hkg1": "rs-hkix", "hkg2": "rs-hkix"}}
# The PoP each client region reaches through the lab's Internet (lab/topology.yml).
NEAREST_POP = {"cl-hkg": "hkg", "cl-syd": "hkg", "cl-tyo": "tyo", "cl-lax": "tyo", "cl-lon": "fra", "cl-gru": "gru"}


@functools.cache
def host_vars(server: str) -> dict:
    return yaml.safe_load((INVENTORY / "host_vars" / f"{server}.yml").read_text())


def upstreams(server: str) -> list[dict]:
    return host_vars(server)["anycast_upstreams"]


def vtysh(node: str, *commands: str, check: bool = True) -> str:
    """vtysh in a node; with check=False, '' while FRR is not (yet) running."""
    args = []
    for cmd in commands:
        args += ["-c", cmd]
    proc = lab_exec(node, "vtysh", *args, timeout=60, check=check)
    return proc.stdout if proc.returncode == 0 else ""


def vtysh_json(node: str, command: str, check: bool = True) -> dict:
    return json.loads(vtysh(node, command, check=check) or "{}")


def sh(node: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab_exec(node, "sh", "-c", command, timeout=120, check=check)


def client_python(client: str, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Python (the test venv's, with dnspython) inside a client's network namespace."""
    return lab_exec(client, str(BIN / "python"), "-c", code, timeout=timeout, check=False)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {ok, changed, failed, ...}}."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", output, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def established_and_bfd_up(server: str) -> dict[str, str]:
    """Each upstream address of SERVER -> problem ('' when Established and BFD up)."""
    neighbors = vtysh_json(server, "show bgp neighbors json", check=False)
    peers = {p["peer"]: p["status"] for p in json.loads(vtysh(server, "show bfd peers json", check=False) or "[]")}
    out = {}
    for up in upstreams(server):
        for fam in (4, 6):
            addr = up[f"ipv{fam}"]
            state = neighbors.get(addr, {}).get("bgpState", "absent")
            bfd = peers.get(addr, "absent")
            out[addr] = "" if (state == "Established" and bfd == "up") else f"bgp {state}, bfd {bfd}"
    return out


def all_up() -> dict[str, dict[str, str]]:
    bad = {s: {a: p for a, p in established_and_bfd_up(s).items() if p} for s in SERVERS}
    return {s: v for s, v in bad.items() if v}


def _failures(stdout: str) -> str:
    """The failed tasks of a playbook run, with their task header: the tail alone may not show them."""
    lines, task, out = stdout.splitlines(), "", []
    for line in lines:
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith(("fatal:", "failed:")):
            out += [task, line[:2000]]
    return ("FAILED TASKS:\n" + "\n".join(out) + "\n...\n") if out else ""


def converge(*extra: str, label: str = "lab", monitoring: bool = False, env: dict[str, str] | None = None) -> dict:
    """site.yml on the lab; rc, seconds, recap and the output's tail. Without the monitoring role
    unless asked (the session's own runs include it). ENV: added to ansible-playbook's environment."""
    started = time.monotonic()
    if not monitoring and "--tags" not in extra:
        extra = (*extra, "--skip-tags", "monitoring")
    proc = run_playbook("site.yml", INVENTORY, *extra, timeout=1200, env=env)
    run = {"rc": proc.returncode, "seconds": time.monotonic() - started, "recap": recap(proc.stdout),
           "stdout": proc.stdout, "output": _failures(proc.stdout) + proc.stdout[-4000:] + proc.stderr[-2000:]}
    line = f"[{label}] site.yml {' '.join(extra)}: rc={proc.returncode} in {run['seconds']:.1f} s"
    print(f"\n{line}")
    SESSION_STEPS.append(line)
    return run


def probe(client: str, target: str, *, rate: float = 10, duration: float = 1, qname: str = "example.com.",
          qtype: str = "SOA", tcp: bool = False) -> dict:
    args = ["probe", "--from", client, "--target", target, "--rate", str(rate), "--duration", str(duration),
            "--qname", qname, "--qtype", qtype, "--json"]
    if tcp:
        args.append("--tcp")
    return json.loads(lab_cli(*args).stdout)["summary"]


def probe_regions(clients, target: str, **kwargs) -> dict[str, dict]:
    """probe() from each client at once (one process per client, as many as the lab has regions):
    client -> summary. The same probes as one after the other, in the time of the slowest."""
    clients = list(clients)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        futures = {client: pool.submit(probe, client, target, **kwargs) for client in clients}
        return {client: future.result() for client, future in futures.items()}


def sessions() -> list[tuple[str, str, str, int, str]]:
    """(server, upstream name, upstream router, family, our address as the router sees it)."""
    out = []
    for server in SERVERS:
        ifaces = host_vars(server)["anycast_interfaces"]
        for up in upstreams(server):
            for fam in (4, 6):
                peer = up[f"ipv{fam}"]
                ours = next(str(i[f"ipv{fam}"]).split("/")[0] for i in ifaces
                            if f"ipv{fam}" in i and _same_subnet(i[f"ipv{fam}"], peer))
                out.append((server, up["name"], ROUTER_OF[up["name"]][server], fam, ours))
    return out


def _same_subnet(cidr: str, addr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_interface(cidr).network


def received(router: str, fam: int, neighbor: str) -> dict:
    """What the router received from one neighbour, before its inbound filter (soft-reconfiguration)."""
    afi = "ipv4" if fam == 4 else "ipv6"
    data = vtysh_json(router, f"show bgp {afi} unicast neighbors {neighbor} received-routes json")
    return data.get("receivedRoutes", {})


def graceful_shutdown_seen(router: str, prefix: str, peer: str) -> bool:
    """Does ROUTER hold PREFIX from PEER with the GRACEFUL_SHUTDOWN community (65535:0)?"""
    afi = "ipv6" if ":" in prefix else "ipv4"
    route = vtysh_json(router, f"show bgp {afi} unicast {prefix} json")
    return any("gracefulShutdown" in (p.get("community", {}).get("list") or [])
               for p in route.get("paths", []) if p.get("peer", {}).get("peerId") == peer)


def health(server: str) -> dict:
    """anycast-health's state on SERVER ({} when it cannot be read)."""
    out = sh(server, "anycast-health status --json", check=False).stdout
    try:
        return json.loads(out or "null") or {}
    except json.JSONDecodeError:
        return {}


# The agents' long-running daemons on a PoP server, each started from the zipapp its unit names.
AGENT_UNITS = ("anycast-health", "anycast-knot-exporter", "anycast-firewall-counters")
# Written by playbooks/rolling.yml when it starts a PoP, removed when the PoP is done.
ROLLOUT_RECORD = "/var/lib/anycast-health/rollout.json"


def running_agents(server: str) -> dict[str, str]:
    """Per daemon of AGENT_UNITS on SERVER, the zipapp its running process was started from, when
    that is the one its unit file names now; else what runs and what the unit says (a restart
    before systemd re-read a changed unit keeps the old zipapp running)."""
    script = ("for u in " + " ".join(AGENT_UNITS) + "; do "
              "want=$(sed -n 's/^ExecStart=\\([^ ]*\\).*/\\1/p' /etc/systemd/system/$u.service); "
              "pid=$(systemctl show -p MainPID --value $u); "
              "got=$(tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null); "
              "case \" $got \" in *\" $want \"*) echo \"$u ${want##*/}\";; "
              "*) echo \"$u runs '${got% }' (pid $pid), its unit says $want\";; esac; done")
    out = sh(server, script, check=False).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def installed_zipapps(server: str) -> list[str]:
    """The agents' zipapps on SERVER (role agents' directory), sorted."""
    return sorted(sh(server, "ls /usr/local/lib/anycast-dns/", check=False).stdout.split())


def fleet_problems() -> dict[str, str]:
    """What keeps the fleet from being as site.yml leaves it, at run time: machines not running,
    BGP sessions or BFD peers down, servers drained or not announcing both families, a rollout's
    record left behind, stale agents. {} when healthy."""
    from tests.lab.conftest import status  # noqa: PLC0415

    problems = {n["name"]: f"machine {n['state']}" for n in status()
                if n.get("kind") != "client" and n["state"] != "running"}
    if problems:
        return problems
    # The servers side by side: one after the other took 5 to 6 s, at the start of every module.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(SERVERS)) as pool:
        found = dict(zip(SERVERS, pool.map(server_problems, SERVERS), strict=True))
    return {server: why for server, why in found.items() if why}


def server_problems(server: str) -> str:
    """fleet_problems() of one PoP server ('' when it is healthy)."""
    problem = "; ".join(f"{addr}: {why}" for addr, why in established_and_bfd_up(server).items() if why)
    state = health(server)
    families = {f: v.get("state") for f, v in state.get("families", {}).items()}
    if state.get("drain") or families != {"ipv4": "announced", "ipv6": "announced"}:
        problem = f"{problem} health {families or 'unreadable'}, drain " \
                  f"{'set' if state.get('drain') else 'not set'}".strip()
    record = sh(server, f"cat {ROLLOUT_RECORD}", check=False)
    if record.returncode == 0:
        problem = f"{problem} record of an unfinished rollout: {record.stdout.strip()}".strip()
    stale = [f"{u} {how}" for u, how in running_agents(server).items() if how.startswith("runs ")]
    if stale:
        problem = f"{problem} {'; '.join(stale)}".strip()
    return problem


def restore_fleet() -> None:
    """site.yml again, drained servers undrained; fails unless the fleet is healthy afterwards."""
    run = converge(label="restore", monitoring=True)
    assert run["rc"] == 0, run["output"]
    for server in SERVERS:
        if health(server).get("drain"):
            sh(server, "anycast-health undrain", check=False)
        sh(server, f"rm -f {ROLLOUT_RECORD}")  # site.yml ran after the rollout that left it
    assert wait_for(lambda: not fleet_problems(), 120, 2), fleet_problems()
