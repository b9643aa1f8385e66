"""anycast-health: the health daemon of a PoP server and its command line (cli.main)."""
