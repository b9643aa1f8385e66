# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the fleet's state (anycast.dns.node_status results, one per server).

Their documentation: fleet_state.yml, fleet_quorum.yml, fleet_table.yml, collector_table.yml next to
this file.
"""

from __future__ import annotations

import json


def fleet_state(results, pop_of):
    """Server name -> node_status result with its pop, from the results of a loop over the servers."""
    fleet = {}
    for r in results:
        host = r["item"]
        entry = {k: v for k, v in r.items()
                 if k not in ("item", "invocation", "ansible_loop_var", "failed_when_result",
                              "failed_when_suppressed_exception")}
        if r.get("unreachable") or "sessions" not in r:
            entry.update(failed=True, announcing=False, msg=r.get("msg") or "could not be read")
        entry["pop"] = pop_of.get(host)
        fleet[host] = entry
    return fleet


def _why(result):
    if result.get("failed") and not result.get("problems"):
        return result.get("msg") or "could not be read"
    problems = result.get("problems") or []
    if not problems and not result.get("announcing", False):
        return "not announcing"
    return "; ".join(problems[:2]) + (" (+%d more)" % (len(problems) - 2) if len(problems) > 2 else "")


def fleet_quorum(fleet, pops, out, quorum):
    out = set(out)
    members = {}
    for host, result in fleet.items():
        members.setdefault(result.get("pop"), []).append(host)
    out_pops = [p for p in pops if members.get(p) and set(members[p]) <= out]
    serving, missing = [], {}
    for pop in pops:
        if pop in out_pops:
            continue
        staying = [h for h in sorted(members.get(pop, [])) if h not in out]
        if any(fleet[h].get("announcing") and not fleet[h].get("failed") for h in staying):
            serving.append(pop)
        else:
            missing[pop] = {h: _why(fleet[h]) for h in staying} or {"-": "no server in the inventory"}
    required = min(int(quorum), len(pops) - len(out_pops))
    return {"serving": serving, "missing": missing, "required": required, "ok": len(serving) >= required,
            "out_pops": out_pops}


def _bgp(result):
    """Per upstream (its description's first word): the state of its IPv4 and IPv6 sessions."""
    per = {}
    for s in result.get("sessions") or []:
        name = (s.get("description") or s.get("neighbor") or "?").split()[0]
        per.setdefault(name, []).append("up" if s.get("established") else (s.get("state") or "?"))
    return " ".join("%s:%s" % (name, "/".join(states)) for name, states in per.items()) or "-"


def _bfd(result):
    states = [s.get("bfd") for s in result.get("sessions") or [] if s.get("bfd") is not None]
    if not states:
        return "-"
    up = sum(1 for s in states if s == "up")
    return "%d/%d up" % (up, len(states))


def _health(result):
    health = result.get("health")
    if not health:
        return "no state"
    return " ".join("%s:%s" % (name[-2:], fam.get("state")) for name, fam in sorted(health["families"].items()))


def _drain(result):
    """'drained' or 'no', and a rollout that started the PoP and did not finish it (rolling.yml's record)."""
    drain = "drained" if (result.get("health") or {}).get("drain") else "no"
    record = result.get("rollout")
    if not record:
        return drain
    if record.get("unreadable"):
        return "%s, rollout record unreadable (%s)" % (drain, record["unreadable"])
    return "%s, rollout of %s unfinished (started %s)" % (drain, record.get("pop"), record.get("started"))


def _serials(result):
    per_zone = {}
    for zones in (result.get("serials") or {}).values():
        for zone, serial in zones.items():
            per_zone.setdefault(zone, set()).add(str(serial) if isinstance(serial, int) else "ERR")
    return " ".join("%s=%s" % (z, "/".join(sorted(v))) for z, v in sorted(per_zone.items())) or "-"


def fleet_table(fleet, pops):
    """One line per server (PoP order, then name), with a header, as a list of strings."""
    header = ["PoP", "server", "BGP sessions", "BFD", "announces", "health", "drain", "zone serials"]
    rows = []
    order = {p: i for i, p in enumerate(pops)}
    for host in sorted(fleet, key=lambda h: (order.get(fleet[h].get("pop"), 99), h)):
        r = fleet[host]
        if r.get("failed") and "sessions" not in r:
            rows.append([str(r.get("pop")), host, "unreachable: " + str(r.get("msg", ""))[:60], "", "", "", "", ""])
            continue
        rows.append([str(r.get("pop")), host, _bgp(r), _bfd(r), " ".join(r.get("announced") or []) or "nothing",
                     _health(r), _drain(r), _serials(r)])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header] + rows]


def _route(route, origin_asn):
    path = " ".join(str(a) for a in route.get("as_path") or []) or "(empty path)"
    what = []
    if str(route.get("origin_as")) != str(origin_asn):
        what.append(f"HIJACK: origin AS{route.get('origin_as')}")
    if route.get("kind") == "more_specific":
        what.append("MORE-SPECIFIC")
    if route.get("rpki") == "invalid":
        what.append("RPKI invalid")
    return f"{route.get('prefix')} [{path}]" + (f" {', '.join(what)}" if what else "")


def _views(results):
    """The registered results of `anycast-collector-exporter --json` run per collector -> views."""
    views = {}
    for r in results:
        if r.get("rc") == 0 and r.get("stdout"):
            try:
                views[r["item"]] = json.loads(r["stdout"])
                continue
            except ValueError as exc:
                views[r["item"]] = {"failed": True, "msg": f"not JSON: {exc}"}
                continue
        views[r["item"]] = {"failed": True, "msg": r.get("stderr") or r.get("msg") or "could not be read"}
    return views


def collector_table(views, origin_asn=None):
    """One line per collector peer session: what it sends of our address space. VIEWS: collector
    name -> its view, or the registered loop results of the command that prints them."""
    if isinstance(views, list):
        views = _views(views)
    header = ["collector", "peer", "family", "session", "our aggregates", "other routes of our space"]
    rows = []
    for collector in sorted(views or {}):
        view = views[collector]
        if not isinstance(view, dict) or "peers" not in view:
            rows.append([collector, "", "", "unreadable: " + str((view or {}).get("msg", view))[:60], "", ""])
            continue
        origin = origin_asn if origin_asn is not None else view.get("origin_asn")
        for peer in view["peers"]:
            family = peer.get("family")
            ours = [r for r in peer.get("routes", []) if r.get("kind") == "aggregate" and
                    str(r.get("origin_as")) == str(origin)]
            others = [r for r in peer.get("routes", []) if r not in ours]
            aggregates = [a for a in view.get("aggregates", []) if (":" in a) == (family == 6)]
            if not peer.get("established"):
                seen = "-"
            else:
                seen = "; ".join(_route(r, origin) for r in ours) or "MISSING " + " ".join(aggregates)
            rows.append([collector, str(peer.get("peer")), f"ipv{family}",
                         "Established" if peer.get("established") else str(peer.get("state") or "down"),
                         seen, "; ".join(_route(r, origin) for r in others) or "-"])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header] + rows]


class FilterModule:
    def filters(self):
        return {"fleet_state": fleet_state, "fleet_quorum": fleet_quorum, "fleet_table": fleet_table,
                "collector_table": collector_table}
