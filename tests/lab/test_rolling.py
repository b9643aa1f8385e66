"""Issue 7 on the lab: rolling rollouts PoP by PoP without losing a query, and the operator
playbooks (drain.yml, undrain.yml, status.yml).

While a playbook runs, every client region (six) queries the anycast address at a steady rate;
the probes stop when the playbook ends (`anycast-lab probe --stop-file`). A query is lost when no
authoritative NOERROR answer came back within 0.5 s, nor within 2 s after that (late: the host
held it; counted and printed apart, see LATE_GRACE).

The rollout's change is real on every PoP: a Knot setting (RRL rate limit 200 -> 250 answers/s,
reloaded) and an FRR timer (BGP keepalive/hold 10/30 -> 5/15). The broken change is a wrong
local ASN (65054; the upstreams expect 65053): it passes every syntax check, and only the
verification after the change can see that no BGP session comes up. It runs first; the full
rollout then resumes from the PoP where it stopped, and its controller is killed (SIGKILL, the run
and every process it started) once at each step, drain, apply, verify and undrain; each next run is
the resume command the killed one printed. Both also upgrade the agents (a copy of the built
zipapp under a new agents_version): the daemons must run the new one once a PoP is done."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, run_playbook
from tests.lab.conftest import LAB
from tests.lab.fleet import (
    AGENT_UNITS,
    AGGREGATES,
    INVENTORY,
    NEAREST_POP,
    POP_OF,
    ROLLOUT_RECORD,
    ROUTER_OF,
    SERVERS,
    SERVICE,
    converge,
    installed_zipapps,
    received,
    running_agents,
    sessions,
    sh,
    wait_for,
)

pytestmark = pytest.mark.lab

CLIENTS = list(NEAREST_POP)  # the six regions
RATE = 20  # queries per second per region
# A query is lost when no authoritative NOERROR answer comes within TIMEOUT, unless one comes in the
# LATE_GRACE after that: then it is late, counted and printed apart, and not lost. What a rollout
# can do wrong drops a query or answers it wrongly however long one waits (a withdrawal before the
# traffic moved, a micro-loop, a port closed by a restart, REFUSED, SERVFAIL). What delays a right
# answer is this host: the lab has no netem and its round trips take under 1 ms, but on the dev lab
# (idle host) the killed rollout saw answers held 50 to 215 ms in four or five regions at the same
# instant, during playbook tasks, and the probes' own sending stalled 0.7 to 1.4 s in CI (ci61).
# The probes' arrival and send times are the kernel's, so the probe's own stalls do not count.
# Late answers must stay rare (LATE_MOST of the queries sent): a change that made Knot stall on
# every reload would otherwise pass as late answers. The dev lab's killed rollout had none.
TIMEOUT = 0.5
LATE_GRACE = 2.0
LATE_MOST = 0.001
PEER_ADDR = {(server, fam): ours for server, _, router, fam, ours in sessions()
             if router == ROUTER_OF["transit"][server]}
# The agents as the inventory pins them, and the upgrade the rollouts install: the same zipapp
# under another version, as a release would come (the path in ExecStart changes).
AGENTS_ROLE = REPO / "roles" / "agents"
AGENTS_VERSION = yaml.safe_load((AGENTS_ROLE / "defaults" / "main.yml").read_text())["agents_version"]
UPGRADE = f"{AGENTS_VERSION}.post1"
UPGRADE_DIR = Path(tempfile.gettempdir()) / f"anycast-rolling-agents-{os.getpid()}"
CHANGE = {"knot_dns_rrl": {"rate_limit": 250, "slip": 2, "table_size": 393241, "whitelist": []},
          "frr_bgp_timers": {"keepalive": 5, "hold": 15},
          "agents_version": UPGRADE, "agents_artifact": str(UPGRADE_DIR / f"anycast-agents-{UPGRADE}.pyz")}
BROKEN = {"frr_bgp_asn": 65054,
          # Short waits, so the failed verification ends the run in seconds.
          "anycast_rolling": {"quorum": 3, "drain_wait": 20, "ready_timeout": 10, "announce_timeout": 60}}


class Regions:
    """One probe per client region, from now until stop()."""

    def __init__(self, tmp: Path, duration: float = 600):
        self.stop_file = tmp / "stop"
        env = dict(os.environ, PYTHONPATH=str(REPO / "lab"))
        self.procs = {
            c: subprocess.Popen(  # noqa: S603 - our own CLI
                [LAB, "probe", "--from", c, "--target", SERVICE[4], "--rate", str(RATE), "--duration", str(duration),
                 "--timeout", str(TIMEOUT), "--late-grace", str(LATE_GRACE), "--stop-file", str(self.stop_file),
                 "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for c in CLIENTS}
        self.softnet = softnet()
        time.sleep(2)  # a steady stretch before the playbook starts

    def stop(self) -> dict[str, dict]:
        time.sleep(2)
        self.stop_file.touch()
        out = {}
        for client, proc in self.procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            data = json.loads(stdout)
            # Kept beside the test's other files (pytest keeps the last runs' tmp_path), for a loss to be
            # looked at query by query.
            (self.stop_file.parent / f"probe-{client}.json").write_text(stdout)
            s = data["summary"]
            s["good"] = sum(1 for r in data["records"] if r.get("rcode") == "NOERROR" and r.get("aa"))
            late = [r for r in data["records"] if late_but_right(r)]
            s["late"] = [f"#{r['seq']} sent {wall(r)} UTC: answered by {r['late_nsid']} {r['late_ms']:.0f} ms after "
                         "it left" for r in late]
            s["bad"] = bad_queries(data["records"])
            out[client] = s
        host = {k: v - self.softnet[k] for k, v in softnet().items()}
        for s in out.values():
            s["host"] = host  # the same for every region: the host's backlog over the run
        return out


def late_but_right(record: dict) -> bool:
    """No answer within the timeout, then an authoritative NOERROR one within LATE_GRACE."""
    return record.get("late_ms") is not None and record.get("late_rcode") == "NOERROR" and bool(record.get("late_aa"))


def wall(record: dict) -> str:
    """When the query was sent, by the host's wall clock (to line it up with the playbook's log)."""
    at = record.get("at", 0)
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}"


def bad_queries(records: list[dict], most: int = 10) -> list[str]:
    """The first MOST lost queries (neither a good answer in time nor a late one): when each was
    sent and what came back instead."""
    out = []
    for r in records:
        if (r.get("rcode") == "NOERROR" and r.get("aa")) or late_but_right(r):
            continue
        what = r.get("error") or f"{r.get('rcode')} aa={r.get('aa')} from {r.get('nsid')}"
        if r.get("late_ms") is not None:
            what += (f" (then {r.get('late_rcode')} aa={r.get('late_aa')} from {r.get('late_nsid')}"
                     f" after {r['late_ms']:.0f} ms)")
        elif r.get("error") == "Timeout":
            what += f" (no answer in {TIMEOUT + LATE_GRACE:g} s)"
        out.append(f"#{r.get('seq')} sent {wall(r)} UTC: {what}")
        if len(out) == most:
            break
    return out


def softnet() -> dict[str, int]:
    """The host's packet backlog counters, all CPUs (every namespace's packets go through them):
    packets dropped because a CPU's backlog was full, and times the receive softirq ran out of time
    with work left (which then waits for ksoftirqd, a thread like any other on a busy host)."""
    totals_ = {"dropped": 0, "squeezed": 0}
    for line in Path("/proc/net/softnet_stat").read_text().splitlines():
        fields = [int(f, 16) for f in line.split()]
        totals_["dropped"] += fields[1]
        totals_["squeezed"] += fields[2]
    return totals_


def totals(result: dict[str, dict]) -> tuple[int, int]:
    sent = sum(s["sent"] for s in result.values())
    return sent, sent - sum(s["good"] + len(s["late"]) for s in result.values())


def rarely_late(result: dict[str, dict]) -> bool:
    sent = sum(s["sent"] for s in result.values())
    return sum(len(s["late"]) for s in result.values()) <= sent * LATE_MOST


def losses(result: dict[str, dict]) -> str:
    """Per region with a query not answered well: sent, good, and those queries (an assertion's
    message: the whole result would be cut short)."""
    lost = "; ".join(f"{client}: sent {s['sent']}, good {s['good']}, late {len(s['late'])}, longest gap "
                     f"{s['longest_gap_ms']} ms: " + ", ".join(s.get("bad", []))
                     for client, s in result.items() if s["good"] + len(s["late"]) != s["sent"])
    late = "; ".join(f"{client} late: " + ", ".join(s["late"][:10]) for client, s in result.items() if s["late"])
    return (lost or "none lost") + (f"; {late}" if late else "") + host_line(result)


def host_line(result: dict[str, dict]) -> str:
    host = next(iter(result.values()), {}).get("host")
    if not host:
        return ""
    return (f"; host over the run: {host['dropped']} packets dropped from a full backlog, "
            f"{host['squeezed']} receive softirqs out of time")


def report(name: str, seconds: float, result: dict[str, dict]) -> None:
    sent, lost = totals(result)
    late = sum(len(s["late"]) for s in result.values())
    print(f"\n[rolling] {name}: {seconds:.0f} s, {sent} queries from {len(result)} regions, {lost} lost, "
          f"{late} answered late" + host_line(result))
    for client, s in result.items():
        print(f"    {client}: sent {s['sent']}, good {s['good']}, longest gap {s['longest_gap_ms']} ms, "
              f"round trip median {s['rtt_ms_median']} ms, 99.9th percentile {s['rtt_ms_p999']} ms, "
              f"longest {s['rtt_ms_max']} ms, answers {s['answers_per_node']}")
        for line in s.get("bad", []):
            print(f"        lost: {line}")
        for line in s["late"]:
            print(f"        late: {line}")


def playbook(name: str, *extra: str, timeout: int = 1200) -> tuple[subprocess.CompletedProcess, float]:
    """Run a playbook; its stdout with every run of whitespace made one space (the callback folds
    long messages across lines)."""
    started = time.monotonic()
    proc = run_playbook(f"playbooks/{name}", INVENTORY, *extra, timeout=timeout)
    proc.stdout = " ".join(proc.stdout.split())
    return proc, time.monotonic() - started


def announced_to_upstream(server: str) -> bool:
    router = ROUTER_OF["transit"][server]
    return all(AGGREGATES[f] in received(router, f, PEER_ADDR[(server, f)]) for f in (4, 6))


def drain_flag(server: str) -> bool:
    return sh(server, "test -e /var/lib/anycast-health/drain", check=False).returncode == 0


def bgp_asn(server: str) -> str:
    return sh(server, "vtysh -c 'show running-config' | sed -n 's/^router bgp //p'").stdout.strip()


@pytest.fixture(scope="module", autouse=True)
def inventory_config_after(converged):
    """The rollouts below leave CHANGE on the fleet; afterwards site.yml puts the inventory's back.
    CHANGE is Knot's, FRR's and the agents' (knot_dns, frr_bgp; agents through anycast_health,
    monitoring and host_firewall), so the PoP servers' knot, frr, health, monitoring and firewall
    tags do it: a downgrade of the agents, which must take effect as the upgrade did."""
    built = AGENTS_ROLE / "files" / f"anycast-agents-{AGENTS_VERSION}.pyz"
    UPGRADE_DIR.mkdir()
    shutil.copy2(built, CHANGE["agents_artifact"])
    try:
        yield
        run = converge("--limit", "localhost,anycast_servers", "--tags", "knot,frr,health,monitoring,firewall",
                       label="rolling, inventory's configuration back")
        assert run["rc"] == 0, run["output"]
        for server in SERVERS:
            assert running_agents(server) == {u: f"anycast-agents-{AGENTS_VERSION}.pyz" for u in AGENT_UNITS}
            # The upgrade's zipapp is gone once nothing runs it (site.yml's post_tasks).
            assert installed_zipapps(server) == [f"anycast-agents-{AGENTS_VERSION}.pyz"], server
    finally:
        shutil.rmtree(UPGRADE_DIR, ignore_errors=True)


def test_status_prints_one_table_of_the_fleet(converged, tmp_path):
    proc, _ = playbook("status.yml", "-e", f"status_json={tmp_path / 'fleet.json'}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "PoP server BGP sessions BFD announces health drain zone serials" in proc.stdout
    for server in SERVERS:
        assert f"{POP_OF[server]} {server} transit:up/up" in proc.stdout, proc.stdout[-3000:]
    fleet = json.loads((tmp_path / "fleet.json").read_text())
    assert sorted(fleet) == sorted(SERVERS)
    for server, st in fleet.items():
        assert st["pop"] == POP_OF[server] and st["announcing"] and not st["drained"], (server, st)
        assert st["announced"] == sorted(AGGREGATES.values())
        assert all(s["state"] == "Established" and s["bfd"] == "up" for s in st["sessions"]), st["sessions"]
        serials = {zones["example.com"] for zones in st["serials"].values()}
        assert len(serials) == 1 and isinstance(serials.pop(), int), st["serials"]
        assert {f["state"] for f in st["health"]["families"].values()} == {"announced"}


def test_drain_and_undrain_one_pop_persist_across_a_reboot_without_losing_a_query(converged, tmp_path):
    regions = Regions(tmp_path)
    proc, seconds = playbook("drain.yml", "-e", "target=fra")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 other PoP(s) serve (hkg, tyo, gru); 3 required" in proc.stdout
    assert "fra1 is drained: withdrawn" in proc.stdout and "traffic moved" in proc.stdout, proc.stdout[-2000:]
    assert not announced_to_upstream("fra1")
    # A drained PoP is missing from the quorum: draining a second one is refused, nothing touched.
    refused, _ = playbook("drain.yml", "-e", "target=gru")
    assert refused.returncode != 0
    assert "Refusing to take gru1 out of service" in refused.stdout and "Missing: fra (fra1: anycast-health: drained" \
        in refused.stdout, refused.stdout[-2000:]
    assert not drain_flag("gru1") and announced_to_upstream("gru1")
    # Drained across a reboot.
    subprocess.run([LAB, "reboot", "fra1"], check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, PYTHONPATH=str(REPO / "lab")))
    assert wait_for(lambda: sh("fra1", "anycast-health status", check=False).returncode == 0, 60, 1)
    time.sleep(5)
    assert drain_flag("fra1") and not announced_to_upstream("fra1")
    proc, _ = playbook("undrain.yml", "-e", "target=fra")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "fra from cl-lon: 203.0.113.53 answered by fra1" in proc.stdout, proc.stdout[-2000:]
    result = regions.stop()
    report("drain, reboot, undrain of fra", seconds, result)
    assert totals(result)[1] == 0, losses(result)
    assert rarely_late(result), losses(result)
    assert result["cl-lon"]["answers_per_node"].get("fra1", 0) > 0 and len(result["cl-lon"]["answers_per_node"]) > 1


def test_a_bad_target_is_refused_before_anything_is_touched(converged):
    for target, words in (("nope", "names no host"), ("primary1", "also names primary1")):
        proc, _ = playbook("drain.yml", "-e", f"target={target}")
        assert proc.returncode != 0 and words in proc.stdout, proc.stdout[-2000:]
    proc, _ = playbook("drain.yml")
    assert proc.returncode != 0 and "say which PoP or server" in proc.stdout
    assert not any(drain_flag(s) for s in SERVERS)


def test_a_broken_change_stops_at_the_first_pop_which_stays_drained_and_clients_see_nothing(converged, tmp_path):
    regions = Regions(tmp_path)
    # rolling_force: the change is on every PoP, so the check-mode pass would only say so; forced,
    # the run skips it and goes straight to hkg.
    proc, seconds = playbook("rolling.yml", "-e", "rolling_force=true", "-e", json.dumps({**CHANGE, **BROKEN}))
    result = regions.stop()
    report("broken change (local ASN 65054)", seconds, result)
    assert proc.returncode != 0
    assert "Every PoP goes through drain, apply and undrain (rolling_force)" in proc.stdout, proc.stdout[-4000:]
    assert "PoP hkg: rolled (hkg1: rolling_force; hkg2: rolling_force)" in proc.stdout, proc.stdout[-4000:]
    assert "Rollout stopped at PoP hkg (Hong Kong)" in proc.stdout, proc.stdout[-4000:]
    assert "step 'Go on only if every server of the PoP is ready' failed" in proc.stdout
    assert "Idle" in proc.stdout and "the PoPs after it (tyo, fra, gru) were not touched" in proc.stdout
    assert "-e rolling_from=hkg" in proc.stdout
    assert totals(result)[1] == 0, losses(result)
    assert rarely_late(result), losses(result)
    # hkg is drained with the broken change; the PoPs after it were not touched.
    for server in ("hkg1", "hkg2"):
        assert drain_flag(server) and bgp_asn(server) == "65054" and not announced_to_upstream(server)
    for server in ("tyo1", "fra1", "gru1"):
        assert not drain_flag(server) and bgp_asn(server) == "65053" and announced_to_upstream(server)
    assert set(result["cl-hkg"]["answers_per_node"]) - {"hkg1", "hkg2"}, result["cl-hkg"]

    # Resuming from a later PoP is refused: hkg does not serve, so the quorum is short. (Limited to
    # tyo, the first PoP the run would roll, and forced: the refusal comes before tyo is touched,
    # and the check-mode pass would be the run's longest step.)
    refused, _ = playbook("rolling.yml", "--limit", "localhost,tyo", "-e", "rolling_from=tyo",
                          "-e", "rolling_force=true", "-e", json.dumps(CHANGE))
    assert refused.returncode != 0 and "Missing: hkg (hkg1: " in refused.stdout, refused.stdout[-3000:]
    assert bgp_asn("tyo1") == "65053" and not drain_flag("tyo1")


class Rollout:
    """rolling.yml in a session of its own, its output read as it comes, so that a test can kill it
    (SIGKILL to ansible-playbook, its workers and their ssh) at a chosen step."""

    def __init__(self, log: Path, *extra: str, timeout: float = 900):
        self.log = log  # the whole output, written when the run ends
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.proc = subprocess.Popen(  # noqa: S603 - our own playbook
            [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(REPO / "playbooks/rolling.yml"), *extra],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.lines: list[str] = []
        self.times: list[float] = []  # when each line came, for the log
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.times.append(time.monotonic() - self.started)
            self.lines.append(line)

    def write_log(self) -> None:
        self.log.write_text("".join(f"{t:7.1f} {line}" for t, line in zip(self.times, self.lines, strict=False)))

    @property
    def text(self) -> str:
        """The output so far, every run of whitespace one space (the callback folds long messages)."""
        return " ".join("".join(self.lines).split())

    def reach(self, *marks: str) -> None:
        """Wait until the output shows MARKS (regular expressions) in this order (bounded by the
        run's timeout)."""
        while True:
            at, text = 0, self.text
            for mark in marks:
                found = re.compile(mark).search(text, at)
                if not found:
                    break
                at = found.end()
            else:
                return
            if self.proc.poll() is not None:
                self.write_log()
                raise AssertionError(f"the run ended before {marks}: {text[-3000:]}")
            assert time.monotonic() < self.deadline, f"{marks} not reached: {text[-3000:]}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the run and everything it started, as when its machine dies: ansible's workers
        are in sessions of their own (setsid), so the process group is not enough. The run is
        stopped first, so that it forks nothing while its descendants are found."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        tree = {self.proc.pid}
        for _ in range(20):  # bounded: every round stops the children found, so the tree stops growing
            children = {pid for pid, ppid in parents().items() if ppid in tree} - tree
            if not children:
                break
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            tree |= children
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        self.write_log()
        assert wait_for(lambda: not set(parents()) & (tree - {self.proc.pid}), 10, 0.2), \
            "a process of the killed run survived"

    def finish(self) -> str:
        self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        self.reader.join(timeout=30)
        self.write_log()
        return self.text

    def resume_hint(self) -> list[str]:
        """The arguments of the last resume command the run printed (after `ansible-playbook`)."""
        hints = re.findall(r"resume with: ansible-playbook -i (\S+) playbooks/rolling\.yml -e (rolling_from=\w+)",
                           self.text)
        assert hints, self.text[-3000:]
        inventory, start = hints[-1]
        assert (REPO / inventory).resolve() == INVENTORY.resolve(), inventory
        return ["-e", start]


def parents() -> dict[int, int]:
    """Every process of the host: pid -> parent pid."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
    return out


def out_of_service(servers) -> None:
    """Each of SERVERS drained and withdrawn from its upstream (its daemon finishes a drain the dead
    controller started), and every other PoP server announced: one PoP out, the quorum kept."""
    assert wait_for(lambda: not any(announced_to_upstream(s) for s in servers), 45, 1), servers
    assert all(drain_flag(s) for s in servers), servers
    for server in set(SERVERS) - set(servers):
        assert announced_to_upstream(server) and not drain_flag(server), server


def rollout_record(server: str) -> dict | None:
    run = sh(server, f"cat {ROLLOUT_RECORD}", check=False)
    return json.loads(run.stdout) if run.returncode == 0 else None


def running_rrl(server: str) -> str:
    """The RRL rate limit of the running Knot (its configuration as loaded, not the file)."""
    line = sh(server, "knotc conf-read 'mod-rrl[default].rate-limit'").stdout.strip()
    return line.rpartition("=")[2].strip()  # mod-rrl[default].rate-limit = 200


def test_a_rollout_killed_at_each_step_leaves_the_fleet_safe_and_resumes_without_losing_a_query(
        converged, tmp_path):
    """The full rollout of CHANGE, its controller killed (SIGKILL to the run and every process it
    started) once at each step: undrain (hkg), drain (tyo), apply (fra, after knot.conf is written and before Knot
    reloads it) and verify (gru). After each kill the fleet must be safe: at most the killed PoP
    out, a drained PoP staying drained (its daemon finishes the withdrawal), the quorum kept, and
    status.yml saying so. Each next run is the resume command the killed one printed; the last one
    finishes the job. Clients of every region probe throughout: no query may be lost.

    The first run starts at hkg, left drained with the wrong ASN by the broken change before, and
    is forced (every PoP through drain, apply and undrain): the change is on every PoP."""
    change = ["-e", "rolling_force=true", "-e", json.dumps(CHANGE)]
    regions = Regions(tmp_path, duration=900)
    started = time.monotonic()

    # 1. Undrain: hkg's servers had their flags removed, announcing is under way.
    run = Rollout(tmp_path / "rollout-1.log", "-e", "rolling_from=hkg", *change)
    run.reach(r"PoP hkg \(Hong Kong\), 1 of 4", r"TASK \[Undrain")
    assert wait_for(lambda: not drain_flag("hkg1") and not drain_flag("hkg2"), 60, 0.2)
    run.kill()
    texts = [run.text]
    assert "Every PoP goes through drain, apply and undrain (rolling_force)" in run.text, run.text[-4000:]
    for pop, servers in (("hkg", "hkg1: rolling_force; hkg2: rolling_force"), ("tyo", "tyo1: rolling_force"),
                         ("fra", "fra1: rolling_force"), ("gru", "gru1: rolling_force")):
        assert f"PoP {pop}: rolled ({servers})" in run.text, run.text[-4000:]
    assert "rolling_from=hkg" in run.resume_hint()[1]
    # Its daemons finish the undrain; hkg's servers announce with the change applied, and keep the
    # record of the unfinished rollout.
    assert wait_for(lambda: announced_to_upstream("hkg1") and announced_to_upstream("hkg2"), 45, 1)
    for server in ("hkg1", "hkg2"):
        assert bgp_asn(server) == "65053" and running_rrl(server) == "250", server
        assert rollout_record(server)["pop"] == "hkg", server
    for server in ("tyo1", "fra1", "gru1"):
        assert announced_to_upstream(server) and rollout_record(server) is None, server

    # 2. Drain: tyo's flag is set (GRACEFUL_SHUTDOWN); the withdrawal is the daemon's to finish.
    run = Rollout(tmp_path / "rollout-2.log", *run.resume_hint(), *change)
    run.reach(r"PoP hkg \(Hong Kong\), 1 of 4", "did not finish; reloading Knot", "PoP hkg done in",
              r"PoP tyo \(Tokyo\),", r"TASK \[Drain")
    assert wait_for(lambda: drain_flag("tyo1"), 60, 0.2)
    run.kill()
    texts.append(run.text)
    out_of_service(["tyo1"])
    # status.yml shows who is out, and why.
    status, _ = playbook("status.yml", "-e", "target=tyo1")
    assert status.returncode == 0, status.stdout[-3000:]
    assert re.search(r"tyo tyo1 .* drained, rollout of tyo unfinished \(started \S+\)", status.stdout), \
        status.stdout[-3000:]

    # 3. Apply: knot.conf on fra1 has the new rate limit, the running Knot not yet (its reload is a
    # handler, and the run dies before the handler runs).
    run = Rollout(tmp_path / "rollout-3.log", *run.resume_hint(), *change)
    run.reach(r"PoP fra \(Frankfurt\),",
              r"TASK \[anycast\.dns\.knot_dns : Install knot\.conf[^]]*\] \** changed: \[fra1\]")
    run.kill()
    texts.append(run.text)
    out_of_service(["fra1"])
    assert "rate-limit: 250" in sh("fra1", "cat /etc/knot/knot.conf").stdout
    assert running_rrl("fra1") == "200"

    # 4. Verify: gru1 has the change and is drained while its readiness is checked.
    run = Rollout(tmp_path / "rollout-4.log", *run.resume_hint(), *change)
    run.reach(r"PoP fra \(Frankfurt\),", "fra1: the rollout that started PoP fra", "PoP fra done in",
              r"PoP gru \(São Paulo\),", r"TASK \[Verify locally")
    run.kill()
    texts.append(run.text)
    out_of_service(["gru1"])

    # The resumed run finishes the job.
    run = Rollout(tmp_path / "rollout-5.log", *run.resume_hint(), *change)
    out = run.finish()
    texts.append(out)
    seconds = time.monotonic() - started
    result = regions.stop()
    report("rollout killed at hkg (undrain), tyo (drain), fra (apply), gru (verify), resumed each time",
           seconds, result)
    assert run.proc.returncode == 0, out[-4000:]
    assert "gru1: the rollout that started PoP gru" in out, out[-4000:]
    assert "rolled gru; left alone, nothing to change and serving: none" in out, out[-4000:]
    # Over the five runs: one PoP after the other, in the inventory's order, each finished once and
    # verified from its vantage point; a PoP killed while announced (hkg) drained by its traffic
    # moving away when the next run took it again.
    every = " ".join(texts)
    order = [every.index(f"PoP {pop} done in") for pop in ("hkg", "tyo", "fra", "gru")]
    assert order == sorted(order), every[-4000:]
    assert every.count("traffic moved") >= 1
    for pop, client in (("hkg", "cl-hkg"), ("tyo", "cl-tyo"), ("fra", "cl-lon"), ("gru", "cl-gru")):
        assert f"{pop} from {client}: 203.0.113.53 answered by {pop}" in every
    sent, lost = totals(result)
    assert lost == 0, losses(result)
    assert rarely_late(result), losses(result)
    assert sent >= len(CLIENTS) * RATE * 60
    # Each region moved away from its PoP during that PoP's turns, and came back.
    for client, s in result.items():
        pops = {POP_OF[n] for n in s["answers_per_node"]}
        assert NEAREST_POP[client] in pops and len(pops) > 1, (client, s["answers_per_node"])
    # The change is live everywhere (the running Knot too: fra1's reload came from the resumed run),
    # nothing stayed drained, and no record of an unfinished rollout is left.
    for server in SERVERS:
        assert "rate-limit: 250" in sh(server, "cat /etc/knot/knot.conf").stdout
        assert running_rrl(server) == "250", server
        assert "timers bgp 5 15" in sh(server, "vtysh -c 'show running-config'").stdout
        assert bgp_asn(server) == "65053" and not drain_flag(server) and announced_to_upstream(server)
        assert rollout_record(server) is None, server
        # The upgrade took effect: each daemon runs the new zipapp, not the one it started with.
        assert running_agents(server) == {u: f"anycast-agents-{UPGRADE}.pyz" for u in AGENT_UNITS}, server
        # and the zipapp they ran before is removed once no process runs it.
        assert installed_zipapps(server) == [f"anycast-agents-{UPGRADE}.pyz"], server
    # That every PoP server is now exactly as site.yml leaves it with the same change (frr.conf was
    # written while drained, with graceful-shutdown; the rollout writes it again after the undrain)
    # is the next test's first assertion: its check-mode pass applies site.yml's roles to every
    # server with the same change and must find nothing to change.


def test_a_rolling_run_rolls_only_the_pop_changed_by_hand(converged, tmp_path):
    """The change is on every PoP already (the rollout above left every server exactly as site.yml
    would with it), and someone changed a kernel setting on gru1 by hand. The check-mode pass,
    site.yml's roles on every PoP server, finds that setting and nothing else: hkg, tyo and fra are
    verified and left alone, and none of their clients moves; only gru goes through drain, apply
    and undrain, and the setting is the inventory's again. (One rollout for both cases: a run with
    nothing to change at all is the same check on every PoP, and would cost a whole rolling run
    more. rolling_force=true, which rolls a PoP without asking the check, the rollouts above use.)"""
    sh("gru1", "sysctl -w net.ipv4.tcp_fin_timeout=30")
    regions = Regions(tmp_path)
    proc, seconds = playbook("rolling.yml", "-e", json.dumps(CHANGE))
    result = regions.stop()
    report("rolling run, gru1 changed by hand, the rest with nothing to change", seconds, result)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for pop in ("hkg", "tyo", "fra"):
        assert f"PoP {pop}: nothing to change (check mode), serves and announces (verified): left alone" \
            in proc.stdout, proc.stdout[-4000:]
    # The setting changed by hand is all the pass finds on gru1: frr.conf and the rest are as
    # site.yml leaves them after the rollout above.
    why = "gru1: anycast.dns.sysctl_tuning : Apply now each setting the running kernel does not have yet"
    assert f"PoP gru: rolled ({why})" in proc.stdout, proc.stdout[-4000:]
    assert "rolled gru; left alone, nothing to change and serving: hkg, tyo, fra" in proc.stdout
    assert totals(result)[1] == 0, losses(result)
    assert rarely_late(result), losses(result)
    assert sh("gru1", "sysctl -n net.ipv4.tcp_fin_timeout").stdout.strip() == "10"
    # Only São Paulo's clients moved (to another PoP while gru was drained) and came back; the
    # regions of the PoPs left alone stayed with their own PoP throughout.
    assert set(result["cl-gru"]["answers_per_node"]) - {"gru1"}, result["cl-gru"]
    assert "gru1" in result["cl-gru"]["answers_per_node"], result["cl-gru"]
    for client in ("cl-hkg", "cl-syd", "cl-tyo", "cl-lax", "cl-lon"):
        s = result[client]
        assert {POP_OF[n] for n in s["answers_per_node"]} == {NEAREST_POP[client]}, (client, s["answers_per_node"])
