"""Issue 8 on the lab: site.yml's monitoring (Prometheus on monitor1; node, FRR and Knot exporters
on the servers; blackbox DNS probes of the unicast and anycast addresses; the health state;
Alertmanager with the lab's webhook receiver) scrapes every target, the dashboard's panels show
metrics the lab really exports, and stopping Knot on a PoP fires the expected alerts within 60 s,
which resolve after Knot is back, while the anycast address keeps answering."""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import REPO
from tests.lab.fleet import sh, wait_for

pytestmark = pytest.mark.lab

MONITOR = "198.18.0.51"
PROMETHEUS = f"http://{MONITOR}:9090"
VICTORIA = f"http://{MONITOR}:8428"  # long-term storage: Prometheus remote-writes every sample there
ALERTMANAGER = f"http://{MONITOR}:9093"
DASHBOARD = REPO / "roles/monitoring/files/dashboards/anycast-fleet.json"
NODE, POP = "fra1", "fra"
SINK_LOG = "/run/alert-sink.jsonl"
# A webhook receiver on monitor1 (the lab's Alertmanager sends to 127.0.0.1:9095): one JSON line
# per notification. Runs as a transient unit, so that it goes with the machine.
SINK = (
    "import http.server,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    "        body=self.rfile.read(int(self.headers.get('Content-Length',0)))\n"
    f"        open('{SINK_LOG}','ab').write(body.replace(b'\\n',b' ')+b'\\n')\n"
    "        self.send_response(200); self.end_headers()\n"
    "    def log_message(self,*a): pass\n"
    "http.server.HTTPServer(('127.0.0.1',9095),H).serve_forever()\n"
)
# Jobs and how many targets the lab inventory gives each (5 PoP servers, the primary, monitor1).
EXPECTED_TARGETS = {"node": 7, "frr": 5, "knot": 6, "prometheus": 1, "victoriametrics": 1, "collector": 1,
                    "dns_unicast": 5 * 2 * 2,  # servers x zones x (UDP, TCP), IPv4 unicast
                    "dns_anycast": 2 * 2 * 2}  # addresses x zones x (UDP, TCP)
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - lab address only
        return json.loads(resp.read())


def query(expr: str, base: str = PROMETHEUS) -> list[dict]:
    data = get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert data["status"] == "success", data
    return data["data"]["result"]


def targets() -> list[dict]:
    return get(f"{PROMETHEUS}/api/v1/targets?state=active")["data"]["activeTargets"]


def firing() -> set[tuple[str, str]]:
    """(alertname, instance or pop) of every alert Prometheus has firing now."""
    alerts = get(f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("instance") or a["labels"].get("pop", ""))
            for a in alerts if a["state"] == "firing"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, grouping removed)."""
    text = re.sub(r"\{[^}]*\}", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\(?)", text)
    return {w for w, call in words if not call and w.lower() not in PROMQL_WORDS}


def notified(status: str) -> set[str]:
    """Alert names the webhook receiver on monitor1 got with STATUS (firing or resolved)."""
    log = sh("monitor1", f"cat {SINK_LOG} 2>/dev/null", check=False).stdout
    sent = [json.loads(line) for line in log.splitlines() if line.strip()]
    return {a["labels"]["alertname"] for n in sent for a in n["alerts"] if a["status"] == status}


@pytest.fixture(scope="module")
def fleet(converged):
    """The session's fleet (monitoring included), with every scrape target up."""

    def all_up():
        found = targets()
        return len(found) == sum(EXPECTED_TARGETS.values()) and all(t["health"] == "up" for t in found)

    started = time.monotonic()
    assert wait_for(all_up, timeout=90, interval=2), [
        (t["labels"], t["health"], t["lastError"]) for t in targets() if t["health"] != "up"]
    print(f"\n[monitoring] all {sum(EXPECTED_TARGETS.values())} scrape targets up "
          f"(waited {time.monotonic() - started:.0f} s)")
    return converged


def test_every_scrape_target_is_up_and_every_probe_answers(fleet):
    found = targets()
    per_job: dict[str, int] = {}
    for t in found:
        per_job[t["labels"]["job"]] = per_job.get(t["labels"]["job"], 0) + 1
    assert per_job == EXPECTED_TARGETS
    assert [t["labels"] for t in found if t["health"] != "up"] == []
    # The exporters listen on the unicast (management) addresses, never on the anycast ones.
    assert all(t["scrapeUrl"].startswith(("http://198.18.0.", "http://127.0.0.1:")) for t in found)
    # The probes pass: Knot answers every zone on every unicast address, and the anycast addresses
    # answer from the monitoring node in Frankfurt (IPv4 and IPv6).
    assert wait_for(lambda: all(r["value"][1] == "1" for r in query("probe_success")), timeout=30)
    assert len(query("probe_success")) == EXPECTED_TARGETS["dns_unicast"] + EXPECTED_TARGETS["dns_anycast"]
    # Every server's health state, its external query counter and its Knot's zones are there.
    assert {r["metric"]["instance"] for r in query('anycast_health_announced{family="ipv4"} == 1')} == {
        "hkg1", "hkg2", "tyo1", "fra1", "gru1"}
    assert {r["metric"]["instance"] for r in query("anycast_health_external_queries_total")} == {
        "hkg1", "hkg2", "tyo1", "fra1", "gru1"}
    serials = {(r["metric"]["instance"], r["metric"]["zone"]): r["value"][1] for r in query("knot_zone_serial")}
    assert len(serials) == 6 * 2 and len(set(serials.values())) == 1, serials
    rrsig = query("min(knot_zone_rrsig_expires_in_seconds)")
    assert float(rrsig[0]["value"][1]) > 7 * 86400  # freshly signed: about rrsig-lifetime (14 days)
    # What the anycast addresses serve, as validators judge it: every PoP server answers every signed
    # zone's apex SOA and DNSKEY with signatures on both addresses, valid now and for days.
    served = {(r["metric"]["instance"], r["metric"]["address"], r["metric"]["zone"]): r["value"][1]
              for r in query("knot_served_signed")}
    signed = {r["metric"]["zone"] for r in query("knot_zone_rrsig_expires_in_seconds")}
    # The primary's exporter asks the primary itself (its loopback): what the signer produced.
    assert signed and served == {(server, address, zone): "1" for server in ("hkg1", "hkg2", "tyo1", "fra1", "gru1")
                                 for address in ("203.0.113.53", "2001:db8:53::1") for zone in signed} | {
        ("primary1", "127.0.0.1", zone): "1" for zone in signed}, served
    assert float(query("min(knot_served_rrsig_expires_in_seconds)")[0]["value"][1]) > 7 * 86400
    assert float(query("max(knot_served_rrsig_inception_in_seconds)")[0]["value"][1]) < 0
    # Nothing fires on a healthy fleet.
    assert firing() == set()


def test_every_dashboard_panel_shows_metrics_the_lab_exports(fleet):
    exported = set(get(f"{PROMETHEUS}/api/v1/label/__name__/values")["data"])
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 10
    missing = {}
    for panel in panels:
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"no metric found in {target['expr']!r}"
            if names - exported:
                missing[panel["title"]] = sorted(names - exported)
    assert missing == {}, f"panels naming metrics the lab does not export: {missing}"

    # Data in every panel: rates over [1m] need two scrapes of a fresh lab, so allow one window.
    def empty():
        return [p["title"] for p in panels for t in p["targets"] if not query(t["expr"])]
    assert wait_for(lambda: not empty(), timeout=75, interval=5), f"panels without data on the lab: {empty()}"


def test_knot_stopped_on_a_pop_fires_alerts_within_60s_and_they_resolve(fleet):
    sh("monitor1", f"rm -f {SINK_LOG}; systemctl stop alert-sink 2>/dev/null; "
                   f"cat > /run/alert-sink.py <<'EOF'\n{SINK}EOF\n"
                   "systemd-run --unit alert-sink --collect python3 /run/alert-sink.py")
    assert wait_for(lambda: sh("monitor1", "ss -ltn | grep -q 127.0.0.1:9095", check=False).returncode == 0,
                    timeout=10, interval=0.5)
    expected = {("AnycastNodeWithdrawn", NODE), ("DNSProbeFailing", NODE), ("KnotDown", NODE),
                ("PoPNotAnnouncing", POP)}
    never = {"DNSDownWhileAnnouncing", "AnycastProbeFailing"}
    fired_at: dict[tuple[str, str], float] = {}
    seen: set[tuple[str, str]] = set()
    try:
        stopped = time.monotonic()
        sh(NODE, "systemctl stop knot")
        while time.monotonic() - stopped < 90 and not expected <= set(fired_at):
            now = firing()
            seen |= now
            for key in now - set(fired_at):
                fired_at[key] = time.monotonic() - stopped
            time.sleep(1)
        assert expected <= set(fired_at), (fired_at, seen)
        print("\n[monitoring] Knot stopped on fra1; alerts firing after: "
              + ", ".join(f"{a} ({who}) {fired_at[(a, who)]:.0f} s" for a, who in sorted(fired_at)))
        assert all(fired_at[k] <= 60 for k in expected), fired_at
        # The anycast address kept answering from Frankfurt (traffic went to another PoP).
        assert all(r["value"][1] == "1" for r in query('probe_success{job="dns_anycast"}'))
        # Alertmanager has them and sent them to the configured receiver (the webhook).
        am = get(f"{ALERTMANAGER}/api/v2/alerts")
        assert {"AnycastNodeWithdrawn", "PoPNotAnnouncing"} <= {a["labels"]["alertname"] for a in am}
        assert wait_for(lambda: "AnycastNodeWithdrawn" in notified("firing"), timeout=30)
    finally:
        started = time.monotonic()
        sh(NODE, "systemctl start knot")
    assert wait_for(lambda: not {k for k in firing() if k[1] in (NODE, POP)}, timeout=90, interval=1), firing()
    resolved = time.monotonic() - started
    print(f"[monitoring] Knot started again; every alert of fra1/fra resolved after {resolved:.0f} s")
    assert wait_for(lambda: "AnycastNodeWithdrawn" in notified("resolved"), timeout=60, interval=2)
    assert not {a for a, _ in seen} & never, seen
    sh("monitor1", "systemctl stop alert-sink", check=False)


def prometheus_ready() -> bool:
    try:
        with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=2) as resp:  # noqa: S310 - lab address only
            return resp.status == 200
    except OSError:
        return False


def samples(base: str, expr: str) -> list[float]:
    """The timestamps of the raw samples of one series (a range selector) that BASE holds."""
    found = query(expr, base)
    assert len(found) <= 1, found
    return [float(t) for t, _value in found[0]["values"]] if found else []


def test_long_term_storage_keeps_the_history_while_prometheus_restarts(fleet):
    """VictoriaMetrics holds every sample Prometheus scraped of a series, from the first one on
    (remote write), answers for that history while Prometheus is stopped, and gets the samples
    scraped after Prometheus is back."""
    series = 'up{job="node",instance="fra1"}[1h]'
    # What Prometheus holds has reached VictoriaMetrics (remote write sends about every second):
    # every sample since VictoriaMetrics' first (the session's converge installs both at once).
    prom = samples(PROMETHEUS, series)
    assert len(prom) > 10, prom
    assert wait_for(lambda: (samples(VICTORIA, series) or [0])[-1] >= prom[-1], timeout=30, interval=1)
    before = samples(VICTORIA, series)
    missing = [t for t in prom if t >= before[0] and t not in set(before)]
    assert missing == [] and len(before) > 10, missing[:5]
    stopped = time.time()
    sh("monitor1", "systemctl stop prometheus")
    try:
        assert not prometheus_ready()
        # Prometheus down: the history is still there, whole.
        assert samples(VICTORIA, series)[:len(before)] == before
    finally:
        sh("monitor1", "systemctl start prometheus")
    assert wait_for(prometheus_ready, timeout=60, interval=1)
    started = time.time()
    # Scraping and writing resumed: new samples arrive in long-term storage.
    assert wait_for(lambda: samples(VICTORIA, series)[-1] > started + 5, timeout=60, interval=2)
    after = samples(VICTORIA, series)
    gap = max(b - a for a, b in itertools.pairwise(after))
    print(f"\n[monitoring] VictoriaMetrics: {len(before)} samples of fra1's node target before Prometheus stopped "
          f"(its first {before[0] - prom[0]:.0f} s after Prometheus's first), all kept; samples again "
          f"{after[-1] - started:.0f} s after it started; longest gap {gap:.0f} s (Prometheus down "
          f"{started - stopped:.0f} s)")
    assert after[:len(before)] == before
