"""The machine images: a Debian base per release (12 bookworm, 13 trixie) made with debootstrap,
a router layer with FRR and a resolver layer with Unbound (both over the Debian 12 base).

Each image lives in a directory named after its release and the hash of its recipe, so an image is
rebuilt exactly when its recipe changes. The router and resolver images are overlay layers over a base.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import StatePaths
from .shell import LabError, progress, run

# Debian releases the lab can boot, by major version. The routers and the resolver stay on
# ROUTER_RELEASE (the Internet is not ours to upgrade); servers name theirs in the topology.
SUITES = {12: "bookworm", 13: "trixie"}
ROUTER_RELEASE = 12
BASE_INCLUDE = ["systemd-sysv", "dbus", "apt-utils", "ca-certificates"]
# What a freshly installed Debian server has, for Ansible to manage over SSH.
BASE_PACKAGES = [
    "network-manager", "libpam-systemd", "openssh-server", "python3", "python3-apt", "iproute2",
    "iputils-ping", "procps", "sudo", "less", "curl", "dnsutils", "traceroute", "tcpdump",
]
# frr-rpki-rtrlib: bgpd's RPKI module (route origin validation over RTR); stayrtr: the lab's RPKI
# cache, enabled on the topology's cache router only (lab/anycast_lab/rpki.py).
ROUTER_PACKAGES = ["frr", "frr-pythontools", "frr-rpki-rtrlib", "stayrtr"]
RESOLVER_PACKAGES = ["unbound"]
RECIPE_VERSION = 3  # bump when the build steps below change

NM_CONF = """\
# anycast-lab: the lab wires every link from outside. The management interface stays the lab's;
# NetworkManager manages the others as on a real server: through the roles' profiles (lo, a PoP
# server's upstream links) or, without one, it assumes what it finds and leaves it alone.
[main]
no-auto-default=*

[keyfile]
unmanaged-devices=interface-name:mgmt0
"""

MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer",
    "console-getty.service", "getty@tty1.service", "systemd-timesyncd.service",
]


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URL the host itself uses (apt sources, one-line or deb822)."""
    candidates = []
    for path in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        candidates += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, flags=re.M)
        candidates += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
    for url in candidates:
        if url.startswith("http") and "security" not in url:
            return url.rstrip("/")
    return "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Image:
    name: str
    path: Path  # a root tree (base) or an overlay upper layer (router)
    layers: tuple[Path, ...]  # lowerdir order for overlayfs: top first


def _recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_recipe(mirror: str, release: int) -> dict:
    return {"suite": SUITES[release], "include": BASE_INCLUDE, "packages": BASE_PACKAGES, "mirror": mirror,
            "nm": NM_CONF, "masked": MASKED_UNITS, "version": RECIPE_VERSION}


def router_recipe(base_hash: str) -> dict:
    return {"base": base_hash, "packages": ROUTER_PACKAGES, "version": RECIPE_VERSION}


def resolver_recipe(base_hash: str) -> dict:
    return {"base": base_hash, "packages": RESOLVER_PACKAGES, "version": RECIPE_VERSION}


def _nspawn_run(root: Path, *cmd: str, timeout: float = 1200) -> None:
    run(["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--resolv-conf=copy-host", "--timezone=off",
         "-D", str(root), "--setenv=DEBIAN_FRONTEND=noninteractive", *cmd], timeout=timeout)


def _prune_old(images_dir: Path, prefix: str, keep: str) -> None:
    for old in images_dir.glob(prefix + "-*"):
        if old.name != keep and not old.name.endswith(".building"):
            shutil.rmtree(old, ignore_errors=True)


def _check_release(release: int) -> str:
    if release not in SUITES:
        known = ", ".join(f"{number} ({suite})" for number, suite in SUITES.items())
        raise LabError(f"Debian {release} is not a release the lab can build; it knows {known}")
    return SUITES[release]


def ensure_base(paths: StatePaths, release: int = ROUTER_RELEASE) -> Image:
    """The base image of Debian RELEASE (12 or 13), built once per recipe."""
    suite = _check_release(release)
    mirror = host_mirror()
    recipe = base_recipe(mirror, release)
    name = f"base{release}"
    digest = _recipe_hash(recipe)
    final = paths.images / f"{name}-{digest}"
    legacy = paths.images / f"base-{digest}"  # the same recipe, built before images named their release
    if (legacy / ".complete").exists() and not final.exists():
        legacy.rename(final)
    if (final / ".complete").exists():
        return Image(name, final, (final,))
    paths.images.mkdir(parents=True, exist_ok=True)
    tmp = paths.images / f"{name}-{digest}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    progress(f"building the Debian {release} ({suite}) base image from {mirror} (debootstrap, a few minutes, once)")
    run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_INCLUDE), suite, str(tmp), mirror],
        timeout=1800)
    (tmp / "etc/apt/sources.list").write_text(f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n")
    progress("base image: installing " + " ".join(BASE_PACKAGES))
    _nspawn_run(tmp, "apt-get", "install", "-y", "-q", "--no-install-recommends", *BASE_PACKAGES)
    _nspawn_run(tmp, "apt-get", "clean")
    (tmp / "etc/NetworkManager/conf.d").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/NetworkManager/conf.d/90-anycast-lab.conf").write_text(NM_CONF)
    for unit in MASKED_UNITS:
        link = tmp / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for path in ("etc/hostname", "etc/machine-id", "var/lib/dbus/machine-id"):
        (tmp / path).unlink(missing_ok=True)
    (tmp / "etc/machine-id").write_text("")  # a fresh id per boot, per machine
    (tmp / ".complete").write_text(json.dumps(recipe, indent=1))
    tmp.rename(final)
    _prune_old(paths.images, name, final.name)
    _prune_old(paths.images, "base", "")  # images of recipe 3 and older, named base-<hash>
    progress(f"Debian {release} base image ready in {time.monotonic() - started:.0f} s")
    return Image(name, final, (final,))


def _ensure_layer(paths: StatePaths, base: Image, name: str, recipe: dict, packages: list[str], *,
                  masked: tuple[str, ...] = (), disabled: tuple[str, ...] = ()) -> Image:
    """An overlay layer over the base with PACKAGES installed (MASKED units masked, DISABLED units
    not started at boot unless a machine enables them), built once per recipe."""
    digest = _recipe_hash(recipe)
    final = paths.images / f"{name}-{digest}"
    if (final / ".complete").exists():
        return Image(name, final, (final / "upper", base.path))
    tmp = paths.images / f"{name}-{digest}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("upper", "work", "merged"):
        (tmp / sub).mkdir(parents=True)
    started = time.monotonic()
    progress(f"building the {name} image layer ({', '.join(packages)})")
    merged = tmp / "merged"
    run(["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={base.path},upperdir={tmp / 'upper'},workdir={tmp / 'work'}", str(merged)])
    try:
        _nspawn_run(merged, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages)
        _nspawn_run(merged, "apt-get", "clean")
        for unit in masked:
            link = merged / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        for unit in disabled:
            for link in (merged / "etc/systemd/system").glob(f"*.wants/{unit}"):
                link.unlink()
    finally:
        run(["umount", str(merged)], check=False)
    shutil.rmtree(tmp / "work", ignore_errors=True)
    shutil.rmtree(tmp / "merged", ignore_errors=True)
    (tmp / ".complete").write_text(json.dumps(recipe))
    tmp.rename(final)
    _prune_old(paths.images, name, final.name)
    progress(f"{name} image ready in {time.monotonic() - started:.0f} s")
    return Image(name, final, (final / "upper", base.path))


def ensure_router(paths: StatePaths, base: Image) -> Image:
    # Routers are wired by the lab; NetworkManager must not touch them.
    return _ensure_layer(paths, base, "router", router_recipe(base.path.name), ROUTER_PACKAGES,
                         masked=("NetworkManager.service",), disabled=("stayrtr.service",))


def ensure_resolver(paths: StatePaths, base: Image) -> Image:
    """Unbound, run on demand in a client's namespace (anycast-lab resolve); never booted."""
    return _ensure_layer(paths, base, "resolver", resolver_recipe(base.path.name), RESOLVER_PACKAGES,
                         masked=("unbound.service", "unbound-resolvconf.service"))


def ensure_images(paths: StatePaths, server_releases: set[int]) -> dict[str, Image]:
    """Every image a lab needs: "server12", "server13" (the releases its servers run), "router",
    "resolver"."""
    missing = [tool for tool in ("debootstrap", "systemd-nspawn") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run 'make setup' as root")
    router_base = ensure_base(paths, ROUTER_RELEASE)
    images = {"router": ensure_router(paths, router_base), "resolver": ensure_resolver(paths, router_base)}
    for release in sorted(server_releases):
        images[f"server{release}"] = router_base if release == ROUTER_RELEASE else ensure_base(paths, release)
    return images
