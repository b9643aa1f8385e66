"""Bring the lab up and down: namespaces, links, the management bridge, the apt cache, machines.

Every kernel object is named with PREFIX, so `down` finds what a crashed or killed `up` left
behind without any state file. Nothing of the lab is routed in the host namespace except the
management prefix, and `up` refuses to start if the host already uses that prefix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import aptcache, faults, routers, rpki, supervise
from .images import Image, ensure_base, ensure_images
from .paths import PREFIX, ROUTER_CONFIG_DIR, TOPOLOGY_FILE, StatePaths, state_paths
from .shell import LabError, processes, progress, run
from .topology import Node, Topology, load

BOOT_TIMEOUT_S = 180
NSPAWN_MATCH = "--machine=" + PREFIX


# --------------------------------------------------------------------------- discovery


def lab_netns() -> list[str]:
    proc = run(["ip", "-j", "netns", "list"], check=False)
    try:
        entries = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        entries = []
    return sorted(e["name"] for e in entries if e.get("name", "").startswith(PREFIX))


def lab_links() -> list[str]:
    proc = run(["ip", "-j", "link", "show"], check=False)
    entries = json.loads(proc.stdout or "[]")
    return sorted(e["ifname"] for e in entries if e.get("ifname", "").startswith(PREFIX))


def lab_mounts(paths: StatePaths) -> list[str]:
    root = str(paths.root)
    mounts = []
    with open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(root + "/"):
                mounts.append(target)
    return mounts


def nspawn_pids() -> dict[str, int]:
    """Running systemd-nspawn processes of the lab, by node name."""
    out = {}
    for pid, argv in processes():
        if argv and argv[0].endswith("systemd-nspawn"):
            for arg in argv:
                if arg.startswith(NSPAWN_MATCH):
                    out[arg[len(NSPAWN_MATCH):]] = pid
    return out


def supervisor_pids() -> dict[str, int]:
    """Running supervisors (anycast_lab.supervise) of lab machines, by node name."""
    out = {}
    for pid, argv in processes():
        if supervise.MARK in argv and len(argv) > argv.index(supervise.MARK) + 1:
            out[argv[argv.index(supervise.MARK) + 1]] = pid
    return out


def _netns_inodes() -> set[int]:
    inodes = set()
    for name in lab_netns():
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/run/netns/{name}").st_ino)
    return inodes


def processes_in_lab_netns() -> list[int]:
    """Any process living in one of the lab's network namespaces (machines, probes, responders)."""
    inodes = _netns_inodes()
    pids = []
    if not inodes:
        return pids
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                pids.append(int(entry.name))
    return pids


def leader_pid(nspawn_pid: int) -> int | None:
    """PID (host view) of the container's init: the descendant that is PID 1 in its namespace."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) >= 2 and nspid[-1] == "1":
                return child
            todo.append(child)
    return None


def leftovers(paths: StatePaths | None = None) -> dict[str, list]:
    """Everything of a lab still present on the host; all lists empty means clean."""
    paths = paths or state_paths()
    return {
        "netns": lab_netns(),
        "links": lab_links(),
        "mounts": lab_mounts(paths),
        "nspawn": sorted(nspawn_pids()),
        "supervisors": sorted(supervisor_pids()),
        "apt_cache": aptcache.running_pids(paths),
        "cgroups": _cgroups_left(),
    }


# --------------------------------------------------------------------------- down


def down(paths: StatePaths | None = None, *, quiet: bool = False) -> dict[str, list]:
    """Remove every trace of a lab, whatever state it is in. Returns what was left (should be empty)."""
    paths = paths or state_paths()
    say = (lambda _m: None) if quiet else progress
    started = time.monotonic()
    # Supervisors first, so that no machine is booted again while the lab goes down.
    for pid in supervisor_pids().values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pids = nspawn_pids()
    if pids:
        say(f"stopping {len(pids)} machines")
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # nspawn powers the container off
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and nspawn_pids():
            time.sleep(0.2)
        for pid in nspawn_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Whatever still runs inside a lab namespace (orphaned container processes, probes) dies.
    for _ in range(3):
        stray = processes_in_lab_netns()
        if not stray:
            break
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    aptcache.stop(paths)
    _remove_cgroups()
    for target in sorted(lab_mounts(paths), key=len, reverse=True):
        if run(["umount", target], check=False).returncode != 0:
            run(["umount", "-l", target], check=False)
    for name in lab_netns():
        run(["ip", "netns", "del", name], check=False)
    for link in lab_links():
        run(["ip", "link", "del", link], check=False)
    shutil.rmtree(paths.machines, ignore_errors=True)
    shutil.rmtree(paths.run, ignore_errors=True)
    for stale in Path("/run/systemd/nspawn/propagate").glob(PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    left = leftovers(paths)
    if any(left.values()):
        say(f"WARNING: left behind: {left}")
    else:
        say(f"lab is down ({time.monotonic() - started:.1f} s)")
    return left


# --------------------------------------------------------------------------- up


def _preflight(topo: Topology) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, overlay mounts, systemd-nspawn)")
    for tool in ("ip", "systemd-nspawn", "nsenter", "ssh-keygen", "apt-cacher-ng", "mount"):
        if shutil.which(tool) is None:
            raise LabError(f"missing {tool}: run 'make setup' as root")
    # The management prefix is the only lab route in the host namespace: it must be free.
    addrs = json.loads(run(["ip", "-j", "addr", "show"]).stdout)
    for link in addrs:
        if link.get("ifname", "").startswith(PREFIX):
            continue
        for info in link.get("addr_info", []):
            net = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
            if net.version == 4 and net.overlaps(topo.mgmt_prefix):
                raise LabError(f"the host already uses {net} on {link['ifname']}, which overlaps the lab's "
                               f"management prefix {topo.mgmt_prefix}; change mgmt.prefix in lab/topology.yml")


# The machines' systemd runs on a unified cgroup hierarchy (cgroup2), each machine in a cgroup of its
# own (lab_cgroup()/<node>), also where the host itself uses cgroup v1 (this one does). Measured in
# the lab: with every machine in the caller's cgroup tree (v1, or cgroup2 without a cgroup each),
# the machines' units share cgroups (one system.slice/knot.service for all), Debian 13's systemd 257
# hangs for minutes when it shuts down (a reboot did not finish in 5 min; 1.2-2.8 s now), and systemd
# sometimes failed to spawn a unit right after a daemon-reload ("219/CGROUP"), which production
# roles retried. ANYCAST_LAB_CGROUP=legacy boots the machines the old way, to compare.
CGROUP2_MOUNT = Path("/sys/fs/cgroup/unified")


def cgroup_mode() -> str:
    return "legacy" if os.environ.get("ANYCAST_LAB_CGROUP") == "legacy" else "unified"


def _cgroup2_root() -> Path | None:
    """The host's cgroup2 hierarchy: /sys/fs/cgroup itself, or /sys/fs/cgroup/unified (hybrid)."""
    for path in (Path("/sys/fs/cgroup"), CGROUP2_MOUNT):
        if run(["stat", "-f", "-c", "%T", str(path)], check=False).stdout.strip() == "cgroup2fs":
            return path
    return None


def lab_cgroup() -> Path | None:
    """Where each machine gets a cgroup of its own (<root>/anycast-lab/<node>), if the host has cgroup2."""
    root = _cgroup2_root()
    return root / "anycast-lab" if root else None


def _cgroups_left() -> list[str]:
    top = lab_cgroup()
    return [str(top)] if top is not None and top.is_dir() else []


def _cgroup_busy(cgroup: Path) -> bool:
    """Does any process still live in CGROUP or below it?"""
    try:
        directories = [cgroup, *(d for d in cgroup.rglob("*") if d.is_dir())]
    except OSError:  # a cgroup went while we looked
        return True
    for directory in directories:
        with contextlib.suppress(OSError):
            if (directory / "cgroup.procs").read_text().strip():
                return True
    return False


def _remove_cgroups(node: str | None = None) -> None:
    """The machines' cgroups (or one machine's), deepest first: a cgroup goes once its processes
    are gone."""
    top = lab_cgroup()
    if top is None or not top.is_dir():
        return
    if node is not None:
        top = top / node
        if not top.is_dir():
            return
    for directory in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def _ensure_cgroup2() -> None:
    """A cgroup2 hierarchy on the host for the machines: /sys/fs/cgroup itself, or a cgroup2 mount
    at /sys/fs/cgroup/unified (systemd's hybrid layout), mounted here when the host has neither."""
    if cgroup_mode() != "unified" or _cgroup2_root() is not None:
        return
    try:
        CGROUP2_MOUNT.mkdir(exist_ok=True)
    except OSError as exc:
        raise LabError(f"the host has no cgroup2 hierarchy and {CGROUP2_MOUNT} cannot be made ({exc}); "
                       "set ANYCAST_LAB_CGROUP=legacy to boot the machines on cgroup v1 (Debian 13 will not "
                       "shut down cleanly there)") from exc
    run(["mount", "-t", "cgroup2", "cgroup2", str(CGROUP2_MOUNT)])
    progress(f"mounted a cgroup2 hierarchy at {CGROUP2_MOUNT} for the machines' systemd")


# Each booted machine runs its own systemd, which needs inotify instances of the host's budget.
HOST_LIMITS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def _raise_host_limits() -> None:
    for key, wanted in HOST_LIMITS.items():
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError, ValueError):
            if int(path.read_text()) < wanted:
                path.write_text(str(wanted))
                progress(f"raised {key.replace('/', '.')} to {wanted} (one systemd per machine)")


def _sysctls(node: Node) -> list[tuple[str, str]]:
    forward = "1" if node.kind == "router" else "0"
    return [
        ("net.ipv4.ip_forward", forward),
        ("net.ipv6.conf.all.forwarding", forward),
        ("net.ipv6.conf.default.accept_dad", "0"),
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.accept_ra", "0"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        # A router keeps its configured addresses when a link goes down and comes back, as real
        # routers do (Linux would flush the IPv6 ones). The PoP servers get it from sysctl_tuning.
        *([("net.ipv6.conf.all.keep_addr_on_down", "1")] if node.kind == "router" else []),
    ]


def _create_namespaces(topo: Topology) -> None:
    names = [n.netns for n in topo.nodes.values()] + [lan.netns for lan in topo.lans.values()]
    for name in names:
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
    for node in topo.nodes.values():
        run(["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in _sysctls(node))], netns=node.netns)


def _mgmt_host_if(node: Node) -> str:
    return f"{PREFIX}m{node.name[:9]}"


def _wire(topo: Topology) -> None:
    batch = []
    done = set()
    for node in topo.nodes.values():
        for iface in node.interfaces:
            if iface.peer is None or iface.link in done:
                continue
            done.add(iface.link)
            peer_iface = topo.interface_on(iface.peer, iface.link)
            batch.append(f"link add {iface.name} netns {node.netns} type veth peer name {peer_iface.name} "
                         f"netns {topo.nodes[iface.peer].netns}")
    for lan in topo.lans.values():
        run(["ip", "-n", lan.netns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", lan.netns, "link", "set", "br0", "up"])
        for member in lan.members:
            iface = topo.interface_on(member, f"lan:{lan.name}")
            batch.append(f"link add {iface.name} netns {topo.nodes[member].netns} type veth peer name "
                         f"{member[:12]} netns {lan.netns}")
    # Management: one bridge in the host namespace, one veth per machine.
    batch.append(f"link add {topo.mgmt_bridge} type bridge")
    for node in topo.machines():
        if node.mgmt is not None:
            batch.append(f"link add mgmt0 netns {node.netns} type veth peer name {_mgmt_host_if(node)}")
    run(["ip", "-batch", "-"], input_text="\n".join(batch) + "\n")
    for lan in topo.lans.values():
        for member in lan.members:
            run(["ip", "-n", lan.netns, "link", "set", member[:12], "master", "br0", "up"])
    run(["ip", "addr", "add", f"{topo.mgmt_gateway}/{topo.mgmt_prefix.prefixlen}", "dev", topo.mgmt_bridge])
    run(["ip", "link", "set", topo.mgmt_bridge, "up"])
    for node in topo.machines():
        if node.mgmt is not None:
            run(["ip", "link", "set", _mgmt_host_if(node), "master", topo.mgmt_bridge, "up"])
    for node in topo.nodes.values():
        cmds = _addressing(topo, node, "add")
        if cmds:
            run(["ip", "-n", node.netns, "-batch", "-"], input_text="\n".join(cmds) + "\n")


def _addressing(topo: Topology, node: Node, verb: str) -> list[str]:
    """`ip -batch` lines giving NODE its lab addresses and default routes (VERB: add or replace)."""
    cmds = []
    for iface in node.interfaces:
        cmds += [f"addr {verb} {iface.ipv4} dev {iface.name}", f"addr {verb} {iface.ipv6} dev {iface.name} nodad",
                 f"link set {iface.name} up"]
    if node.loopback4 is not None:
        cmds += [f"addr {verb} {node.loopback4}/32 dev lo", f"addr {verb} {node.loopback6}/128 dev lo"]
    if node.mgmt is not None:
        cmds += [f"addr {verb} {node.mgmt}/{topo.mgmt_prefix.prefixlen} dev mgmt0", "link set mgmt0 up"]
    gw_iface = topo.gateway_of(node) if node.interfaces else None
    if gw_iface is not None:
        cmds += [f"route {verb} default via {gw_iface.ipv4.ip}", f"route {verb} default via {gw_iface.ipv6.ip}"]
    return cmds


def rewire(topo: Topology, name: str) -> None:
    """Give a running node its lab addresses and default routes again (whatever inside it removed them)."""
    node = topo.nodes.get(name)
    if node is None or node.netns not in lab_netns():
        raise LabError(f"{name!r} is not a running node of the lab")
    run(["ip", "-n", node.netns, "-batch", "-"], input_text="\n".join(_addressing(topo, node, "replace")) + "\n")


def _machine_files(topo: Topology, node: Node, upper: Path, pubkey: str) -> None:
    ssh = upper / "root/.ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    ssh.chmod(0o700)
    (ssh / "authorized_keys").write_text(pubkey)
    (ssh / "authorized_keys").chmod(0o600)
    etc = upper / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    hosts = ["127.0.0.1 localhost", f"127.0.1.1 {node.name}", "::1 localhost ip6-localhost ip6-loopback"]
    hosts += [f"{n.mgmt} {n.name}" for n in topo.machines() if n.mgmt is not None and n.name != node.name]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    (etc / "resolv.conf").write_text("# anycast-lab: no resolver; apt goes through the cache by IP\n")
    # systemd on the host's cgroup v1 cannot stop a user manager cleanly: stopping user@0 after the
    # last SSH session hangs 90 s, and every new session waits for it. Keep it running instead.
    logind = etc / "systemd/logind.conf.d"
    logind.mkdir(parents=True, exist_ok=True)
    (logind / "90-anycast-lab.conf").write_text("[Login]\nUserStopDelaySec=infinity\n")
    if node.kind == "router":
        frr = etc / "frr"
        frr.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROUTER_CONFIG_DIR / f"{node.name}.conf", frr / "frr.conf")
        shutil.copy(ROUTER_CONFIG_DIR / "daemons", frr / "daemons")
        for path in (frr / "frr.conf", frr / "daemons"):
            path.chmod(0o640)
        if topo.rpki is not None and node.name == topo.rpki.cache:
            for rel, content in rpki.cache_files(topo).items():
                path = upper / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                path.chmod(0o644)
            link, target = rpki.ENABLE_LINK
            (upper / link).parent.mkdir(parents=True, exist_ok=True)
            (upper / link).unlink(missing_ok=True)
            (upper / link).symlink_to(target)
    else:
        apt = etc / "apt/apt.conf.d"
        apt.mkdir(parents=True, exist_ok=True)
        (apt / "01anycast-lab-proxy").write_text(
            f'Acquire::http::Proxy "http://{topo.mgmt_gateway}:{topo.apt_cache_port}";\n')


def _start_machine(topo: Topology, node: Node, image: Image, paths: StatePaths, pubkey: str) -> int:
    base = paths.machines / node.name
    upper, work, merged = base / "upper", base / "work", base / "root"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    _machine_files(topo, node, upper, pubkey)
    lower = ":".join(str(p) for p in image.layers)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
         str(merged)])
    if node.kind == "router":
        # frr owns its config inside the machine; ids come from the image's passwd.
        run(["chroot", str(merged), "chown", "-R", "frr:frr", "/etc/frr"])
    log = open(base / "console.log", "w")  # noqa: SIM115 - handed to the child process
    nspawn = ["systemd-nspawn", "--quiet", "--boot", "--keep-unit", "--register=no", "--console=passive",
              f"--machine={PREFIX}{node.name}", f"--hostname={node.name}", "-D", str(merged),
              f"--network-namespace-path=/run/netns/{node.netns}", "--capability=CAP_NET_ADMIN",
              "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
    # The supervisor boots the machine again when it reboots (nspawn exits with 133).
    # /proc/sys/net writable inside (sysctl of the machine's own namespace), the rest of /proc/sys read-only.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    if cgroup_mode() == "unified":
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        # Each machine in a cgroup of its own: with --keep-unit, nspawn makes the machine's cgroup
        # namespace below its own cgroup, which the machines would otherwise all share.
        cgroup = lab_cgroup() / node.name
        cgroup.mkdir(parents=True, exist_ok=True)
        env[supervise.CGROUP_ENV] = str(cgroup)
    proc = subprocess.Popen(
        [sys.executable, "-m", supervise.MARK, node.name, node.netns, "--state", str(base), "--", *nspawn],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    log.close()
    return proc.pid


def machine_state(node: Node, pids: dict[str, int]) -> str:
    pid = pids.get(node.name)
    if pid is None:
        return "stopped"
    leader = leader_pid(pid)
    if leader is None:
        return "starting"
    proc = run(["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "systemctl", "is-system-running"],
               check=False, timeout=20)
    state = proc.stdout.strip()
    if state in ("running", "degraded"):
        return "running"
    return state or "starting"


def _wait_booted(topo: Topology, timeout: float = BOOT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    pending = {n.name for n in topo.machines()}
    last = None
    while pending and time.monotonic() < deadline:
        pids = nspawn_pids()
        supervisors = supervisor_pids()
        dead = [name for name in pending if name not in pids and name not in supervisors]
        if dead:
            raise LabError(f"machine(s) exited during boot: {', '.join(sorted(dead))} (see "
                           f"{state_paths().machines}/<name>/console.log)")
        names = sorted(pending)
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = dict(zip(names, pool.map(machine_state, [topo.nodes[n] for n in names], [pids] * len(names)),
                              strict=True))
        pending = {name for name, state in states.items() if state != "running"}
        done = len(topo.machines()) - len(pending)
        if done != last:
            progress(f"booted {done}/{len(topo.machines())} machines")
            last = done
        if pending:
            time.sleep(1)
    if pending:
        raise LabError(f"machines not booted after {timeout:.0f} s: {', '.join(sorted(pending))}")


def _lab_digest() -> str:
    """What a running lab was made from: the topology and the router configurations."""
    digest = hashlib.sha256(TOPOLOGY_FILE.read_bytes())
    for path in sorted(ROUTER_CONFIG_DIR.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _running_lab_is_current(topo: Topology, paths: StatePaths) -> bool:
    try:
        state = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return False
    return state.get("digest") == _lab_digest() and all(n["state"] == "running" for n in status(topo))


def _write_vantage(topo: Topology, paths: StatePaths) -> None:
    """One Python per client namespace, for Ansible: the lab inventory's vantage points run their
    modules through it (ansible_python_interpreter), so they query the anycast addresses from the
    client's network, the way the client does. Gone with `down` (it lives in the run directory)."""
    directory = paths.run / "vantage"
    directory.mkdir(parents=True, exist_ok=True)
    for node in topo.of_kind("client"):
        path = directory / node.name
        path.write_text(f"#!/bin/sh\n# Python in the network namespace of lab client {node.name} (written by "
                        f"anycast-lab up).\nexec ip netns exec {node.netns} {sys.executable} \"$@\"\n")
        path.chmod(0o755)


def _write_state(topo: Topology, paths: StatePaths, images: dict[str, Image]) -> None:
    state = {"topology": topo.name, "digest": _lab_digest(), "started": time.time(),
             "images": {k: str(v.path) for k, v in images.items()}, "ssh_key": str(paths.ssh_key),
             "debian": {n.name: n.debian for n in topo.machines()}}
    paths.state_file.write_text(json.dumps(state, indent=1))


def _read_state(paths: StatePaths) -> dict:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}


def running_releases(topo: Topology, paths: StatePaths | None = None) -> dict[str, int]:
    """The Debian release each machine runs now: the topology's, or another one after `reimage`."""
    recorded = _read_state(paths or state_paths()).get("debian", {})
    return {n.name: int(recorded.get(n.name, n.debian)) for n in topo.machines()}


def _image_for(images: dict[str, Image], node: Node) -> Image:
    return images["router"] if node.kind == "router" else images[f"server{node.debian}"]


def up(topo: Topology | None = None, paths: StatePaths | None = None) -> float:
    """Bring the whole lab up (a stale lab is removed first). Returns the seconds it took."""
    topo = topo or load()
    paths = paths or state_paths()
    started = time.monotonic()
    _preflight(topo)
    if _running_lab_is_current(topo, paths):
        progress("the lab is already up, every node is running and its topology is unchanged; nothing to do")
        moved = {name: rel for name, rel in running_releases(topo, paths).items() if rel != topo.nodes[name].debian}
        if moved:
            progress("re-imaged since: " + ", ".join(f"{name} runs Debian {rel} (topology: {topo.nodes[name].debian})"
                                                     for name, rel in sorted(moved.items()))
                     + "; 'anycast-lab down' then 'up' to start over from the topology")
        _write_vantage(topo, paths)
        return time.monotonic() - started
    if any(leftovers(paths).values()):
        progress("removing a stale lab first")
        down(paths)
    images = ensure_images(paths, {n.debian for n in topo.of_kind("server")})
    _raise_host_limits()
    _ensure_cgroup2()
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.machines.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "anycast-lab", "-f", str(paths.ssh_key)])
    pubkey = paths.ssh_key.with_suffix(".pub").read_text()
    progress(f"creating {len(topo.nodes) + len(topo.lans)} network namespaces and their links")
    _create_namespaces(topo)
    _wire(topo)
    aptcache.start(paths, topo)
    progress(f"starting {len(topo.machines())} machines")
    for node in topo.machines():
        _start_machine(topo, node, _image_for(images, node), paths, pubkey)
    _wait_booted(topo)
    _write_vantage(topo, paths)
    _write_state(topo, paths, images)
    elapsed = time.monotonic() - started
    progress(f"lab is up in {elapsed:.0f} s: {len(topo.machines())} machines, "
             f"{len(topo.of_kind('client'))} clients")
    return elapsed


# --------------------------------------------------------------------------- status and exec


def status(topo: Topology | None = None) -> list[dict]:
    topo = topo or load()
    releases = running_releases(topo)
    pids = nspawn_pids()
    namespaces = set(lab_netns())
    with ThreadPoolExecutor(max_workers=8) as pool:
        states = dict(zip(topo.nodes, pool.map(
            lambda n: machine_state(topo.nodes[n], pids) if topo.nodes[n].is_machine else None, topo.nodes),
            strict=True))
    out = []
    for node in topo.nodes.values():
        state = states[node.name] if node.is_machine else ("running" if node.netns in namespaces else "stopped")
        if node.netns not in namespaces:
            state = "stopped"
        out.append({"name": node.name, "kind": node.kind, "role": node.role, "city": node.city,
                    "netns": node.netns, "mgmt": str(node.mgmt) if node.mgmt else None, "state": state,
                    "debian": releases.get(node.name)})
    return out


def exec_argv(topo: Topology, name: str, cmd: list[str]) -> list[str]:
    """The host command that runs CMD inside a node (machine: all its namespaces; client: its netns)."""
    if name not in topo.nodes:
        raise LabError(f"no node {name!r} in the topology (known: {', '.join(sorted(topo.nodes))})")
    node = topo.nodes[name]
    if not cmd:
        raise LabError("nothing to run: anycast-lab exec NODE -- CMD ...")
    if node.kind == "client":
        if node.netns not in lab_netns():
            raise LabError(f"{name} is not running (is the lab up?)")
        return ["ip", "netns", "exec", node.netns, *cmd]
    pid = nspawn_pids().get(name)
    leader = leader_pid(pid) if pid else None
    if leader is None:
        raise LabError(f"{name} is not running (is the lab up?)")
    return ["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "--", "/usr/bin/env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", *cmd]


@functools.cache
def _topology() -> Topology:
    return load()


def node_argv(node: str, argv: list[str]) -> list[str]:
    """exec_argv with the lab's topology read once per process: the bench and the tests run hundreds
    of commands in the lab's nodes from their own process (starting the CLI for each cost 0.13-0.2 s
    on an idle host). LabError when NODE is unknown or not running."""
    return exec_argv(_topology(), node, list(argv))


def node_run(node: str, argv: list[str], *, check: bool = True, timeout: float = 120,
             input_text: str | None = None) -> subprocess.CompletedProcess:
    """`anycast-lab exec NODE -- ARGV` from this process (shell.run's errors)."""
    return run(node_argv(node, argv), check=check, timeout=timeout, input_text=input_text)


def routers_config_current(topo: Topology) -> bool:
    return all((ROUTER_CONFIG_DIR / f"{n.name}.conf").read_text() == routers.render(topo, n)
               for n in topo.of_kind("router"))


def _machine(topo: Topology, name: str) -> Node:
    node = topo.nodes.get(name)
    if node is None or not node.is_machine:
        raise LabError(f"{name!r} is not a machine of the lab")
    return node


def _running_machine(topo: Topology, name: str) -> tuple[Node, int]:
    """The machine NAME and its nspawn PID; an error unless it runs under its supervisor."""
    node = _machine(topo, name)
    pid = nspawn_pids().get(name)
    if pid is None or name not in supervisor_pids():
        raise LabError(f"{name} is not running (is the lab up?)")
    return node, pid


def _wait_running(node: Node, old_pid: int | None, started: float, timeout: float, event: str) -> float:
    """Wait until NODE runs again in an nspawn other than OLD_PID; seconds since STARTED."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        pids = nspawn_pids()
        if node.name not in supervisor_pids():
            raise LabError(f"{node.name} did not come back from its {event} (see its console.log)")
        if pids.get(node.name) not in (None, old_pid) and machine_state(node, pids) == "running":
            return time.monotonic() - started
        time.sleep(0.3)
    raise LabError(f"{node.name} not running again {timeout:.0f} s after its {event}")


def reboot(topo: Topology, name: str, timeout: float = BOOT_TIMEOUT_S) -> float:
    """Reboot a machine from inside (`systemctl reboot`) and wait until it runs again. Returns seconds."""
    node, old = _running_machine(topo, name)
    started = time.monotonic()
    run(exec_argv(topo, name, ["systemctl", "reboot"]), check=False, timeout=30)
    return _wait_running(node, old, started, timeout, "reboot")


def poweroff(topo: Topology, name: str, paths: StatePaths | None = None, max_off: float = 300) -> None:
    """Pull the plug of a machine: every link goes silent (carrier up, nothing in or out, as
    behind a switch) and every process of the machine dies at once, so nothing says goodbye:
    no BGP NOTIFICATION, no last BFD packet. `poweron` boots it again; so does the supervisor
    by itself after MAX_OFF seconds."""
    _, pid = _running_machine(topo, name)
    paths = paths or state_paths()
    leader = leader_pid(pid)
    if leader is None:
        raise LabError(f"{name} has no running init to stop")
    marker = paths.machines / name / supervise.POWERED_OFF
    marker.write_text(f"{time.time() + min(max_off, supervise.MAX_OFF_S):.0f}\n")
    for iface in faults.links(topo, name):
        faults.silence(topo, name, iface)
    os.kill(leader, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while nspawn_pids().get(name) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if nspawn_pids().get(name) == pid:
        raise LabError(f"{name} still running 30 s after its power was cut")


def poweron(topo: Topology, name: str, paths: StatePaths | None = None, timeout: float = BOOT_TIMEOUT_S) -> float:
    """Power a machine on again after `poweroff` and wait until it runs. Returns seconds."""
    node = _machine(topo, name)
    paths = paths or state_paths()
    marker = paths.machines / name / supervise.POWERED_OFF
    if name not in supervisor_pids():
        raise LabError(f"{name} has no supervisor (is the lab up?)")
    started = time.monotonic()
    for iface in faults.silenced(topo, name):
        faults.restore(topo, name, iface)
    if marker.exists():
        marker.unlink()
    return _wait_running(node, None, started, timeout, "power-on")


def reimage(topo: Topology, name: str, release: int, paths: StatePaths | None = None,
            timeout: float = BOOT_TIMEOUT_S) -> float:
    """Re-create the server NAME on Debian RELEASE: the machine is shut down, its disk (the overlay's
    upper layer) thrown away, and a fresh machine booted from the release's base image with the same
    name, addresses, links and SSH key, as a data centre re-images a server. Nothing of the old
    disk survives (packages, configs, the drain flag). Returns the seconds it took."""
    paths = paths or state_paths()
    node, pid = _running_machine(topo, name)
    if node.kind != "server":
        raise LabError(f"{name} is a {node.kind}; only servers are re-imaged (the routers all run one image)")
    started = time.monotonic()
    image = ensure_base(paths, release)  # the base alone: the routers' layers stay as they are
    progress(f"re-imaging {name}: Debian {running_releases(topo, paths)[name]} -> {release}, a fresh disk")
    # The supervisor first, so that it does not boot the old disk again; then the machine.
    supervisor = supervisor_pids().get(name)
    if supervisor:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while nspawn_pids().get(name) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if nspawn_pids().get(name) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Whatever of the old machine still runs (nspawn killed before its machine was down) dies with
    # its cgroup: nothing of the old disk may keep serving in the machine's namespace.
    cgroup = lab_cgroup() / name if lab_cgroup() else None
    if cgroup is not None and (cgroup / "cgroup.kill").exists():
        (cgroup / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _cgroup_busy(cgroup):
            time.sleep(0.1)
    base = paths.machines / name
    root = base / "root"
    if run(["umount", str(root)], check=False).returncode != 0:
        run(["umount", "-l", str(root)], check=False)
    for sub in ("upper", "work", "root"):
        shutil.rmtree(base / sub, ignore_errors=True)
    _remove_cgroups(name)
    for iface in faults.silenced(topo, name):
        faults.restore(topo, name, iface)
    supervise.reset_volatile_network(node.netns)
    pubkey = paths.ssh_key.with_suffix(".pub").read_text()
    _start_machine(topo, node, image, paths, pubkey)
    state = _read_state(paths)
    state.setdefault("debian", {})[name] = release
    paths.state_file.write_text(json.dumps(state, indent=1))
    _wait_running(node, pid, started, timeout, "re-image")
    took = time.monotonic() - started
    progress(f"{name} runs Debian {release} on a fresh disk ({took:.0f} s); converge it with the roles")
    return took
