"""Issue 24, part 3 on the lab: a zone signed wrong never reaches a validating resolver through a
PoP server that validates, and the alerts fire long before any resolver would fail.

The fault: the hidden primary's clock jumps two days ahead while Knot runs (a VM resumed with a
wrong clock), Knot re-signs a zone then (its signatures valid only from 46 hours on), and NTP steps
the clock back. TSIG works again, so the PoP servers are told of the new serial and fetch it.
(While the clock is off, TSIG itself refuses every NOTIFY and transfer: BADTIME.) Knot does not
re-sign on its own before the signatures' refresh time, so without a check every validating
resolver would get SERVFAIL for the zone while every health check passes. The lab's clocks are the
host's: the primary's Knot alone is given a fake clock (libfaketime, installed for this test from
the lab's apt cache and removed after it).

What the test shows:
- every PoP server with `knot_dns_validate_transfers` (the default) refuses the zone and keeps
  serving the last valid one; gru1, whose validation is switched off at run time (knotc, not
  persisted), takes it, and the lab's validating Unbound in its region fails at once (SERVFAIL)
  while the other five regions keep validating (NOERROR, AD): what the default prevents;
- DNSSECInceptionInFuture fires for the primary (its exporter asks the primary itself) and for
  gru1 (its anycast addresses serve the bad signatures); ZoneRefreshFailing fires for the PoP
  servers that refuse, and ZoneBehindPrimary is pending for them (it fires after 5 minutes);
- the lead time: from the fault to the alert in seconds; from the alert to the first resolver
  failure behind a validating PoP, the served signatures' remaining validity plus Unbound's clock
  skew allowance, or the zone's expiry on the PoP servers if sooner, in days.
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path

import pytest

from tests.lab.fleet import NEAREST_POP, POP_OF, SERVERS, SERVICE, sh, wait_for
from tests.lab.test_knot import PRIMARY, PRIMARY_ADDR, UNICAST, ds_records, knot_journal, resolve, serial_on
from tests.lab.test_monitoring import firing, query

pytestmark = pytest.mark.lab

ZONE = "example.com"
NAME = "www.example.com."
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
FAKE_CLOCK = "/run/anycast-lab-faketime"  # the offset the primary's Knot reads (re-read every second)
DROPIN = "/run/systemd/system/knot.service.d/anycast-lab-faketime.conf"
AHEAD = 2 * 86400
UNVALIDATING = "gru1"
VALIDATING = [s for s in SERVERS if s != UNVALIDATING]
# Unbound's allowance for clock skew: 10 % of a signature's validity span, at least
# val-sig-skew-min and at most val-sig-skew-max (the defaults; the lab's Unbound keeps them).
UNBOUND_SKEW_MIN, UNBOUND_SKEW_MAX = 3600, 86400
REFUSAL = "DNSSEC, validation failed"
ALERT_WAIT = 150


def rrsig_window(node: str, address: str) -> tuple[int, int, int] | None:
    """(serial, inception, expiration) of the apex SOA and its RRSIG that NODE gets from ADDRESS."""
    out = sh(node, f"dig +dnssec +norec +time=1 +tries=1 @{address} {ZONE} SOA", check=False).stdout
    soa = re.search(rf"^{re.escape(ZONE)}\.\s+\d+\s+IN\s+SOA\s+\S+\s+\S+\s+(\d+)", out, re.M)
    rrsig = rf"^{re.escape(ZONE)}\.\s+\d+\s+IN\s+RRSIG\s+SOA(?:\s+\d+){{3}}\s+(\d{{14}})\s+(\d{{14}})"
    sig = re.search(rrsig, out, re.M)
    if not (soa and sig):
        return None

    def epoch(stamp: str) -> int:
        return calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%S"))
    return int(soa.group(1)), epoch(sig.group(2)), epoch(sig.group(1))


def unbound_skew(inception: int, expiration: int) -> int:
    return int(min(max(0.1 * (expiration - inception), UNBOUND_SKEW_MIN), UNBOUND_SKEW_MAX))


def refused_since(server: str, since: float) -> bool:
    refusals = (f"[{ZONE}.] {REFUSAL}", f"[{ZONE}.] DNSSEC, incremental validation failed")
    return any(r in m for _, m in knot_journal(server, since) for r in refusals)


def repair_the_primary() -> None:
    """Knot on the real clock again (it re-signs what is not valid now), libfaketime removed."""
    sh(PRIMARY, f"rm -f {DROPIN} {FAKE_CLOCK}; systemctl daemon-reload; systemctl restart knot; "
                f"knotc zone-sign {ZONE}; apt-get purge -y -q libfaketime >/dev/null 2>&1", check=False)


def in_step_with_the_primary(timeout: float = 60) -> dict[str, int]:
    """Every PoP server's serial of ZONE once they all serve the primary's. The modules before this
    one change the zone and the transfers' keys: a server can be a transfer behind when it starts
    (ci62: tyo1 served a serial 154 s older than the others'). The primary sends NOTIFY again while
    one is behind; who was behind, and for how long, is printed."""
    started, behind = time.monotonic(), {}

    def serials() -> dict[str, int] | None:
        want = serial_on(PRIMARY, PRIMARY_ADDR, ZONE)
        got = {s: serial_on(s, UNICAST[s], ZONE) for s in SERVERS}
        late = {s: v for s, v in got.items() if v != want}
        if want is not None and not late:  # None: no authoritative answer, never in step
            return got
        behind.update({s: (v, want) for s, v in late.items()})
        sh(PRIMARY, f"knotc zone-notify {ZONE}", check=False)
        return None
    good = wait_for(serials, timeout, 2)
    assert good, f"PoP servers not on the primary's serial of {ZONE} after {timeout:.0f} s (serial, primary's): " \
                 f"{behind}"
    if behind:
        print(f"\n[dnssec] at the start, behind the primary (serial, primary's): {behind}; every PoP server on its "
              f"serial {time.monotonic() - started:.1f} s later")
    return good


def test_a_zone_signed_with_the_clock_ahead_is_refused_by_the_pops_and_alerts_fire_days_before_resolvers_fail(
        converged, tmp_path: Path):
    anchors = tmp_path / "anchors.txt"
    anchors.write_text(ds_records())
    good = in_step_with_the_primary()
    sh(PRIMARY, "apt-get install -y -q --no-install-recommends libfaketime >/dev/null")
    try:
        # gru1 takes whatever the primary sends, as every PoP server did before this issue.
        sh(UNVALIDATING, "knotc conf-begin && knotc conf-unset 'template[default].dnssec-validation' "
                         "&& knotc conf-commit")
        # The primary's Knot on a clock two days ahead; it re-signs the zone then.
        sh(PRIMARY, f"echo +{AHEAD}s > {FAKE_CLOCK}; mkdir -p {Path(DROPIN).parent}; printf '%s\\n' '[Service]' "
                    f"'Environment=LD_PRELOAD={LIBFAKETIME} FAKETIME_TIMESTAMP_FILE={FAKE_CLOCK} "
                    "FAKETIME_CACHE_DURATION=1 FAKETIME_DONT_FAKE_MONOTONIC=1' > " + DROPIN
                    + "; systemctl daemon-reload; systemctl restart knot")
        since = time.time()  # the machines' clocks are the host's
        sh(PRIMARY, f"knotc zone-sign {ZONE}")
        faulted = time.monotonic()
        assert wait_for(lambda: (w := rrsig_window(PRIMARY, PRIMARY_ADDR)) and w[0] > good["hkg1"], 10, 0.5)
        bad_serial, inception, expiration = rrsig_window(PRIMARY, PRIMARY_ADDR)
        ahead = inception - time.time()
        # Valid only in about 46 h (two days less Knot's 90 min back-dating): beyond the skew any
        # validator allows (Unbound at most a day), so every validator would reject it now.
        assert ahead > UNBOUND_SKEW_MAX, ahead
        # NTP steps the clock back; then the PoP servers learn of the serial (NOTIFY, TSIG valid
        # again; they would also find it at their next SOA refresh). libfaketime takes the new
        # offset up when its cache runs out, which took more than 1.5 s in some runs: the NOTIFY
        # met BADTIME again, and the PoP servers found the serial only at their next refresh, up
        # to 30 s later (ci for stop 38). NOTIFY again until the primary logs one as sent.
        sh(PRIMARY, f"echo +0s > {FAKE_CLOCK}")

        def notified() -> bool:
            at = time.time()
            sh(PRIMARY, f"knotc zone-notify {ZONE}")
            return bool(wait_for(lambda: any(
                "notify, outgoing" in m and f"serial {bad_serial}" in m for _, m in knot_journal(PRIMARY, at)),
                2, 0.5))
        assert wait_for(notified, 20, 0), "the primary's NOTIFY was refused for 20 s after its clock went back"

        # The validating PoP servers refuse it and keep the last valid zone; gru1 serves it.
        assert wait_for(lambda: all(refused_since(s, since) for s in VALIDATING), 20, 0.5), {
            s: refused_since(s, since) for s in VALIDATING}
        assert wait_for(lambda: serial_on(UNVALIDATING, UNICAST[UNVALIDATING], ZONE) == bad_serial, 20, 0.5)
        assert {s: serial_on(s, UNICAST[s], ZONE) for s in VALIDATING} == {s: good[s] for s in VALIDATING}
        taken = time.monotonic() - faulted

        # What validating resolvers see: SERVFAIL only in the region behind gru1.
        answers = {client: resolve(client, anchors, NAME, "A") for client in NEAREST_POP}
        seen = {client: (a["rcode"], a["ad"]) for client, a in answers.items()}
        assert seen == {client: ("SERVFAIL", False) if pop == POP_OF[UNVALIDATING] else ("NOERROR", True)
                        for client, pop in NEAREST_POP.items()}, seen

        # The alerts: the signer's own view and gru1's served view; the refusing PoP servers.
        expected = {("DNSSECInceptionInFuture", PRIMARY), ("DNSSECInceptionInFuture", UNVALIDATING)} | {
            ("ZoneRefreshFailing", s) for s in VALIDATING}
        fired_at: dict[tuple[str, str], float] = {}
        while time.monotonic() - faulted < ALERT_WAIT and not expected <= set(fired_at):
            for key in firing() - set(fired_at):
                fired_at[key] = time.monotonic() - faulted
            time.sleep(1)
        assert expected <= set(fired_at), (sorted(fired_at), sorted(expected - set(fired_at)))
        behind = query('ALERTS{alertname="ZoneBehindPrimary", alertstate="pending"}')
        pending = {r["metric"]["instance"] for r in behind}
        assert pending >= set(VALIDATING), pending

        # The lead time behind the refusing PoP servers: what they serve stays valid until its
        # signatures expire (plus Unbound's skew allowance), unless the zone expires first there.
        served = [rrsig_window(s, SERVICE[4]) for s in VALIDATING]
        assert all(w and w[0] == good[s] for w, s in zip(served, VALIDATING, strict=True)), served
        fails_in = min(w[2] + unbound_skew(w[1], w[2]) for w in served) - time.time()
        zone_expiry = min(float(r["value"][1]) for r in query(
            f'knot_zone_expires_in_seconds{{zone="{ZONE}", role="pop", instance!="{UNVALIDATING}"}}'))
        alert = fired_at[("DNSSECInceptionInFuture", PRIMARY)]
        lead_days = (min(fails_in, zone_expiry)) / 86400
        print(f"\n[dnssec] primary signed {ZONE} (serial {bad_serial}) with signatures valid only in "
              f"{ahead / 3600:.1f} h; refused by {len(VALIDATING)} validating PoP servers, taken by "
              f"{UNVALIDATING} {taken:.1f} s after the fault; Unbound behind {UNVALIDATING}: SERVFAIL at once, "
              f"the other five regions NOERROR with AD")
        print("[dnssec] alerts after the fault: " + ", ".join(
            f"{a} ({who}) {s:.0f} s" for (a, who), s in sorted(fired_at.items(), key=lambda kv: kv[1])
            if (a, who) in expected))
        print(f"[dnssec] lead time behind the validating PoP servers: alert {alert:.0f} s after the fault; a "
              f"resolver would fail {fails_in / 86400:.1f} days later (signatures + Unbound's skew), the zone "
              f"expires on them in {zone_expiry / 86400:.1f} days: {lead_days:.1f} days of lead")
        assert alert < 120 and lead_days > 7, (alert, lead_days)
    finally:
        repair_the_primary()
        sh(UNVALIDATING, "knotc reload", check=False)  # back to knot.conf: validation on
    # Repaired: every PoP server takes the re-signed zone, every region validates, the alerts resolve.
    fixed = serial_on(PRIMARY, PRIMARY_ADDR, ZONE)
    assert wait_for(lambda: all(serial_on(s, UNICAST[s], ZONE) == fixed for s in SERVERS), 30, 0.5), {
        s: serial_on(s, UNICAST[s], ZONE) for s in SERVERS}
    assert sh(UNVALIDATING, "knotc conf-read 'template[default].dnssec-validation'").stdout.split()[-1] == "on"
    for client in ("cl-gru", "cl-hkg"):
        ans = resolve(client, anchors, NAME, "A")
        assert (ans["rcode"], ans["ad"]) == ("NOERROR", True), (client, ans)
    # The alerts this fault raised resolve (others may fire for what earlier tests did, say FirewallRolledBack).
    raised = {"DNSSECInceptionInFuture", "ZoneRefreshFailing", "ZoneBehindPrimary", "SOASerialDiffers"}
    assert wait_for(lambda: not {k for k in firing() if k[0] in raised}, 120, 2), firing()
    assert sh(PRIMARY, "dpkg -s libfaketime", check=False).returncode != 0
