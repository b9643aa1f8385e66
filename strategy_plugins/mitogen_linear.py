"""The linear strategy run through Mitogen for Ansible (PyPI `mitogen`, in requirements.txt).

ansible.cfg names it as the default strategy: the same plays in the same order, with each host's
Python kept running between tasks instead of started and loaded again for every module, which
halves an idempotent site.yml on the lab (make bench measures both). The plain strategy stays a
setting away: ANSIBLE_STRATEGY=linear (molecule runs that way).

This file only makes the strategy findable from ansible.cfg (strategy_plugins) wherever the
virtualenv lives; the code is Mitogen's own.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
