# Copyright: contributors to the anycast.dns collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over zone files. Documentation: soa_timers.yml and soa_timer_differences.yml next to
this file."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import dns.exception
    import dns.rdatatype
    import dns.zone
    HAS_DNSPYTHON = True
except ImportError:  # pragma: no cover - the controller's requirements bring it
    HAS_DNSPYTHON = False


def soa_timers(text, origin):
    """The SOA timers of a zone file's text: {refresh, retry, expire, minimum} in seconds."""
    if not HAS_DNSPYTHON:
        raise AnsibleFilterError("soa_timers needs the Python package dnspython on the controller")
    try:
        zone = dns.zone.from_text(text, origin=str(origin).rstrip(".") + ".", relativize=True, check_origin=False)
        soa = zone.get_rdataset("@", dns.rdatatype.SOA)
    except dns.exception.DNSException as exc:
        raise AnsibleFilterError(f"soa_timers: zone {origin}: the file cannot be read: {exc}") from exc
    if soa is None:
        raise AnsibleFilterError(f"soa_timers: zone {origin}: the file has no SOA at its apex")
    rdata = soa[0]
    return {"refresh": rdata.refresh, "retry": rdata.retry, "expire": rdata.expire, "minimum": rdata.minimum}


def soa_timer_differences(text, origin, expected):
    """What differs between a zone file's SOA timers and EXPECTED ({field: seconds}), as
    ["refresh 3600 (expected 30)", ...]; [] when they agree."""
    have = soa_timers(text, origin)
    if not isinstance(expected, dict):
        raise AnsibleFilterError(f"soa_timer_differences: expected must be a mapping, got {expected!r}")
    out = []
    for field, want in sorted(expected.items()):
        if field not in have:
            raise AnsibleFilterError(f"soa_timer_differences: {field!r} is not an SOA timer ({', '.join(have)})")
        if have[field] != int(want):
            out.append(f"SOA {field} {have[field]} (the inventory says {int(want)})")
    return out


class FilterModule:
    def filters(self):
        return {"soa_timers": soa_timers, "soa_timer_differences": soa_timer_differences}
