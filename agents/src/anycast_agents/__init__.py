"""What the anycast DNS fleet runs on its nodes: the health daemon that decides whether a PoP
server announces (anycast-health), the Prometheus exporter of the local Knot
(anycast-knot-exporter), the host firewall's drop counters (anycast-firewall-counters) and what the
route collector sees of our address space (anycast-collector-exporter). Built into
one zipapp, anycast-agents-<version>.pyz, that the collection's agents role installs; each command
is a link to it."""

__version__ = "0.10.3"
