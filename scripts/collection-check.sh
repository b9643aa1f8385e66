#!/usr/bin/env bash
# The anycast.dns collection's own ecosystem checks (make collection-check, part of make check):
# generated docs up to date, antsibull-changelog lint, antsibull-docs lint-collection-docs,
# ansible-test sanity and units (each in the virtual environments ansible-test makes), the
# collection build and `ansible-builder create` of the execution environment.
# Needs the virtualenv on PATH (the Makefile puts it there) and the agents' zipapp built.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
coll=$repo/collections/ansible_collections/anycast/dns
step() { printf '\n== collection-check: %s\n' "$*"; }

step "role READMEs generated from meta/argument_specs.yml"
python "$repo/scripts/role-docs.py" --check
python "$repo/scripts/inventory-doc.py" --check

cd "$coll"
step "antsibull-changelog lint"
antsibull-changelog lint

step "antsibull-docs lint-collection-docs --plugin-docs"
antsibull-docs lint-collection-docs --plugin-docs .

# ansible-test bootstraps pip in its environments from a download this network lacks.
python "$repo/scripts/ansible-test-get-pip.py"
step "ansible-test sanity (every test that runs offline)"
ansible-test sanity --venv --python 3.11 --color no
step "ansible-test units"
ansible-test units --venv --python 3.11 --color no

cd "$repo"
step "collection build (dist/) and ansible-builder create (ee/context)"
make --no-print-directory ee
