"""One zipapp, several commands: called through a link named anycast-health,
anycast-knot-exporter, anycast-firewall-counters or anycast-collector-exporter (or with that name
as its first argument), it runs that command."""

from __future__ import annotations

import os
import sys

from . import __version__

COMMANDS = ("anycast-health", "anycast-knot-exporter", "anycast-firewall-counters", "anycast-collector-exporter")


def run(name: str, argv: list[str]) -> int:
    if name == "anycast-health":
        from .health.cli import main  # noqa: PLC0415 - each command loads only what it needs
    elif name == "anycast-firewall-counters":
        from .firewall_counters import main  # noqa: PLC0415
    elif name == "anycast-collector-exporter":
        from .collector_exporter import main  # noqa: PLC0415
    else:
        from .knot_exporter import main  # noqa: PLC0415
    return main(argv)


def main() -> int:
    name = os.path.basename(sys.argv[0])
    if name in COMMANDS:
        return run(name, sys.argv[1:])
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        return run(sys.argv[1], sys.argv[2:])
    if sys.argv[1:] == ["--version"]:
        print(f"anycast-agents {__version__}")
        return 0
    print(f"anycast-agents {__version__}: run as {', '.join(COMMANDS)} (a link to this file), or give the "
          "command's name as the first argument", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
