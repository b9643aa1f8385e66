"""Where the agents and the roles meet on a node: defined here once.

The collection's modules and roles use the same paths (a unit test of the repository checks that
their documented defaults agree with these)."""

from __future__ import annotations

INSTALL_DIR = "/usr/local/lib/anycast-dns"  # the zipapp, one file per version
BIN_DIR = "/usr/local/sbin"  # the commands: links to the zipapp
HEALTH_COMMAND = BIN_DIR + "/anycast-health"
KNOT_EXPORTER_COMMAND = BIN_DIR + "/anycast-knot-exporter"
FIREWALL_COUNTERS_COMMAND = BIN_DIR + "/anycast-firewall-counters"
COLLECTOR_EXPORTER_COMMAND = BIN_DIR + "/anycast-collector-exporter"

HEALTH_CONFIG = "/etc/anycast-health/config.json"
HEALTH_RUN_DIR = "/run/anycast-health"  # state.json, the family flags keepalived tracks, heartbeat
HEALTH_STATE_DIR = "/var/lib/anycast-health"  # the drain flag (kept across reboots)
HEALTH_STATE_FILE = HEALTH_RUN_DIR + "/state.json"
DRAIN_FLAG = HEALTH_STATE_DIR + "/drain"

KNOT_SOCKET = "/run/knot/knot.sock"
KNOT_EXPORTER_LISTEN = "127.0.0.1:9433"
# The node's zone-transfer TLS certificate (XoT; role knot_dns), whose expiry the exporter reports.
XOT_CERT = "/etc/knot/tls/xot.crt"

# The route collector (role monitoring, monitoring_collector): the exporter's configuration (the
# role writes it from the same variables as bird.conf) and BIRD's control socket.
COLLECTOR_EXPORTER_CONFIG = "/etc/anycast-collector/exporter.json"
COLLECTOR_EXPORTER_LISTEN = "127.0.0.1:9434"
BIRD_SOCKET = "/run/bird/bird.ctl"

# The host firewall (role host_firewall): its nftables table (family inet), the textfile its drop
# counters go to (node_exporter's textfile collector), the mark its commit-confirm guard leaves.
FIREWALL_TABLE = "anycast_firewall"
FIREWALL_TEXTFILE = "/var/lib/prometheus/node-exporter/anycast_firewall.prom"
FIREWALL_ROLLBACK_MARK = "/run/anycast-firewall-rolled-back"


def zipapp_name(version: str) -> str:
    return f"anycast-agents-{version}.pyz"
