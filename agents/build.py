#!/usr/bin/env python3
"""Build the agents' zipapp: dist/anycast-agents-<version>.pyz (or --out DIR).

The same sources always give the same bytes (entries sorted, fixed timestamps and modes), so the
file's SHA-256 identifies a version. It runs on the node's own python3 (3.9 and later) and uses the
node's python3-dnspython and python3-prometheus-client; nothing else is bundled."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "src" / "anycast_agents"
SHEBANG = b"#!/usr/bin/python3\n"
STAMP = (1980, 1, 1, 0, 0, 0)
MAIN = b"from anycast_agents.__main__ import main\nimport sys\nsys.exit(main())\n"


def version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (SOURCE / "__init__.py").read_text(), re.M)
    if not match:
        raise SystemExit("build: no __version__ in anycast_agents/__init__.py")
    return match.group(1)


def _entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, STAMP)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"anycast-agents-{version()}.pyz"
    tmp = target.with_suffix(".pyz.tmp")
    files = sorted(p for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts)
    with open(tmp, "wb") as fh:
        fh.write(SHEBANG)
        with zipfile.ZipFile(fh, "w") as zf:
            _entry(zf, "__main__.py", MAIN)
            for path in files:
                _entry(zf, path.relative_to(SOURCE.parent).as_posix(), path.read_bytes())
    tmp.chmod(0o755)
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dist", help="directory of the zipapp (default: dist)")
    parser.add_argument("--print-version", action="store_true", help="print the version and exit")
    args = parser.parse_args(argv)
    if args.print_version:
        print(version())
        return 0
    target = build(args.out)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"build: {target} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
