#!/usr/bin/env python3
"""Run the agents' tests (agents/tests) on each platform's Python and libraries.

The agents run on the nodes' own python3 with the distribution's dnspython and prometheus_client,
so they are tested on exactly those versions (the oldest each supported platform ships), and on the
newest releases:

    el9        Python 3.9,  dnspython 2.1.0, prometheus-client 0.13.1   (EL 9, EPEL)
    debian12   Python 3.11, dnspython 2.3.0, prometheus-client 0.16.0   (bookworm)
    debian13   Python 3.13, dnspython 2.7.0, prometheus-client 0.21.1   (trixie)
    newest     Python 3.13, the newest releases of both

Each gets a virtualenv in .venv-agents/<name> (made once, again when its pins change). An
interpreter that is not on this machine (pythonX.Y on PATH, or pyenv's) fails the run unless
--skip-missing is given.

Usage: agents-test.py [--only NAME,...] [--skip-missing] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".venv-agents"
PYTEST = "pytest==8.4.2"  # the last pytest that runs on Python 3.9
MATRIX = {
    "el9": ("3.9", ["dnspython==2.1.0", "prometheus-client==0.13.1"]),
    "debian12": ("3.11", ["dnspython==2.3.0", "prometheus-client==0.16.0"]),
    "debian13": ("3.13", ["dnspython==2.7.0", "prometheus-client==0.21.1"]),
    "newest": ("3.13", ["dnspython==2.9.2", "prometheus-client==0.26.0"]),
}


def interpreter(version: str) -> str | None:
    """A working pythonX.Y: pyenv's, else the one on PATH (a pyenv shim of a version not selected
    fails to run, hence the check)."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))[::-1]
    on_path = shutil.which(f"python{version}")
    for python in [*candidates, *([on_path] if on_path else [])]:
        probe = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                               text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(int(x) for x in version.split("."))):
            return python
    return None


def venv(name: str, python: str, pins: list[str]) -> Path:
    target = VENVS / name
    stamp = target / ".pins"
    wanted = "\n".join([python, PYTEST, *pins]) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(target)], check=True)
    subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    PYTEST, *pins], check=True)
    stamp.write_text(wanted)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated names of the matrix (default: all)")
    parser.add_argument("--skip-missing", action="store_true", help="skip a Python this machine does not have")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(MATRIX)
    unknown = [n for n in names if n not in MATRIX]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (known: {', '.join(MATRIX)})")
    failed = []
    for name in names:
        version, pins = MATRIX[name]
        python = interpreter(version)
        if python is None:
            message = f"agents-test: {name}: no Python {version} on this machine (python{version} or pyenv)"
            if args.skip_missing:
                print(message + ": skipped", file=sys.stderr)
                continue
            print(message, file=sys.stderr)
            return 2
        env_dir = venv(name, python, pins)
        print(f"agents-test: {name}: Python {version}, {', '.join(pins)}", flush=True)
        env = dict(os.environ, PYTHONPATH=str(REPO / "agents" / "src"), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               str(REPO / "agents" / "tests"), *args.pytest_args], env=env, check=False)
        if proc.returncode != 0:
            failed.append(name)
    if failed:
        print(f"agents-test: failed on {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
