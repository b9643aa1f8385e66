# anycast-dns: every entry point. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

# Debian packages the controller and the lab need (installed by `make setup` when root).
APT_PACKAGES := python3 python3-venv git make iproute2 iputils-ping openssh-client nftables \
                systemd-container debootstrap apt-cacher-ng nmap dnsperf

# The agents (agents/: anycast-health, anycast-knot-exporter) as the zipapp the agents role installs.
AGENTS_VERSION := $(shell $(PYTHON) agents/build.py --print-version)
AGENTS_PYZ     := roles/agents/files/anycast-agents-$(AGENTS_VERSION).pyz

.PHONY: help setup apt venv agents agents-test collection ee collection-check lock check lint unit test demo bench \
        lab-up lab-down clean

# The collection as ansible-galaxy builds it (roles, plugins and the agents' zipapp included).
COLLECTION_DIR     := collections/ansible_collections/anycast/dns
COLLECTION_VERSION := $(shell sed -n 's/^version: *//p' $(COLLECTION_DIR)/galaxy.yml)
COLLECTION_TAR     := dist/anycast-dns-$(COLLECTION_VERSION).tar.gz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: apt venv agents ## install apt packages (as root), the Python virtualenv and build the agents; idempotent

apt: ## install the Debian packages the project needs (skips what is there)
	@scripts/setup-apt.sh $(APT_PACKAGES)

venv: $(VENV)/.installed $(BIN)/promtool ## create .venv from requirements.txt (and promtool, for the alert rules)

$(BIN)/promtool: scripts/setup-promtool.sh | $(VENV)/.installed
	@scripts/setup-promtool.sh $(BIN)

# uv installs the lock (requirements.txt, the same versions pip would) in seconds where pip takes
# about 80 s on 2 cores; it is installed into the venv first, pinned. With USE_UV=0: pip alone.
# Both write the installed modules' bytecode (pip does by default, uv with --compile-bytecode: about
# 23 s more on 2 cores). Without it every Python process compiles what it imports from source
# whenever bytecode is not written at run time (PYTHONDONTWRITEBYTECODE, a read-only venv): an
# ansible-playbook starts in 0.4 s instead of 1.4 s of CPU, and the tests that need no lab took 121 s
# instead of 231 s. The project's own controller code (the lab's CLI, the collection's plugins,
# the strategy plugins) is compiled as well.
UV_VERSION := 0.13.9
USE_UV ?= 1

$(VENV)/.installed: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ "$(USE_UV)" = 1 ]; then \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)' && \
	  $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.txt; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt; \
	fi
	@$(BIN)/python -m compileall -q lab/anycast_lab strategy_plugins $(COLLECTION_DIR)/plugins > /dev/null
	@printf '#!/bin/sh\n# anycast-lab CLI (lab/anycast_lab), written by make venv\nPYTHONPATH="%s/lab$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s/$(BIN)/python" -m anycast_lab "$$@"\n' "$(CURDIR)" "$(CURDIR)" > $(BIN)/anycast-lab
	@chmod +x $(BIN)/anycast-lab
	@touch $@

agents: $(AGENTS_PYZ) ## build the agents' zipapp into the agents role (roles/agents/files/)

$(AGENTS_PYZ): agents/build.py $(shell find agents/src -name '*.py')
	@$(PYTHON) agents/build.py --out $(dir $@)

agents-test: ## the agents' tests on each platform's Python and libraries (EL 9, Debian 12 and 13, newest)
	@$(PYTHON) scripts/agents-test.py $(AGENTS_TEST_ARGS)

collection: venv agents ## build the anycast.dns collection into dist/ (ansible-galaxy collection build)
	@mkdir -p dist
	$(BIN)/ansible-galaxy collection build $(COLLECTION_DIR) --output-path dist --force

ee: collection ## the execution environment's build context in ee/context (ansible-builder create; build it with podman)
	@test "$(COLLECTION_VERSION)" = "$$(sed -n 's|.*anycast-dns-\([0-9.]*\)\.tar\.gz.*|\1|p' ee/execution-environment.yml | head -1)" || \
	  { echo "ee/execution-environment.yml names another collection version than galaxy.yml ($(COLLECTION_VERSION))"; exit 1; }
	cd ee && $(CURDIR)/$(BIN)/ansible-builder create --file execution-environment.yml --context context --output-filename Containerfile

collection-check: venv agents ## the collection's own checks: ansible-test sanity and units, antsibull docs and changelog lint, build, ansible-builder create
	@scripts/collection-check.sh

lock: ## regenerate requirements.txt from requirements.in (needs network to PyPI)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Full lock of requirements.in for Python 3.11 (make lock regenerates it)."; \
	  .venv-lock/bin/pip freeze; } > requirements.txt
	rm -rf .venv-lock

lint: venv ## yamllint, ansible-lint (profile production), ruff
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline --profile production
	$(BIN)/ruff check .

unit: venv ## unit and functional tests that need no root and no lab
	$(BIN)/pytest -q -m "not lab" -n 2

check: lint unit agents-test collection-check ## the fast tier: lint, unit, the agents on every platform's Python, the collection's own checks (no root, about 5 min)

# The checks that need no lab run side by side (each one's output printed whole when it ends), then
# the lab tests, which share one lab and run one after the other. The agents' tests run on each
# platform's Python this machine has (make check insists on all of them).
test: setup ## everything: lint, the collection's own checks, unit, functional, the agents on each platform's Python, the lab tests and molecule (as root)
	$(MAKE) --no-print-directory -j3 --output-sync=target AGENTS_TEST_ARGS=--skip-missing lint collection-check unit agents-test
	$(BIN)/pytest -q -m lab

demo: setup ## bring the lab up, run site.yml on it, print the lab's and the fleet's state (the lab stays up)
	$(BIN)/ansible-playbook -i inventories/production --vault-id production@example-vault-password.txt playbooks/validate.yml
	$(BIN)/anycast-lab up
	$(BIN)/ansible-playbook -i inventories/lab site.yml
	$(BIN)/anycast-lab status
	$(BIN)/ansible-playbook -i inventories/lab playbooks/status.yml
	@echo "The lab stays up: try '$(BIN)/anycast-lab probe --from cl-syd', Prometheus at http://198.18.0.51:9090 (alerts: /alerts), then '$(BIN)/anycast-lab down'."

bench: setup ## on fresh labs (about 90 min): playbook timings old vs new way, RTT table, failover ours vs seed 002, firewall on/off q/s, 5/10/20 servers -> reports/
	@set -e; trap '$(BIN)/anycast-lab down >/dev/null' EXIT; \
	bench="env PYTHONPATH=lab $(BIN)/python -m anycast_lab.bench"; \
	$$bench speed --out reports; \
	$$bench rtt --out reports; \
	$$bench failover --out reports; \
	$$bench firewall --out reports; \
	$$bench scale --out reports --servers 5,10,20

lab-up: setup ## bring the lab up (idempotent)
	$(BIN)/anycast-lab up

lab-down: venv ## remove every trace of the lab
	$(BIN)/anycast-lab down

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
