"""Where the lab keeps its state, and the names it gives to kernel objects.

Every kernel object the lab creates carries the PREFIX, so `down` can find and remove
them even when the state file is gone (a crashed or killed `up`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "alab-"  # network namespaces, bridges, nspawn machine names
REPO = Path(__file__).resolve().parents[2]
LAB_DIR = REPO / "lab"
# Seed 002's health recipe on a PoP server and the way back (make bench's side by side): the lab's
# own playbook, since the collection's anycast_health role knows only its daemon.
SEED002_PLAYBOOK = LAB_DIR / "playbooks" / "seed002.yml"
# A different lab (make bench's scaled lab, lab/anycast_lab/scale.py) is named by the environment.
TOPOLOGY_FILE = Path(os.environ.get("ANYCAST_LAB_TOPOLOGY") or LAB_DIR / "topology.yml")
ROUTER_CONFIG_DIR = Path(os.environ.get("ANYCAST_LAB_ROUTERS") or LAB_DIR / "routers")


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def machines(self) -> Path:
        return self.root / "machines"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def ssh_key(self) -> Path:
        return self.run / "id_ed25519"

    @property
    def acng(self) -> Path:
        return self.run / "apt-cacher-ng"

    @property
    def acng_cache(self) -> Path:
        # Kept across labs: packages are fetched once.
        return self.root / "apt-cache"


def state_paths() -> StatePaths:
    return StatePaths(Path(os.environ.get("ANYCAST_LAB_DIR", "/var/lib/anycast-lab")))
