"""The free strategy run through Mitogen for Ansible (PyPI `mitogen`), for plays whose hosts run
different roles: site.yml's play of the hidden primary and the monitoring node uses it while the
configured strategy is Mitogen's (mitogen_linear.py says why), and Ansible's own `free` otherwise.

This file only makes the strategy findable from ansible.cfg (strategy_plugins) wherever the
virtualenv lives; the code is Mitogen's own.
"""

from ansible_mitogen.plugins.strategy.mitogen_free import StrategyModule

__all__ = ["StrategyModule"]
