"""Running commands: argument lists, C locale, clear errors, optional network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ENV = dict(os.environ, LANG="C", LC_ALL="C", LANGUAGE="C")


class LabError(RuntimeError):
    """A failure the CLI reports as one clear line and exit code 1."""


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 600, input_text: str | None = None,
        netns: str | None = None) -> subprocess.CompletedProcess:
    argv = list(cmd)
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, input=input_text,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {argv[0]} (run 'make setup' as root)") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise LabError(f"'{' '.join(argv)}' failed (rc={proc.returncode}): " + " | ".join(detail))
    return proc


def processes():
    """(pid, argv) of every process on the host, skipping those that vanish while read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        yield int(entry.name), argv


def progress(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)
