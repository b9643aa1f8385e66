# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline rules for an anycast DNS fleet inventory.

Controller-side (plugin_utils), pure Python with netaddr: the action plugin ``anycast.dns.validate_inventory``
feeds it the variables of every server, and the unit tests call it directly.

Every rule appends ``Problem`` records instead of raising, so one run reports
every problem in the inventory, each naming the host, the key and the bad value.
"""

from __future__ import annotations

import re
from collections import namedtuple

try:
    import netaddr

    HAS_NETADDR = True
    NETADDR_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the action plugin
    HAS_NETADDR = False
    NETADDR_IMPORT_ERROR = exc

Problem = namedtuple("Problem", ["host", "key", "value", "message"])

# Variables each server contributes; the action plugin reads exactly these.
SERVER_KEYS = (
    "anycast_asn",
    "anycast_service_addresses",
    "anycast_aggregates",
    "anycast_roas",
    "anycast_zones",
    "anycast_hidden_primary",
    "anycast_pops",
    "anycast_pop",
    "anycast_rolling",
    "anycast_health",
    "anycast_bfd_profiles",
    "anycast_bgp_require_password",
    "anycast_node_name",
    "anycast_router_id",
    "anycast_unicast_ipv4",
    "anycast_unicast_ipv6",
    "anycast_xfr_ipv4",
    "anycast_xfr_ipv6",
    "anycast_soa_timers",
    "anycast_interfaces",
    "anycast_upstreams",
    "anycast_management_networks",
    "ansible_host",
)
# What the action plugin reads of the hidden primary and the monitoring node (they get a host
# firewall too), and the key under which it adds the controller's route to each host.
INFRA_KEYS = ("anycast_management_networks", "ansible_host")
ROUTE_KEY = "_controller_route"

UPSTREAM_TYPES = ("transit", "ixp")
SCOPES = ("global", "local")

# Well-known communities an operator may set on an upstream (RFC 1997, RFC 3765,
# RFC 8326, RFC 7999). GRACEFUL_SHUTDOWN belongs to the drain procedure and
# BLACKHOLE would blackhole the service: both are refused with their own message.
WELL_KNOWN_COMMUNITY_NAMES = {
    "no-export": "65535:65281",
    "no-advertise": "65535:65282",
    "local-as": "65535:65283",
    "no-peer": "65535:65284",
}
MANAGED_COMMUNITIES = {
    "65535:0": "GRACEFUL_SHUTDOWN (65535:0) is set by the drain procedure, not by the inventory",
    "graceful-shutdown": "GRACEFUL_SHUTDOWN (65535:0) is set by the drain procedure, not by the inventory",
    "65535:666": "BLACKHOLE (65535:666, RFC 7999) would make upstreams drop traffic to the service",
    "blackhole": "BLACKHOLE (65535:666, RFC 7999) would make upstreams drop traffic to the service",
}

ASN_MIN, ASN_MAX = 1, 4294967295
# IANA special-purpose AS numbers that must never appear in a BGP session.
RESERVED_ASNS = (
    (0, 0, "reserved (RFC 7607)"),
    (23456, 23456, "AS_TRANS (RFC 6793)"),
    (64496, 64511, "reserved for documentation (RFC 5398)"),
    (65535, 65535, "reserved (RFC 7300)"),
    (65536, 65551, "reserved for documentation (RFC 5398)"),
    (4294967295, 4294967295, "reserved (RFC 7300)"),
)

PREPEND_MAX = 10
MED_MAX = 4294967295
BFD_INTERVAL_RANGE = (10, 60000)  # FRR bfdd: receive-interval / transmit-interval (ms)
BFD_MULTIPLIER_RANGE = (2, 255)  # FRR bfdd: detect-multiplier
MULTIHOP_RANGE = (0, 255)  # 0 = directly connected; FRR ebgp-multihop takes 1-255
MD5_MAX_LEN = 80  # Linux TCP_MD5SIG_MAXKEYLEN
TRANSIT_MAX_PREFIXLEN = {4: 24, 6: 48}
SCOPE_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
NODE_NAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
STD_COMMUNITY_RE = re.compile(r"^(\d+):(\d+)$")
LARGE_COMMUNITY_RE = re.compile(r"^(\d+):(\d+):(\d+)$")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, (int, float))) and not isinstance(value, bool)


class _Collector:
    """Collects problems for one host; ``add`` never raises."""

    def __init__(self, host):
        self.host = host
        self.problems = []

    def add(self, key, value, message):
        self.problems.append(Problem(self.host, key, value, message))


# --------------------------------------------------------------------------- the checked values, as data
# Every setting whose type and range the rules check, in one table: check_fields() applies it and
# docs/inventory-model.md's table "Values checked by type and range" is generated from it
# (scripts/inventory-doc.py; a unit test compares), so a value cannot be checked one way and
# documented another. Relations between values (timeout < interval, GTSM against multihop,
# max_length against the prefix, ...) stay in the rules below.
#
# path: the key; "a.b" a key of mapping a, "a[].b" a key of every item of list a, "a.*.b" a key of
# every value of mapping a. kind: INT, NUMBER (integer or fraction), BOOL or CHOICE. low/high:
# inclusive bounds; above: an exclusive lower bound. required: the key must be there (else default).
INT, NUMBER, BOOL, CHOICE = "int", "number", "bool", "choice"
Field = namedtuple("Field", ["path", "kind", "low", "high", "above", "choices", "required", "default", "unit"])


def _field(path, kind, low=None, high=None, *, above=None, choices=(), required=False, default=None, unit=""):
    return Field(path, kind, low, high, above, tuple(choices), required, default, unit)


FIELDS = (
    _field("anycast_bgp_require_password", BOOL, default=True),
    _field("anycast_aggregates[].allow_more_specific", BOOL, default=False),
    _field("anycast_health.interval", NUMBER, above=0, required=True, unit="seconds"),
    _field("anycast_health.timeout", NUMBER, above=0, required=True, unit="seconds"),
    _field("anycast_health.fall", INT, low=1, required=True, unit="failed checks in a row"),
    _field("anycast_health.rise", INT, low=1, required=True, unit="passed checks in a row"),
    _field("anycast_bfd_profiles.*.receive_interval", INT, *BFD_INTERVAL_RANGE, required=True,
           unit="milliseconds, FRR's range"),
    _field("anycast_bfd_profiles.*.transmit_interval", INT, *BFD_INTERVAL_RANGE, required=True,
           unit="milliseconds, FRR's range"),
    _field("anycast_bfd_profiles.*.detect_multiplier", INT, *BFD_MULTIPLIER_RANGE, required=True, unit="FRR's range"),
    _field("anycast_soa_timers.refresh", INT, 1, 2 ** 31 - 1, unit="seconds, RFC 1982"),
    _field("anycast_soa_timers.retry", INT, 1, 2 ** 31 - 1, unit="seconds, RFC 1982"),
    _field("anycast_soa_timers.expire", INT, 1, 2 ** 31 - 1, unit="seconds, RFC 1982"),
    _field("anycast_soa_timers.minimum", INT, 1, 2 ** 31 - 1, unit="seconds, RFC 1982"),
    _field("anycast_rolling.quorum", INT, low=0, required=True, unit="other PoPs that must serve"),
    _field("anycast_rolling.drain_wait", NUMBER, above=0, required=True, unit="seconds"),
    _field("anycast_rolling.ready_timeout", NUMBER, above=0, required=True, unit="seconds"),
    _field("anycast_rolling.announce_timeout", NUMBER, above=0, required=True, unit="seconds"),
    _field("anycast_upstreams[].type", CHOICE, choices=UPSTREAM_TYPES, required=True),
    _field("anycast_upstreams[].multihop", INT, *MULTIHOP_RANGE, default=0, unit="TTL; 0 = directly connected"),
    _field("anycast_upstreams[].ttl_security_hops", INT, 0, 254,
           unit="GTSM hop count; 0 = off, 1 = directly connected"),
    _field("anycast_upstreams[].med", INT, 0, MED_MAX),
    _field("anycast_upstreams[].prepend", INT, 0, PREPEND_MAX, default=0, unit="AS-path prepend count"),
    _field("anycast_upstreams[].max_prefix", INT, low=1, unit="inbound max-prefix"),
    _field("anycast_upstreams[].accept_default", BOOL, default=False),
    _field("anycast_upstreams[].scope", CHOICE, choices=SCOPES, default="global"),
)
# Mappings whose every key is in FIELDS: any other key is refused, named.
CLOSED = ("anycast_health", "anycast_soa_timers", "anycast_rolling")


def describe(field):
    """What FIELD's value must be, in words: 'an integer from 10 to 60000 (milliseconds, FRR's range)'."""
    if field.kind == BOOL:
        text = "true or false"
    elif field.kind == CHOICE:
        text = "one of " + ", ".join(field.choices)
    else:
        text = "an integer" if field.kind == INT else "a number"
        if field.low is not None and field.high is not None:
            text += " from %s to %s" % (field.low, field.high)
        elif field.low is not None:
            text += " of at least %s" % field.low
        elif field.above is not None:
            text += " greater than %s" % field.above
    return text + (" (%s)" % field.unit if field.unit else "")


def value_problem(field, value):
    """Error text for VALUE of FIELD, or None when it is of the right type and in range."""
    if field.kind == BOOL:
        good = isinstance(value, bool)
    elif field.kind == CHOICE:
        good = isinstance(value, str) and value in field.choices
    else:
        good = _is_int(value) if field.kind == INT else _is_number(value)
        good = good and (field.low is None or value >= field.low) and (field.high is None or value <= field.high)
        good = good and (field.above is None or value > field.above)
    return None if good else "must be " + describe(field)


def fields_of(group):
    """The FIELDS of one mapping ('' for the host's own variables), by their key in it."""
    return {f.path[len(group) + 1:] if group else f.path: f for f in FIELDS
            if f.path.rpartition(".")[0] == group}


def fields_markdown():
    """FIELDS as the Markdown table of docs/inventory-model.md (scripts/inventory-doc.py writes it there)."""
    lines = ["| key | must be | when left out |", "| --- | --- | --- |"]
    for field in FIELDS:
        if field.required:
            missing = "required"
        elif field.default is not None:
            missing = "`%s`" % (str(field.default).lower() if isinstance(field.default, bool) else field.default)
        else:
            missing = "optional"
        lines.append("| `%s` | %s | %s |" % (field.path, describe(field), missing))
    lines.append("")
    lines.append("Mappings that take no other key: %s." % ", ".join("`%s`" % group for group in CLOSED))
    return "\n".join(lines)


def check_fields(col, group, mapping, key=None):
    """Apply the FIELDS of GROUP to MAPPING, reported under KEY (default: GROUP). Returns {name: value}
    of the values that passed, defaults filled in; a missing required value and, for a CLOSED
    group, an unknown key are reported too."""
    key = group if key is None else key
    fields = fields_of(group)
    good = {}
    for name, field in fields.items():
        where = "%s.%s" % (key, name) if key else name
        value = mapping.get(name)
        if value is None:
            if field.required:
                col.add(where, None, "is required: " + describe(field))
            elif field.default is not None:
                good[name] = field.default
            continue
        err = value_problem(field, value)
        if err:
            col.add(where, value, err)
        else:
            good[name] = value
    if group in CLOSED:
        for name in sorted(set(mapping) - set(fields), key=str):
            col.add("%s.%s" % (key, name), mapping[name], "is not a setting of %s (%s)" % (group, ", ".join(fields)))
    return good


# --------------------------------------------------------------------------- parsing


def parse_ip(value, version=None):
    """Return a netaddr.IPAddress for a plain address string, or an error text."""
    if not isinstance(value, str) or not value.strip():
        return None, "is not an IP address (expected a string such as 192.0.2.1 or 2001:db8::1)"
    text = value.strip()
    if "/" in text:
        return None, "must be a plain address without a prefix length"
    try:
        # INET_PTON: no short forms such as '10.1' or octal/hex tricks.
        addr = netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None, "is not a valid IP address"
    if version is not None and addr.version != version:
        return None, "is an IPv%d address where an IPv%d address is expected" % (addr.version, version)
    return addr, None


def parse_prefix(value, version=None, host_bits=False):
    """Return a netaddr.IPNetwork for 'addr/len', or an error text.

    host_bits=False: the prefix must be a network (no bits set after the length).
    host_bits=True: an interface address such as 198.51.100.2/30.
    """
    if not isinstance(value, str) or "/" not in value:
        return None, "is not a prefix (expected address/length, e.g. 203.0.113.0/24)"
    addr_text, _slash, len_text = value.strip().partition("/")
    addr, err = parse_ip(addr_text)
    if err:
        return None, "is not a valid prefix: the address part " + err
    if not len_text.isdigit():
        return None, "is not a valid prefix: the length is not a number"
    maxlen = 32 if addr.version == 4 else 128
    length = int(len_text)
    if length > maxlen:
        return None, "is not a valid prefix: /%d is longer than /%d" % (length, maxlen)
    net = netaddr.IPNetwork("%s/%d" % (addr, length))
    if version is not None and net.version != version:
        return None, "is an IPv%d prefix where an IPv%d prefix is expected" % (net.version, version)
    if not host_bits and net.ip != net.network:
        return None, "has host bits set (the network is %s)" % net.cidr
    return net, None


def asn_problem(value):
    """Error text for an ASN, or None when it is usable on a BGP session."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not _is_int(value):
        return "is not an AS number (expected an integer 1..4294967295)"
    if value < ASN_MIN or value > ASN_MAX:
        return "is out of range (1..4294967295)"
    for low, high, why in RESERVED_ASNS:
        if low <= value <= high:
            return "is a reserved AS number: %s" % why
    return None


def _as_int(value):
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def community_problem(value):
    """Error text for a BGP community, or None when it is valid and allowed."""
    if not isinstance(value, str) or not value.strip():
        return "is not a community (expected ASN:VALUE, ASN:X:Y or a well-known name)"
    text = value.strip()
    lowered = text.lower()
    if lowered in MANAGED_COMMUNITIES:
        return "is not allowed: " + MANAGED_COMMUNITIES[lowered]
    if lowered in WELL_KNOWN_COMMUNITY_NAMES:
        return None
    match = STD_COMMUNITY_RE.match(text)
    if match:
        high, low = int(match.group(1)), int(match.group(2))
        if high > 65535 or low > 65535:
            return "is not a valid standard community (each half must be 0..65535)"
        if "%d:%d" % (high, low) in MANAGED_COMMUNITIES:
            return "is not allowed: " + MANAGED_COMMUNITIES["%d:%d" % (high, low)]
        if high == 65535 and "%d:%d" % (high, low) not in WELL_KNOWN_COMMUNITY_NAMES.values():
            return "is an unknown well-known community (65535:x is reserved by IANA)"
        return None
    match = LARGE_COMMUNITY_RE.match(text)
    if match:
        if any(int(part) > 4294967295 for part in match.groups()):
            return "is not a valid large community (each part must be 0..4294967295)"
        return None
    if re.match(r"^[A-Za-z][A-Za-z-]*$", text):
        return "is an unknown community name (known: %s)" % ", ".join(sorted(WELL_KNOWN_COMMUNITY_NAMES))
    return "is not valid community syntax (expected ASN:VALUE, ASN:X:Y or a well-known name)"


def dns_name_problem(value):
    """Error text for a zone name, or None when it is a valid DNS name."""
    if not isinstance(value, str) or not value.strip():
        return "is not a DNS name"
    name = value.strip()
    if name == ".":
        return None
    if name.endswith("."):
        name = name[:-1]
    if len(name) > 253:
        return "is longer than 253 characters"
    for label in name.split("."):
        if not label:
            return "has an empty label"
        if len(label) > 63:
            return "has a label longer than 63 characters (%r)" % label
        if not SCOPE_LABEL_RE.match(label):
            return "has an invalid label %r (letters, digits, '-' and '_' only; no leading or trailing '-')" % label
    return None


# --------------------------------------------------------------------------- per-host rules


def _check_asn(col, key, value):
    err = asn_problem(value)
    if err:
        col.add(key, value, err)
        return None
    return _as_int(value)


def _check_service(col, hv):
    """Service addresses, aggregates and their relation; returns the parsed aggregates."""
    addresses = hv.get("anycast_service_addresses")
    parsed_addrs = []
    if not isinstance(addresses, list) or not addresses:
        col.add("anycast_service_addresses", addresses, "must be a non-empty list of IP addresses")
    else:
        for idx, value in enumerate(addresses):
            addr, err = parse_ip(value)
            key = "anycast_service_addresses[%d]" % idx
            if err:
                col.add(key, value, err)
            elif addr.is_multicast() or addr.is_loopback() or addr == netaddr.IPAddress(0, addr.version):
                col.add(key, value, "is not a unicast address usable for a service")
            else:
                parsed_addrs.append((key, value, addr))

    aggregates = hv.get("anycast_aggregates")
    parsed_aggs = []
    if not isinstance(aggregates, list) or not aggregates:
        col.add("anycast_aggregates", aggregates, "must be a non-empty list of {prefix: ...}")
    else:
        for idx, item in enumerate(aggregates):
            key = "anycast_aggregates[%d]" % idx
            if not isinstance(item, dict):
                col.add(key, item, "must be a mapping with a 'prefix' key")
                continue
            value = item.get("prefix")
            net, err = parse_prefix(value)
            if err:
                col.add(key + ".prefix", value, err)
                continue
            allow = check_fields(col, "anycast_aggregates[]", item, key).get("allow_more_specific", False)
            parsed_aggs.append((key + ".prefix", value, net, allow))

    # Duplicates and overlaps between aggregates.
    for i, (key_a, val_a, net_a, _allow_a) in enumerate(parsed_aggs):
        for key_b, val_b, net_b, _allow_b in parsed_aggs[i + 1:]:
            if net_a.version != net_b.version:
                continue
            if net_a == net_b:
                col.add(key_b, val_b, "duplicates %s (%s)" % (key_a, val_a))
            elif net_a in net_b or net_b in net_a:
                col.add(key_b, val_b, "overlaps %s (%s)" % (key_a, val_a))

    # Every service address inside an aggregate, and never equal to one.
    for key, value, addr in parsed_addrs:
        covering = [net for _key, _value, net, _allow in parsed_aggs if net.version == addr.version and addr in net]
        if not covering:
            col.add(key, value, "is outside every announced aggregate (anycast_aggregates)")
        elif any(net.prefixlen == (32 if addr.version == 4 else 128) for net in covering):
            col.add(key, value, "is itself announced as a host route: the connected route on lo would win "
                    "over the kernel route and nothing would be announced; announce the covering /24 or /48")
    # Each aggregate must carry at least one service address (an empty aggregate attracts traffic for nothing).
    for key, value, net, _allow in parsed_aggs:
        if parsed_addrs and not any(addr.version == net.version and addr in net for _key, _value, addr in parsed_addrs):
            col.add(key, value, "covers no service address (anycast_service_addresses)")
    return parsed_aggs


def _check_roas(col, hv, our_asn, parsed_aggs):
    """The ROAs of the service (RFC 6482: prefix, maxLength, origin AS) against what the fleet
    announces, as a validator does it (RFC 6811). Each aggregate must be RPKI-valid: covered by a
    ROA of our ASN whose maxLength reaches its length. Returns warnings (host, key, value, message)
    for ROAs looser than the announcements need (RFC 9319) or that authorise nothing announced."""
    warnings = []
    roas = hv.get("anycast_roas")
    if not isinstance(roas, list) or not roas:
        col.add("anycast_roas", roas, "must list the ROAs that cover the announced aggregates ({prefix, max_length, "
                "origin_asn}); without them nothing says the announcements are RPKI-valid")
        return warnings
    parsed = []
    for idx, roa in enumerate(roas):
        key = "anycast_roas[%d]" % idx
        if not isinstance(roa, dict):
            col.add(key, roa, "must be a mapping with prefix, max_length and origin_asn")
            continue
        unknown = sorted(set(roa) - {"prefix", "max_length", "origin_asn"})
        if unknown:
            col.add(key, roa, "has unknown key(s) %s (prefix, max_length, origin_asn)" % ", ".join(unknown))
        net, err = parse_prefix(roa.get("prefix"))
        if err:
            col.add(key + ".prefix", roa.get("prefix"), err)
            continue
        top = 32 if net.version == 4 else 128
        max_length = roa.get("max_length", net.prefixlen)
        if not _is_int(max_length) or not net.prefixlen <= max_length <= top:
            col.add(key + ".max_length", max_length, "must be an integer from the prefix length %d to %d"
                    % (net.prefixlen, top))
            continue
        origin = _as_int(roa.get("origin_asn"))
        # AS 0 is a valid ROA origin (RFC 7607): it says no AS may originate the prefix.
        err = None if origin == 0 else asn_problem(origin)
        if err:
            col.add(key + ".origin_asn", roa.get("origin_asn"), err)
            continue
        parsed.append((key, net, max_length, origin))

    seen = {}
    for key, net, max_length, origin in parsed:
        ident = (str(net.cidr), max_length, origin)
        if ident in seen:
            col.add(key, str(net.cidr), "duplicates %s" % seen[ident])
        seen.setdefault(ident, key)

    for agg_key, value, net, _allow in parsed_aggs:
        covering = [r for r in parsed if r[1].version == net.version and net in r[1]]
        if not covering:
            col.add(agg_key, value, "would be RPKI NotFound: no ROA of anycast_roas covers it (add one with origin "
                    "AS%s and max_length %d)" % (our_asn if our_asn is not None else "?", net.prefixlen))
            continue
        if our_asn is None:
            continue
        if any(origin == our_asn and net.prefixlen <= max_length for _k, _n, max_length, origin in covering):
            continue
        why = []
        for key, roa_net, max_length, origin in covering:
            if origin != our_asn:
                why.append("%s (%s) authorises AS%d, not our AS%d" % (key, roa_net.cidr, origin, our_asn))
            else:
                why.append("%s (%s) has max_length %d, shorter than the announced /%d"
                           % (key, roa_net.cidr, max_length, net.prefixlen))
        col.add(agg_key, value, "would be RPKI-invalid and dropped by every network that validates: "
                + "; ".join(why))

    for key, roa_net, max_length, origin in parsed:
        if origin != our_asn:
            continue
        inside = [net for _k, _v, net, _a in parsed_aggs if net.version == roa_net.version and net in roa_net]
        if not inside:
            warnings.append(Problem(col.host, key, str(roa_net.cidr), "authorises AS%d for a prefix the fleet does "
                                    "not announce (anycast_aggregates): remove it or announce the prefix" % origin))
            continue
        longest = max(net.prefixlen for net in inside)
        if max_length > longest:
            warnings.append(Problem(col.host, key + ".max_length", max_length, "is looser than the announcements "
                                    "need (the longest announced inside %s is /%d): anyone can announce a /%d "
                                    "with origin AS%d that validators accept (RFC 9319); set it to %d"
                                    % (roa_net.cidr, longest, max_length, origin, longest)))
    return warnings


def _check_zones(col, hv):
    zones = hv.get("anycast_zones")
    if not isinstance(zones, list) or not zones:
        col.add("anycast_zones", zones, "must be a non-empty list of {name: ...}")
        return
    seen = {}
    for idx, item in enumerate(zones):
        key = "anycast_zones[%d]" % idx
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            col.add(key, item, "must be a mapping with a 'name' key")
            continue
        err = dns_name_problem(name)
        if err:
            col.add(key + ".name", name, "is not a valid zone name: " + err)
            continue
        canon = name.strip().lower().rstrip(".") + "."
        if canon in seen:
            col.add(key + ".name", name, "duplicates %s" % seen[canon])
        seen[canon] = key


def _check_primary(col, hv):
    primary = hv.get("anycast_hidden_primary")
    if not isinstance(primary, dict):
        col.add("anycast_hidden_primary", primary, "must be a mapping with name, ipv4 and/or ipv6")
        return
    name = primary.get("name")
    if not isinstance(name, str) or not NODE_NAME_RE.match(name):
        col.add("anycast_hidden_primary.name", name, "must be a host name (letters, digits, '-')")
    if primary.get("ipv4") is None and primary.get("ipv6") is None:
        col.add("anycast_hidden_primary", primary, "needs an ipv4 or an ipv6 address")
    for fam, version in (("ipv4", 4), ("ipv6", 6)):
        if primary.get(fam) is not None:
            _addr, err = parse_ip(primary.get(fam), version)
            if err:
                col.add("anycast_hidden_primary." + fam, primary.get(fam), err)


def _check_health(col, hv):
    health = hv.get("anycast_health")
    if not isinstance(health, dict):
        col.add("anycast_health", health, "must be a mapping with interval, fall, rise and timeout")
        return
    good = check_fields(col, "anycast_health", health)
    interval, timeout = good.get("interval"), good.get("timeout")
    if interval is not None and timeout is not None and timeout >= interval:
        col.add("anycast_health.timeout", timeout,
                "must be shorter than the check interval (%s s): a check would still run when the next one starts"
                % interval)


def _check_bfd_profiles(col, hv):
    profiles = hv.get("anycast_bfd_profiles")
    if profiles is None:
        return {}
    if not isinstance(profiles, dict):
        col.add("anycast_bfd_profiles", profiles, "must be a mapping of profile name to timers")
        return {}
    for name, prof in profiles.items():
        key = "anycast_bfd_profiles.%s" % name
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            col.add(key, name, "is not a valid profile name (letters, digits, '_', '.', '-')")
        if not isinstance(prof, dict):
            col.add(key, prof, "must be a mapping with receive_interval, transmit_interval, detect_multiplier")
            continue
        check_fields(col, "anycast_bfd_profiles.*", prof, key)
    return profiles


def _check_node(col, hv, host):
    """Router-id, unicast addresses, interfaces.

    Returns the links (for the neighbour rules) and the facts the fleet-wide uniqueness rules
    need: node name, router-id and every address of the server, each with its key and value.
    """
    node_name = hv.get("anycast_node_name", host)
    if node_name is None:
        node_name = host
    if not isinstance(node_name, str) or not NODE_NAME_RE.match(node_name):
        col.add("anycast_node_name", node_name, "is not a valid node name (used as Knot identity and NSID)")
    facts = {"node_name": node_name if isinstance(node_name, str) and node_name else host,
             "router_id": None, "addresses": []}

    rid = hv.get("anycast_router_id")
    addr, err = parse_ip(rid, 4)
    if not err:
        facts["router_id"] = addr
    if err:
        col.add("anycast_router_id", rid, "must be an IPv4 address: it " + err if rid is not None else
                "is required (an IPv4 address, unique in the fleet)")
    elif int(addr) == 0 or addr.is_multicast():
        col.add("anycast_router_id", rid, "is not usable as a BGP router-id")

    facts["addresses"].extend(_family_addresses(col, hv, "anycast_unicast"))
    if hv.get("anycast_unicast_ipv4") is None and hv.get("anycast_unicast_ipv6") is None:
        col.add("anycast_unicast_ipv4", None, "a server needs a unicast address (anycast_unicast_ipv4 or _ipv6)")

    links = []
    interfaces = hv.get("anycast_interfaces")
    if interfaces is None:
        interfaces = []
    if not isinstance(interfaces, list):
        col.add("anycast_interfaces", interfaces, "must be a list of {name, ipv4, ipv6}")
        interfaces = []
    for idx, item in enumerate(interfaces):
        key = "anycast_interfaces[%d]" % idx
        if not isinstance(item, dict):
            col.add(key, item, "must be a mapping with name, ipv4 and/or ipv6")
            continue
        if not isinstance(item.get("name"), str) or not item.get("name"):
            col.add(key + ".name", item.get("name"), "must be an interface name")
        for fam, version in (("ipv4", 4), ("ipv6", 6)):
            value = item.get(fam)
            if value is None:
                continue
            net, err = parse_prefix(value, version, host_bits=True)
            if err:
                col.add("%s.%s" % (key, fam), value, err)
                continue
            facts["addresses"].append(("%s.%s" % (key, fam), value, net.ip))
            maxlen = 32 if version == 4 else 128
            if version == 4 and net.prefixlen < 31 and net.ip in (net.network, net.broadcast):
                col.add("%s.%s" % (key, fam), value, "is the network or broadcast address of its subnet")
                continue
            if net.prefixlen == maxlen:
                col.add("%s.%s" % (key, fam), value, "is a host route, not a link (give the subnet length)")
                continue
            links.append(("%s.%s" % (key, fam), value, net))

    # Where the primary reaches the server for NOTIFY and transfers (XoT): one of its own addresses.
    own = {addr for _key, _value, addr in facts["addresses"]}
    for key, value, addr in _family_addresses(col, hv, "anycast_xfr"):
        if addr not in own:
            col.add(key, value, "is not an address of this server (anycast_unicast_%s or one of anycast_interfaces): "
                    "the hidden primary reaches the server there" % key.rsplit("_", 1)[1])
    return links, facts


def _family_addresses(col, hv, prefix):
    """PREFIX_ipv4 and PREFIX_ipv6 where set: (key, value, address) for each that parses; the others
    are reported."""
    out = []
    for version in (4, 6):
        key = "%s_ipv%d" % (prefix, version)
        value = hv.get(key)
        if value is None:
            continue
        addr, err = parse_ip(value, version)
        if err:
            col.add(key, value, err)
        else:
            out.append((key, value, addr))
    return out


def _check_management(col, hv, parsed_aggs):
    """anycast_management_networks: what the host firewall opens everything to. Returns the parsed
    networks (possibly empty)."""
    key = "anycast_management_networks"
    nets = hv.get(key)
    if nets is None:
        col.add(key, None, "is required: the networks SSH, scrapes and operators come from (role host_firewall "
                "drops everything else that is not DNS or BGP/BFD from a neighbour)")
        return []
    if not isinstance(nets, list) or not nets:
        col.add(key, nets, "must be a non-empty list of prefixes (an empty list would lock the operator out)")
        return []
    parsed = []
    for idx, value in enumerate(nets):
        net, err = parse_prefix(value)
        item = "%s[%d]" % (key, idx)
        if err:
            col.add(item, value, err)
            continue
        if net.prefixlen == 0:
            col.add(item, value, "would open SSH and every other port to the whole Internet")
            continue
        clash = next((akey for akey, _avalue, agg, _allow in parsed_aggs
                      if agg.version == net.version and (net in agg or agg in net)), None)
        if clash:
            col.add(item, value, "overlaps the announced aggregate (%s): a source inside our own anycast prefix "
                    "arrives from anywhere on the Internet" % clash)
            continue
        # nftables refuses overlapping elements in one set ("conflicting intervals"): the ruleset would
        # fail on the node. Name the wider one to drop.
        inner = next(((pitem, pvalue) for pitem, pvalue, pnet in parsed
                      if pnet.version == net.version and (pnet in net or net in pnet)), None)
        if inner:
            col.add(item, value, "overlaps %s (%s): list each management network once (keep the wider one)"
                    % inner)
            continue
        parsed.append((item, value, net))
    return parsed


def _check_controller(col, hv, mgmt):
    """The controller's own source must be inside a management network where it can be known: its
    route to the host is on-link (no router, no NAT between them)."""
    route = hv.get(ROUTE_KEY)
    if not mgmt or not isinstance(route, dict) or not route.get("onlink") or not route.get("src"):
        return
    src, err = parse_ip(route["src"])
    if err or any(src in net for _key, _value, net in mgmt):
        return
    col.add("anycast_management_networks", [v for _k, v, _n in mgmt],
            "does not hold the controller's address %s (its route to %s is on-link): the host firewall would "
            "lock Ansible out" % (src, hv.get("ansible_host")))


def _check_connection_address(col, hv, parsed_aggs):
    """ansible_host must reach this very host: not an anycast address, not inside an aggregate."""
    value = hv.get("ansible_host")
    addr, err = parse_ip(value) if isinstance(value, str) else (None, "not an address")
    if err:
        return None  # a host name: nothing to compare
    for akey, _avalue, agg, _allow in parsed_aggs:
        if addr in agg:
            col.add("ansible_host", value, "is inside the announced aggregate (%s): Ansible would reach whichever "
                    "PoP the routing picks, not this host" % akey)
    return addr


def _check_address_roles(col, hv, own_addresses, mgmt, parsed_aggs):
    """Addresses that play roles which exclude each other: a BGP neighbour inside a management network,
    the hidden primary on this server or inside an aggregate."""
    for idx, up in enumerate(hv.get("anycast_upstreams") or []):
        for fam in ("ipv4", "ipv6"):
            addr, err = parse_ip(up.get(fam)) if isinstance(up, dict) and up.get(fam) is not None else (None, "-")
            clash = None if err else next((k for k, _v, net in mgmt if addr in net), None)
            if clash:
                col.add("anycast_upstreams[%d](%s).%s" % (idx, up.get("name"), fam), up.get(fam),
                        "is inside a management network (%s): a BGP neighbour would reach every port" % clash)
    primary = hv.get("anycast_hidden_primary") if isinstance(hv.get("anycast_hidden_primary"), dict) else {}
    own = {addr: key for key, _value, addr in own_addresses}
    for fam in ("ipv4", "ipv6"):
        addr, err = parse_ip(primary.get(fam)) if primary.get(fam) is not None else (None, "-")
        if err:
            continue
        if addr in own:
            col.add("anycast_hidden_primary." + fam, primary.get(fam),
                    "is this server's own address (%s): the primary is another machine" % own[addr])
        for akey, _avalue, agg, _allow in parsed_aggs:
            if addr in agg:
                col.add("anycast_hidden_primary." + fam, primary.get(fam),
                        "is inside the announced aggregate (%s): the primary is never announced, transfers "
                        "would reach a PoP server instead" % akey)


def _check_soa_timers(col, hv):
    """anycast_soa_timers: what every zone file's SOA must carry (knot_dns's zones.yml compares)."""
    timers = hv.get("anycast_soa_timers")
    if timers is None:
        return
    if not isinstance(timers, dict):
        col.add("anycast_soa_timers", timers, "must be a mapping of refresh, retry, expire, minimum (seconds)")
        return
    values = check_fields(col, "anycast_soa_timers", timers)
    if {"refresh", "retry"} <= set(values) and values["retry"] >= values["refresh"]:
        col.add("anycast_soa_timers.retry", values["retry"],
                "must be shorter than refresh (%d): a failed refresh is retried sooner than the next one"
                % values["refresh"])
    if {"refresh", "retry", "expire"} <= set(values) and values["expire"] < values["refresh"] + 2 * values["retry"]:
        col.add("anycast_soa_timers.expire", values["expire"],
                "must leave time for the refresh and two retries (at least %d): the zone would expire on the "
                "PoP servers before a failed refresh is noticed" % (values["refresh"] + 2 * values["retry"]))


def _check_upstreams(col, hv, *, our_asn, links, profiles, parsed_aggs):
    upstreams = hv.get("anycast_upstreams")
    if not isinstance(upstreams, list) or not upstreams:
        col.add("anycast_upstreams", upstreams, "must be a non-empty list: a server with no upstream announces nothing")
        return
    require_pw = check_fields(col, "", hv).get("anycast_bgp_require_password", True)
    names = {}
    neighbours = {}
    own_addrs = {net.ip: key for key, _value, net in links}
    for idx, up in enumerate(upstreams):
        key = "anycast_upstreams[%d]" % idx
        if not isinstance(up, dict):
            col.add(key, up, "must be a mapping describing one BGP neighbour")
            continue
        name = up.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,63}$", name):
            col.add(key + ".name", name, "must be a name of letters, digits, '_', '.', '-'")
        elif name in names:
            col.add(key + ".name", name, "duplicates %s" % names[name])
        else:
            names[name] = key
            key = "anycast_upstreams[%d](%s)" % (idx, name)

        good = check_fields(col, "anycast_upstreams[]", up, key)
        utype = good.get("type")

        asn = up.get("asn")
        err = asn_problem(asn)
        if err:
            col.add(key + ".asn", asn, err)
        elif our_asn is not None and _as_int(asn) == our_asn:
            col.add(key + ".asn", asn, "equals our own ASN (anycast_asn): this must be an eBGP session")

        multihop = good.get("multihop", 0)
        gtsm = good.get("ttl_security_hops")
        if gtsm is not None:
            if gtsm > 0 and multihop > 1:
                col.add(key + ".ttl_security_hops", gtsm,
                        "and multihop (%d) exclude each other (FRR refuses ttl-security with ebgp-multihop): a session "
                        "%d hops away with GTSM sets ttl_security_hops: %d alone" % (multihop, multihop, multihop))
            elif gtsm > 1:
                multihop = gtsm  # a neighbour that far is not on a link

        if up.get("ipv4") is None and up.get("ipv6") is None:
            col.add(key, name, "needs a neighbour address (ipv4 and/or ipv6)")
        for fam, version in (("ipv4", 4), ("ipv6", 6)):
            value = up.get(fam)
            if value is None:
                continue
            addr, err = parse_ip(value, version)
            if err:
                col.add("%s.%s" % (key, fam), value, err)
                continue
            if addr in own_addrs:
                col.add("%s.%s" % (key, fam), value, "is this server's own address (%s)" % own_addrs[addr])
                continue
            if addr in neighbours:
                col.add("%s.%s" % (key, fam), value, "duplicates the neighbour of %s" % neighbours[addr])
            neighbours[addr] = key
            if multihop <= 1 and not any(net.version == version and addr in net for _key, _value, net in links):
                col.add("%s.%s" % (key, fam), value,
                        "is on none of this server's links (anycast_interfaces) while multihop is off")

        profile = up.get("bfd_profile")
        if profile is not None and (not isinstance(profile, str) or profile not in (profiles or {})):
            col.add(key + ".bfd_profile", profile, "is not defined in anycast_bfd_profiles")

        password = up.get("password")
        if password in (None, ""):
            if require_pw:
                col.add(key + ".password", "<empty>",
                        "is missing while anycast_bgp_require_password is true (TCP-MD5 from the vault)")
        elif not isinstance(password, str):
            col.add(key + ".password", "<not shown>", "must be a string")
        elif len(password) > MD5_MAX_LEN:
            col.add(key + ".password", "<%d characters>" % len(password),
                    "is longer than the kernel's TCP-MD5 key limit (%d)" % MD5_MAX_LEN)

        communities = up.get("communities", [])
        if communities is None:
            communities = []
        if not isinstance(communities, list):
            col.add(key + ".communities", communities, "must be a list")
            communities = []
        for cidx, community in enumerate(communities):
            err = community_problem(community)
            if err:
                col.add("%s.communities[%d]" % (key, cidx), community, err)

        if utype == "transit":
            for akey, avalue, net, allow in parsed_aggs:
                if net.prefixlen > TRANSIT_MAX_PREFIXLEN[net.version] and not allow:
                    col.add(akey, avalue,
                            "is more specific than /%d and would be filtered on the Internet; it is announced to "
                            "transit %s (set allow_more_specific: true to allow it)"
                            % (TRANSIT_MAX_PREFIXLEN[net.version], name))


def check_server(host, hv):
    """All rules that concern one server's own variables.

    Returns (problems, facts); facts feed the fleet-wide uniqueness rules (see _check_node).
    """
    col = _Collector(host)
    our_asn = None
    if "anycast_asn" not in hv or hv.get("anycast_asn") is None:
        col.add("anycast_asn", None, "is required (our AS number)")
    else:
        our_asn = _check_asn(col, "anycast_asn", hv.get("anycast_asn"))
    parsed_aggs = _check_service(col, hv)
    warnings = _check_roas(col, hv, our_asn, parsed_aggs)
    _check_zones(col, hv)
    _check_primary(col, hv)
    _check_soa_timers(col, hv)
    _check_health(col, hv)
    profiles = _check_bfd_profiles(col, hv)
    links, facts = _check_node(col, hv, host)
    _check_upstreams(col, hv, our_asn=our_asn, links=links, profiles=profiles, parsed_aggs=parsed_aggs)
    mgmt = _check_management(col, hv, parsed_aggs)
    _check_controller(col, hv, mgmt)
    _check_address_roles(col, hv, facts["addresses"], mgmt, parsed_aggs)
    facts["connection"] = _check_connection_address(col, hv, parsed_aggs)
    facts["aggregates"] = parsed_aggs
    facts["warnings"] = warnings
    return col.problems, facts


# --------------------------------------------------------------------------- fleet rules


def _pop_codes(col, pops):
    codes = []
    if not isinstance(pops, list) or not pops:
        col.add("anycast_pops", pops, "must be a non-empty list of {code, city} in rollout order")
        return codes
    for idx, pop in enumerate(pops):
        code = pop.get("code") if isinstance(pop, dict) else None
        if not isinstance(code, str) or not NODE_NAME_RE.match(code):
            col.add("anycast_pops[%d].code" % idx, code, "must be a short PoP code such as hkg")
            continue
        if code in codes:
            col.add("anycast_pops[%d].code" % idx, code, "is listed twice")
            continue
        codes.append(code)
        probe_from = pop.get("probe_from", [])
        if not isinstance(probe_from, list) or not all(isinstance(h, str) and h for h in probe_from):
            col.add("anycast_pops[%d].probe_from" % idx, probe_from,
                    "must be a list of inventory host names (vantage points in the PoP's catchment)")
    return codes


def _check_rolling(col, rolling, pops):
    """anycast_rolling (playbooks/rolling.yml, drain.yml): optional, but whole when given."""
    if rolling is None:
        return
    if not isinstance(rolling, dict):
        col.add("anycast_rolling", rolling, "must be a mapping with %s" % ", ".join(fields_of("anycast_rolling")))
        return
    quorum = check_fields(col, "anycast_rolling", rolling).get("quorum")
    if pops and quorum is not None and quorum >= len(pops):
        col.add("anycast_rolling.quorum", quorum,
                "must be less than the number of PoPs (%d): the PoP being rolled out is never counted" % len(pops))


def fleet_warnings(servers):
    """What is allowed but unwise (a ROA looser than the announcements need), as Problems."""
    warnings = []
    check_fleet(servers, warnings=warnings)
    return warnings


def _check_infra(host, hv, aggregates):
    """The hidden primary and the monitoring node: their management networks and connection address."""
    col = _Collector(host)
    mgmt = _check_management(col, hv, aggregates)
    _check_controller(col, hv, mgmt)
    return col.problems, _check_connection_address(col, hv, aggregates)


def check_fleet(servers, errors=None, warnings=None, infra=None):
    """Run every rule on the fleet.

    servers: {host: {var: value}} for every host of the servers group.
    infra: {host: {var: value}} for the other hosts the roles manage (hidden primary, monitoring node):
    INFRA_KEYS and the controller's route.
    errors: problems already found while reading the inventory (e.g. undefined vars).
    warnings: a list that receives, sorted and without duplicates, what is allowed but unwise.
    Returns a list of Problem, sorted and without duplicates.
    """
    problems = list(errors or [])
    if not servers:
        problems.append(Problem("(inventory)", "anycast_servers", None,
                                "the group of anycast servers is empty or missing"))
        return problems

    pop_members = {}
    unique = {"node name": {}, "router-id": {}, "address": {}, "connection address (ansible_host)": {}}
    aggregates = []
    pop_lists = {}
    for host in sorted(servers):
        hv = servers[host] or {}
        server_problems, facts = check_server(host, hv)
        problems.extend(server_problems)
        if warnings is not None:
            warnings.extend(facts["warnings"])
        col = _Collector(host)
        codes = _pop_codes(col, hv.get("anycast_pops"))
        pop_lists[host] = codes
        _check_rolling(col, hv.get("anycast_rolling"), codes)
        pop = hv.get("anycast_pop")
        if pop is None:
            col.add("anycast_pop", None, "server is in no PoP (put it in a PoP group, which sets anycast_pop)")
        elif pop not in codes:
            col.add("anycast_pop", pop, "is not a PoP of anycast_pops (%s)" % ", ".join(codes))
        else:
            pop_members.setdefault(pop, []).append(host)
        problems.extend(col.problems)

        node_name = facts["node_name"]
        unique["node name"].setdefault(node_name.lower(), []).append((host, "anycast_node_name", node_name))
        if facts["router_id"] is not None:
            unique["router-id"].setdefault(facts["router_id"], []).append(
                (host, "anycast_router_id", hv.get("anycast_router_id")))
        for key, value, addr in facts["addresses"]:
            unique["address"].setdefault(addr, []).append((host, key, value))
        if facts["connection"] is not None:
            unique["connection address (ansible_host)"].setdefault(facts["connection"], []).append(
                (host, "ansible_host", hv.get("ansible_host")))
        aggregates = aggregates or facts["aggregates"]

    for host in sorted(infra or {}):
        infra_problems, connection = _check_infra(host, infra[host] or {}, aggregates)
        problems.extend(infra_problems)
        if connection is not None:
            unique["connection address (ansible_host)"].setdefault(connection, []).append(
                (host, "ansible_host", infra[host].get("ansible_host")))

    for what, table in unique.items():
        for entries in table.values():
            # The same address twice on one host (unicast address also on an interface) is fine.
            if len({host for host, _key, _value in entries}) < 2:
                continue
            for host, key, value in entries:
                others = ", ".join(sorted({"%s (%s)" % (h, k) for h, k, _value in entries if h != host}))
                problems.append(Problem(host, key, value, "duplicate %s: also used by %s" % (what, others)))

    # PoPs without servers: judged on each distinct anycast_pops list.
    reported = set()
    for codes in pop_lists.values():
        for code in codes:
            if code not in pop_members and code not in reported:
                reported.add(code)
                problems.append(Problem("PoP " + code, "anycast_pops", code,
                                        "this PoP has no servers (its group is empty or missing)"))

    # A variable that could not be read is reported once, not again by every rule that needs it.
    unreadable = {(p.host, p.key) for p in (errors or [])}
    problems = [p for p in problems if p in (errors or []) or (p.host, _top_key(p.key)) not in unreadable]
    if warnings is not None:
        warnings[:] = dedupe(warnings)
    return dedupe(problems)


def _top_key(key):
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def dedupe(problems):
    seen = set()
    out = []
    for problem in problems:
        ident = (problem.host, problem.key, repr(problem.value), problem.message)
        if ident not in seen:
            seen.add(ident)
            out.append(problem)
    return sorted(out, key=lambda p: (p.key, p.message, repr(p.value), p.host))


def format_problems(problems):
    """One line per distinct (key, value, message), naming every host it concerns."""
    grouped = {}
    order = []
    for problem in problems:
        ident = (problem.key, repr(problem.value), problem.message)
        if ident not in grouped:
            grouped[ident] = []
            order.append(ident)
        grouped[ident].append(problem.host)
    lines = []
    for ident in order:
        key, value, message = ident
        hosts = ", ".join(sorted(set(grouped[ident])))
        lines.append("%s: %s = %s: %s" % (hosts, key, value, message))
    return lines
