# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small DNS helpers shared by the collection's modules (dnspython on the managed node).

Private to the collection: the interface may change between releases.
"""

from __future__ import annotations

from collections import namedtuple

from ansible.module_utils.basic import missing_required_lib

try:
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype

    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported through missing_required_lib
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = exc

# serial is None when the server gave no usable answer; problem then says why. nsid: the server's
# NSID (RFC 5001) when it was asked for and sent one.
SoaAnswer = namedtuple("SoaAnswer", ["serial", "problem", "nsid"], defaults=(None,))


def require_dnspython(module):
    """Fail MODULE the Ansible way when dnspython is missing on the managed node."""
    if not HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(DNSPYTHON_IMPORT_ERROR))


def serials(servers, zones, port=53, timeout=1.0, tcp=False):
    """{server: {zone: serial, or the problem text when it served none}} for one round of queries."""
    result = {}
    for server in servers:
        result[server] = {}
        for zone in zones:
            answer = soa_serial(server, zone, port=port, timeout=timeout, tcp=tcp)
            result[server][zone] = answer.serial if answer.serial is not None else answer.problem
    return result


def lagging(seen, expect):
    """Human lines for every (server, zone) of SEEN (as serials() returns) not serving EXPECT yet."""
    lines = []
    for server, zones in seen.items():
        for zone, got in zones.items():
            if isinstance(got, str):
                lines.append("%s %s: %s" % (server, zone, got))
            elif zone in expect and not serial_newer_or_equal(got, expect[zone]):
                lines.append("%s %s: serial %d, expected %d or newer" % (server, zone, got, expect[zone]))
    return lines


def serial_newer_or_equal(serial, reference):
    """RFC 1982 comparison: True when SERIAL is REFERENCE or comes after it."""
    diff = (serial - reference) % (1 << 32)
    return diff == 0 or diff < (1 << 31)


def soa_serial(server, zone, port=53, timeout=1.0, tcp=False, *, nsid=False):
    """Ask SERVER for ZONE's SOA; only an authoritative NOERROR answer with the SOA counts."""
    qname = dns.name.from_text(zone)
    options = [dns.edns.GenericOption(dns.edns.NSID, b"")] if nsid else None
    query = dns.message.make_query(qname, dns.rdatatype.SOA, use_edns=0 if nsid else None, options=options)
    query.flags &= ~dns.flags.RD
    try:
        if tcp:
            response = dns.query.tcp(query, server, timeout=timeout, port=port)
        else:
            response = dns.query.udp(query, server, timeout=timeout, port=port)
    except dns.exception.Timeout:
        return SoaAnswer(None, "no answer within %.1f s" % timeout)
    except (OSError, dns.exception.DNSException) as exc:
        return SoaAnswer(None, "query failed: %s" % exc)
    who = None
    for option in response.options:
        if option.otype == dns.edns.NSID:
            data = option.to_wire() if hasattr(option, "to_wire") else b""
            who = data.decode("utf-8", "replace") or None
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return SoaAnswer(None, "answered %s" % dns.rcode.to_text(rcode), who)
    if not response.flags & dns.flags.AA:
        return SoaAnswer(None, "answer is not authoritative", who)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == qname:
            return SoaAnswer(rrset[0].serial, None, who)
    return SoaAnswer(None, "no SOA in the answer", who)
