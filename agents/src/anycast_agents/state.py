"""state.json: what anycast-health decided, for `anycast-health status` and the collection's
modules (node_status, drain). Versioned: a reader that does not know the schema refuses it
instead of misreading it."""

from __future__ import annotations

import json
import os
from typing import Any

# 1: {"schema", "version", "time", "drain", "families": {name: {...}}} (anycast-agents 0.5.0).
SCHEMA = 1


class SchemaError(ValueError):
    """A state.json this code does not know how to read."""


def document(now: float, drain: dict | None, families: dict[str, dict], version: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "version": version, "time": now, "drain": drain, "families": families}


def read(path: str) -> dict | None:
    """The state in PATH; None when there is none (daemon not running); SchemaError when it is of
    a schema this code does not know."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    check(data, path)
    return data


def check(data: Any, where: str = "state.json") -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise SchemaError(f"{where}: schema {found!r}, this anycast-health reads schema {SCHEMA}")


def write(path: str, data: dict) -> None:
    """Replace PATH in one rename, so a reader never sees half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
