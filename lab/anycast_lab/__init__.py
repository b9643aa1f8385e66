"""anycast-lab: a small Internet of real Debian machines on one host.

systemd-nspawn machines in their own network namespaces, veth links, a management bridge,
an apt cache; FRR routers that play the Internet; client namespaces that probe the anycast service.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
