# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's modules know of anycast-health (the agents' health daemon on a node):
where it is and the schema of the state it writes.

Private to the collection: the interface may change between releases. The paths and the schema
are those of agents/src/anycast_agents (paths.py, state.py); a unit test checks that they agree.
"""

from __future__ import annotations

HEALTH_COMMAND = "/usr/local/sbin/anycast-health"
HEALTH_STATE = "/run/anycast-health/state.json"
DRAIN_FLAG = "/var/lib/anycast-health/drain"  # kept across reboots; the agents' paths.DRAIN_FLAG
# Written by playbooks/rolling.yml when it starts a PoP and removed when the PoP is done: one left
# behind says a rollout stopped there (its controller killed, say). Not the daemon's: it never reads it.
ROLLOUT_RECORD = "/var/lib/anycast-health/rollout.json"
# The state.json schema these modules read (anycast_agents.state.SCHEMA).
STATE_SCHEMA = 1


def schema_problem(state, where):
    """None when STATE (parsed state.json) is of the schema these modules read, else why not."""
    if not isinstance(state, dict):
        return "%s: not a JSON object" % where
    found = state.get("schema")
    if found != STATE_SCHEMA:
        return ("%s: anycast-health state schema %r, this collection reads schema %d: install the agents and the "
                "collection of one release (role anycast.dns.agents)" % (where, found, STATE_SCHEMA))
    return None
