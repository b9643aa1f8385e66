#!/usr/bin/env python3
"""Give ansible-test the pip bootstrap script it downloads from ci-files.testing.ansible.com,
which this network does not reach.

ansible-test bootstraps pip in each virtual environment it makes by running a cached
`get_pip_<version>.py` (in ~/.ansible/test/cache) with pip's install options. This writes, under
the name ansible-test looks for, a script of our own that does the same from what Python ships:
`ensurepip` puts the bundled pip into the environment, which then installs the pip version
ansible-test asked for (and anything else on its command line) from the package index.

Usage: ansible-test-get-pip.py [PYTHON]  (PYTHON: the interpreter whose ansible_test to read;
default: this one). Idempotent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

STAND_IN = '''\
"""Stand-in for get-pip.py (written by scripts/ansible-test-get-pip.py): ensurepip, then pip install."""
import ensurepip
import os
import sys

before = os.environ.get("PIP_CONFIG_FILE")
ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; pip install must read the
# machine's pip configuration again (its index, its certificate authorities).
if before is None:
    os.environ.pop("PIP_CONFIG_FILE", None)
else:
    os.environ["PIP_CONFIG_FILE"] = before
from pip._internal.cli.main import main  # noqa: E402 - pip exists only after the bootstrap

# get-pip.py's own options (what not to install besides pip) mean nothing to pip install.
OWN = {"--no-setuptools", "--no-wheel"}
sys.exit(main(["install", *(arg for arg in sys.argv[1:] if arg not in OWN)]))
'''


def pip_version(python: str) -> str:
    """The pip version ansible-test bootstraps (get_venv_packages in its python_requirements.py)."""
    source = subprocess.run(
        [python, "-c", "import ansible_test, pathlib; print(pathlib.Path(ansible_test.__file__).parent)"],
        capture_output=True, text=True, check=True).stdout.strip()
    text = (Path(source) / "_internal" / "python_requirements.py").read_text()
    match = re.search(r"default_packages = dict\(\s*pip='([\d.]+)'", text)
    if not match:
        raise SystemExit("ansible-test-get-pip: cannot find the pip version ansible-test bootstraps")
    return match.group(1)


def main() -> int:
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    version = pip_version(python)
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"get_pip_{version.replace('.', '_')}.py"
    if not target.exists() or target.read_text() != STAND_IN:
        target.write_text(STAND_IN)
        print(f"ansible-test-get-pip: wrote {target} (pip {version} through ensurepip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
