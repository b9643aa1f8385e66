"""The linear strategy run through Mitogen for Ansible (PyPI `mitogen`, in requirements.txt).

ansible.cfg names it as the default strategy: the same plays in the same order, with each host's
Python kept running between tasks instead of started and loaded again for every module, which
halves an idempotent site.yml on the lab (make bench measures both). The plain strategy stays a
setting away: ANSIBLE_STRATEGY=linear (the lab tests' session check run uses it).

The code is Mitogen's own, with one change to what it costs, not to what it does: Mitogen looks up
the directory of every installed collection each time a worker process runs a collection's module
(ansible_mitogen.planner._load_collections), and a worker is forked for every task and host, so
nothing it learns is kept. With the `ansible` package's 90-odd collections that took about 0.1 s
of the controller's CPU per module call. The list cannot change during a run: it is read once, in
the controller's process before its workers fork, and every worker adds the same directories to
the module's search path as Mitogen would. An idempotent site.yml on the lab: 8 % less of the
controller's CPU (README, Speed).
"""

from ansible.collections.list import list_collection_dirs
from ansible_mitogen import planner
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear

__all__ = ["StrategyModule"]

_collection_dirs: tuple[str, ...] | None = None


def _load_collections(invocation) -> None:
    """planner._load_collections with the directories read once per run."""
    invocation._extra_sys_paths.update(_collection_dirs)


def remember_collection_dirs() -> None:
    """Read the installed collections' directories in this (the controller's) process, once, and
    let Mitogen's planner use them from then on."""
    global _collection_dirs  # noqa: PLW0603 - one list per controller process
    if _collection_dirs is None:
        _collection_dirs = tuple(path.decode("utf-8") for path in list_collection_dirs())
        planner._load_collections = _load_collections


class StrategyModule(_MitogenLinear):
    remember_collection_dirs = staticmethod(remember_collection_dirs)

    def run(self, iterator, play_context):
        remember_collection_dirs()
        return super().run(iterator, play_context)
