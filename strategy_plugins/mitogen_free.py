"""The free strategy run through Mitogen for Ansible (PyPI `mitogen`), for plays whose hosts run
different roles: site.yml's play of the hidden primary and the monitoring node uses it while the
configured strategy is Mitogen's (mitogen_linear.py says why), and Ansible's own `free` otherwise.

Mitogen's own code, with the collection directories read once per run as mitogen_linear.py
does (and explains).
"""

from ansible.plugins.loader import strategy_loader
from ansible_mitogen.plugins.strategy.mitogen_free import StrategyModule as _MitogenFree

__all__ = ["StrategyModule"]

_linear = strategy_loader.get("mitogen_linear", class_only=True)


class StrategyModule(_MitogenFree):
    def run(self, iterator, play_context):
        _linear.remember_collection_dirs()
        return super().run(iterator, play_context)
