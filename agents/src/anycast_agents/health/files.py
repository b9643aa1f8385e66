"""The files anycast-health shares with keepalived, knot.service's drop-in and the operator."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os


def read_flag(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def write_atomic(path: str, text: str) -> None:
    """Replace PATH with TEXT in one rename, so a reader never sees half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def drain_lock(state_dir: str):
    """Serialises changes of the drain flag (drain, undrain, the daemon noting its withdrawal)."""
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "drain.lock"), "w", encoding="ascii") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_drain(state_dir: str) -> dict | None:
    """The drain flag: {'since': epoch seconds, 'wait': seconds}, or None when not drained.

    Once the daemon has withdrawn for the drain it adds 'withdrawn_at' (and what it measured), so
    that a restarted daemon keeps the node withdrawn however long the drain's wait was."""
    path = os.path.join(state_dir, "drain")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        out = {"since": float(data["since"]), "wait": float(data["wait"])}
        if data.get("withdrawn_at") is not None:
            out["withdrawn_at"] = float(data["withdrawn_at"])
            out["why"] = str(data.get("why") or "")
            for key in ("rate_before", "rate_after"):
                out[key] = float(data[key]) if data.get(key) is not None else None
        return out
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A flag nobody can read is still a flag: drained at once, the safe reading.
        return {"since": 0.0, "wait": 0.0}
