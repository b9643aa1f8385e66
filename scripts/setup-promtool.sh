#!/usr/bin/env bash
# Put promtool (Prometheus's rule and config checker) into the virtualenv: taken out of Debian's
# `prometheus` package without installing it, so that no Prometheus server runs on this machine.
# Usage: setup-promtool.sh DEST_BIN_DIR. Idempotent; needs apt's package lists, not root.
set -euo pipefail
dest=$(realpath "${1:?usage: setup-promtool.sh DEST_BIN_DIR}")
if [ -x "$dest/promtool" ] && "$dest/promtool" --version >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -q prometheus >/dev/null 2>apt.err; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get download -q prometheus >/dev/null
  else
    echo "setup: cannot download Debian's prometheus package for promtool:" >&2
    cat apt.err >&2
    echo "setup: run 'make setup' as root (it refreshes apt's lists) or install promtool into $dest" >&2
    exit 1
  fi
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$dest/promtool"
echo "setup: $("$dest/promtool" --version 2>&1 | head -n1) in $dest"
