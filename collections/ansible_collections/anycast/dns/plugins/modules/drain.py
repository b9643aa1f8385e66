#!/usr/bin/python
# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain a PoP server (GRACEFUL_SHUTDOWN, then withdraw) or undrain it, through anycast-health."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drain
short_description: Drain or undrain a PoP server's anycast announcement
version_added: 0.4.0
description:
  - Drives C(anycast-health) (role anycast_health) on the managed node.
  - O(state=drained) sets the drain flag, which survives restarts and reboots. The daemon marks the
    routes with GRACEFUL_SHUTDOWN (65535:0) at once, waits until the queries reaching the anycast
    addresses from outside have moved to other PoPs (at the latest O(wait) seconds), then withdraws
    both families. The module returns once both are withdrawn, with what the daemon measured.
  - O(state=undrained) removes the flag and returns once both families are announced again; it fails,
    naming the reason per family, when the checks fail or damping holds a family down.
  - A node already in the requested state is left alone (changed false); undrained is still verified.
  - With O(before_install=true), a server that has no C(anycast-health) yet (freshly installed or
    re-imaged) gets the drain flag written directly, so that it joins the fleet drained; frr_bgp then
    renders C(bgp graceful-shutdown), the daemon starts withdrawn, and only O(state=undrained) announces it.
options:
  state:
    description: Whether the node is to be drained or to announce again.
    type: str
    choices: [drained, undrained]
    required: true
  wait:
    description:
      - Longest wait between GRACEFUL_SHUTDOWN and the withdrawal, in seconds; the daemon's configured
        drain wait when not given. Ignored when the node is drained already.
    type: float
  command:
    description: The C(anycast-health) command on the node.
    type: path
    default: /usr/local/sbin/anycast-health
  before_install:
    description:
      - Only with O(state=drained). Where O(command) does not exist yet, write the drain flag O(flag)
        (marked withdrawn) instead of failing. Where C(anycast-health) is installed, this changes nothing.
    type: bool
    default: false
  flag:
    description: The drain flag that C(anycast-health) keeps across restarts (used with O(before_install)).
    type: path
    default: /var/lib/anycast-health/drain
attributes:
  check_mode:
    support: full
    description: Reports what would change and touches nothing.
  diff_mode:
    support: full
    description: Shows the drain flag before and after.
requirements:
  - The anycast_health role on the node (C(anycast-health) and its daemon).
extends_documentation_fragment:
  - anycast.dns.attributes
author:
  - anycast.dns contributors (@anycast-dns)
"""

EXAMPLES = r"""
- name: Drain this server (GRACEFUL_SHUTDOWN, wait until traffic moved, withdraw)
  anycast.dns.drain:
    state: drained
    wait: 30

- name: Announce again
  anycast.dns.drain:
    state: undrained

- name: Keep a re-imaged server drained before the roles install anything
  anycast.dns.drain:
    state: drained
    before_install: true
"""

RETURN = r"""
families:
  description: Per family the daemon's state after the action (state, announced, reason).
  returned: always
  type: dict
  sample: {"ipv4": {"state": "drained", "announced": false, "reason": "drained"}}
drain:
  description:
    - The drain as the daemon recorded it (since, wait, rate_before and rate_after in queries per second,
      withdrawn_after in seconds, why), null when not drained.
  returned: always
  type: dict
output:
  description: What C(anycast-health) printed.
  returned: when it ran
  type: str
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.anycast.dns.plugins.module_utils import _health


def summary(state):
    families = {name: {k: fam.get(k) for k in ("state", "announced", "healthy", "reason")}
                for name, fam in (state.get("families") or {}).items()}
    drain = state.get("drain")
    if drain:
        drain = dict(drain)
        if drain.get("withdrawn_at"):
            drain["withdrawn_after"] = round(drain["withdrawn_at"] - drain["since"], 3)
    return families, drain


def join_drained(module, flag):
    """No anycast-health on this node yet: write the drain flag so that the node joins drained."""
    exists = os.path.exists(flag)
    diff = {"before": {"drained": exists}, "after": {"drained": True}}
    now = time.time()
    drain = {"since": now, "wait": 0.0, "withdrawn_at": now,
             "why": "set before anycast-health was installed: the server joins drained"}
    if exists or module.check_mode:
        module.exit_json(changed=not exists, families={}, drain=None if not exists else {"flag": flag}, diff=diff)
    directory = os.path.dirname(flag)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".drain.")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(drain) + "\n")
        os.chmod(tmp, 0o644)
    except OSError as exc:
        module.fail_json(msg="cannot write the drain flag %s: %s" % (flag, exc))
    module.atomic_move(tmp, flag)
    module.exit_json(changed=True, families={}, drain=dict(drain, withdrawn_after=0.0), diff=diff,
                     output="drain flag written before anycast-health was installed")


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["drained", "undrained"]},
            "wait": {"type": "float"},
            "command": {"type": "path", "default": _health.HEALTH_COMMAND},
            "before_install": {"type": "bool", "default": False},
            "flag": {"type": "path", "default": _health.DRAIN_FLAG},
        },
        supports_check_mode=True,
    )
    p = module.params
    env = {"LANGUAGE": "C", "LC_ALL": "C"}
    if p["wait"] is not None and p["wait"] < 0:
        module.fail_json(msg="wait must be 0 or more seconds, got %s" % p["wait"])

    def status():
        rc, out, err = module.run_command([p["command"], "status", "--json"], environ_update=env)
        if rc != 0:
            module.fail_json(msg="%s status failed (is the anycast_health role applied and anycast-health.service "
                                 "running?): %s" % (p["command"], (err or out).strip()), rc=rc, stdout=out, stderr=err)
        try:
            state = json.loads(out)
        except ValueError as exc:
            module.fail_json(msg="cannot parse %s status --json: %s" % (p["command"], exc), stdout=out)
        problem = _health.schema_problem(state, "%s status --json" % p["command"])
        if problem:
            module.fail_json(msg=problem, stdout=out)
        return state

    if p["before_install"] and p["state"] != "drained":
        module.fail_json(msg="before_install applies to state=drained only, not state=%s" % p["state"])
    if p["before_install"] and not os.path.exists(p["command"]):
        join_drained(module, p["flag"])

    # Without the daemon (stopped, or replaced by another health check as the lab's seed002.yml
    # does) the state file is stale and nothing would act on the drain flag.
    systemctl = module.get_bin_path("systemctl")
    if systemctl:
        rc, out, _err = module.run_command([systemctl, "is-active", "anycast-health"], environ_update=env)
        if out.strip() != "active":
            module.fail_json(msg="anycast-health.service is %s on this node, which cannot be drained without "
                                 "the anycast-health daemon: start it, or apply the anycast_health role"
                                 % (out.strip() or "not running"))

    before = status()
    was_drained = bool(before.get("drain"))
    want_drained = p["state"] == "drained"
    changed = was_drained != want_drained
    diff = {"before": {"drained": was_drained}, "after": {"drained": want_drained}}
    if module.check_mode:
        families, drain = summary(before)
        module.exit_json(changed=changed, families=families, drain=drain, diff=diff)

    argv = [p["command"], "drain" if want_drained else "undrain"]
    if want_drained and p["wait"] is not None and not was_drained:
        argv += ["--wait", "%g" % p["wait"]]
    rc, out, err = module.run_command(argv, environ_update=env)
    families, drain = summary(status())
    result = {"changed": changed, "families": families, "drain": drain, "output": out, "diff": diff}
    if rc != 0:
        reasons = "; ".join("%s %s (%s)" % (name, f["state"], f["reason"]) for name, f in sorted(families.items()))
        what = "withdrawn" if want_drained else "announced again"
        module.fail_json(msg="not %s: %s" % (what, reasons or (err or out).strip()), rc=rc, stdout=out,
                         stderr=err, **{k: v for k, v in result.items() if k != "output"})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
