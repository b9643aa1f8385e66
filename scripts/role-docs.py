#!/usr/bin/env python3
"""Write each role's variable table into its README from meta/argument_specs.yml, with the
platforms that meta/main.yml lists (the platforms the lab tests).

The table goes between the markers below (added after the README's text when missing); every
option of the `main` entry point is a row (type, default, description), and the options of a dict
are rows of their own (`var.key`). `--check` changes nothing and fails, naming the README, when a
table is not what the argument specs say (make check runs it).

Usage: role-docs.py [--check] [ROLES_DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN generated from meta/argument_specs.yml by scripts/role-docs.py -->"
END = "<!-- END generated from meta/argument_specs.yml -->"
MARKUP = re.compile(r"\b([CVOIEMLU])\(([^()]*)\)")


def prose(text: str) -> str:
    """Ansible's documentation markup (C(), V(), O(), I(), E(), M()) as Markdown, on one line."""

    def repl(match: re.Match) -> str:
        kind, inner = match.group(1), match.group(2)
        return f"*{inner}*" if kind == "I" else f"`{inner}`"

    return MARKUP.sub(repl, " ".join(text.split())).replace("|", "\\|")


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return "`" + text.replace("|", "\\|") + "`"


def rows(options: dict, prefix: str = "") -> list[str]:
    out = []
    for name, spec in options.items():
        description = spec.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        kind = spec.get("type", "str")
        if kind == "list" and spec.get("elements"):
            kind = f"list of {spec['elements']}"
        extra = []
        if spec.get("choices"):
            extra.append("one of " + ", ".join(f"`{c}`" for c in spec["choices"]))
        if spec.get("required"):
            extra.append("required")
        text = prose(description) + (" (" + "; ".join(extra) + ")" if extra else "")
        out.append(f"| `{prefix}{name}` | {kind} | {cell(spec.get('default'))} | {text} |")
        if spec.get("options"):
            out += rows(spec["options"], f"{prefix}{name}.")
    return out


DEBIAN_MAJOR = {"bookworm": 12, "trixie": 13}


def platforms(role: Path) -> str:
    """The platforms of meta/main.yml, as a sentence."""
    meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
    parts = []
    for platform in meta["galaxy_info"].get("platforms", []):
        versions = [f"{v} ({DEBIAN_MAJOR[v]})" if v in DEBIAN_MAJOR else str(v) for v in platform["versions"]]
        parts.append(f"{platform['name']} {', '.join(versions)}")
    return "; ".join(parts)


def table(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    head = [f"Platforms (meta/main.yml; the lab runs each one): {platforms(role)}.", ""]
    header = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    lines = [BEGIN, *head, *header, *rows(specs.get("options", {})), END]
    return "\n".join(lines)


def render(readme: str, generated: str) -> str:
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        return head + generated + rest.split(END, 1)[1]
    return readme.rstrip("\n") + "\n\n## Variables\n\n" + generated + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when a table is out of date")
    parser.add_argument("roles", nargs="?", type=Path, default=REPO / "roles")
    args = parser.parse_args(argv)
    stale = []
    for role in sorted(p for p in args.roles.iterdir() if (p / "meta" / "argument_specs.yml").is_file()):
        readme = role / "README.md"
        current = readme.read_text() if readme.exists() else f"# {role.name}\n"
        wanted = render(current, table(role))
        if wanted != current:
            stale.append(str(readme))
            if not args.check:
                readme.write_text(wanted)
    if stale and args.check:
        print("role-docs: out of date (run scripts/role-docs.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    if stale:
        print("role-docs: wrote " + ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
