# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side check of the fleet inventory; never contacts a managed host."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.anycast.dns.plugins.plugin_utils import inventory_rules as rules

ARGUMENT_SPEC = {
    "servers_group": {"type": "str", "default": "anycast_servers"},
    "infra_groups": {"type": "list", "elements": "str", "default": ["dns_primary", "monitoring"]},
}


def controller_route(address):
    """The controller's route to ADDRESS (`ip -j route get`, which sends nothing): {src, onlink}, or None
    when it cannot be known (not an IP address, no ip command, no route)."""
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        return None
    ip = shutil.which("ip") or "/usr/sbin/ip"
    try:
        proc = subprocess.run([ip, "-j", "route", "get", str(address)], capture_output=True, text=True,
                              timeout=5, check=False, env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        routes = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not routes or not isinstance(routes[0], dict):
        return None
    return {"src": routes[0].get("prefsrc"), "onlink": "gateway" not in routes[0] and routes[0].get("type") != "local"}


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

        groups = task_vars.get("groups", {})
        infra_hosts = [h for g in args["infra_groups"] for h in groups.get(g, []) if h not in hosts]
        servers = {}
        infra = {}
        errors = []
        for host in hosts + infra_hosts:
            host_vars = hostvars[host]
            target = servers if host in hosts else infra
            target[host] = {}
            for key in rules.SERVER_KEYS if host in hosts else rules.INFRA_KEYS:
                try:
                    if key not in host_vars:
                        continue
                    target[host][key] = _plain(host_vars[key])
                except Exception as exc:  # templating errors: undefined vault var, bad Jinja, ...
                    errors.append(rules.Problem(host, key, "<unresolved>",
                                                "cannot be resolved: %s" % to_text(exc).splitlines()[0]))
            if "ansible_host" in target[host] and host_vars.get("ansible_connection", "ssh") not in ("local",):
                target[host][rules.ROUTE_KEY] = controller_route(target[host]["ansible_host"])

        warnings = []
        problems = rules.check_fleet(servers, errors, warnings, infra=infra)
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
