#!/usr/bin/env python3
"""Write the table of values the inventory rules check by type and range (inventory_rules.FIELDS)
into the collection's docs/inventory-model.md, between the markers below.

`--check` changes nothing and fails when the document is not what the rules check (make check
runs it; a unit test of the collection compares the same).

Usage: inventory-doc.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.anycast.dns.plugins.plugin_utils import inventory_rules  # noqa: E402

DOC = REPO / "collections/ansible_collections/anycast/dns/docs/inventory-model.md"
BEGIN = "<!-- BEGIN generated from plugins/plugin_utils/inventory_rules.py (FIELDS) by scripts/inventory-doc.py -->"
END = "<!-- END generated from inventory_rules.py -->"


def render(text: str) -> str:
    """TEXT with the block between the markers replaced by the rules' table."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"inventory-doc: {DOC} lacks the markers {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{inventory_rules.fields_markdown()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when the document is stale")
    args = parser.parse_args()
    text = DOC.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"inventory-doc: out of date (run scripts/inventory-doc.py): {DOC}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new)
        print(f"inventory-doc: wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
