# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side check of the fleet inventory; never contacts a managed host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.anycast.dns.plugins.plugin_utils import inventory_rules as rules

ARGUMENT_SPEC = {
    "servers_group": {"type": "str", "default": "anycast_servers"},
}


def _plain(value):
    """Deep copy into plain Python types; templating errors surface here, once per key."""
    if isinstance(value, Mapping):
        return {to_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, bytes)):
        return to_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        if not rules.HAS_NETADDR:
            raise AnsibleError("the anycast.dns.validate_inventory action needs the Python library netaddr on the "
                               "controller: %s" % rules.NETADDR_IMPORT_ERROR)

        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        group = args["servers_group"]
        hosts = list(task_vars.get("groups", {}).get(group, []))
        hostvars = task_vars.get("hostvars", {})

        servers = {}
        errors = []
        for host in hosts:
            host_vars = hostvars[host]
            servers[host] = {}
            for key in rules.SERVER_KEYS:
                try:
                    if key not in host_vars:
                        continue
                    servers[host][key] = _plain(host_vars[key])
                except Exception as exc:  # templating errors: undefined vault var, bad Jinja, ...
                    errors.append(rules.Problem(host, key, "<unresolved>",
                                                "cannot be resolved: %s" % to_text(exc).splitlines()[0]))

        warnings = []
        problems = rules.check_fleet(servers, errors, warnings)
        lines = rules.format_problems(problems)
        pops = sorted({v.get("anycast_pop") for v in servers.values() if isinstance(v.get("anycast_pop"), str)})
        result["changed"] = False
        result["servers"] = len(servers)
        result["pops"] = pops
        result["problems"] = lines
        if warnings and not problems:
            result["warnings"] = rules.format_problems(warnings)
        if problems:
            result["failed"] = True
            result["msg"] = "The inventory has %d problem(s); nothing was changed on any host:\n%s" % (
                len(lines), "\n".join("  - " + line for line in lines))
        else:
            result["msg"] = "inventory OK: %d servers in %d PoPs (%s)" % (len(servers), len(pops), ", ".join(pops))
        return result
