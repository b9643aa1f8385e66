"""lab/anycast_lab/failover.py and plots.py without a lab: what counts as the client's outage,
who answered, the side-by-side rows of summary.json and the plots."""

from __future__ import annotations

import pytest

from anycast_lab import failover, plots
from anycast_lab.shell import LabError

T0 = 1_000_000.0  # the fault's wall-clock time


def recs(spec: list[tuple[str | None, str | None]], start: float = -1.0, step: float = 0.02) -> list[dict]:
    """Records every STEP seconds from START (relative to the fault): (nsid, rcode) each."""
    out = []
    for i, (nsid, rcode) in enumerate(spec):
        out.append({"at": T0 + start + i * step, "nsid": nsid, "rcode": rcode, "aa": rcode is not None})
    return out


def test_outage_is_the_longest_stretch_without_a_good_answer_and_the_client_moved():
    # 1 s of fra1, 0.5 s lost, then tyo1 for 1 s.
    spec = [("fra1", "NOERROR")] * 50 + [(None, None)] * 25 + [("tyo1", "NOERROR")] * 50
    res = failover.analyze(recs(spec), T0, "fra1")
    # last fra1 answer at -0.02 s, first tyo1 at +0.5 s
    assert res["outage_ms"] == 520
    assert res["outage_window_s"] == [-0.02, 0.5]
    assert res["sequence"] == ["fra1", "tyo1"] and res["moved"] is True
    assert res["lost"] == 25 and res["servfail"] == 0 and res["sent"] == 125


def test_servfail_is_an_answer_but_not_service_and_staying_is_not_moving():
    spec = [("fra1", "NOERROR")] * 50 + [("fra1", "SERVFAIL")] * 100 + [("fra1", "NOERROR")] * 10
    res = failover.analyze(recs(spec), T0, "fra1")
    assert res["outage_ms"] == 2020 and res["servfail"] == 100 and res["lost"] == 0
    assert res["moved"] is False and res["sequence"] == ["fra1"]


def test_an_outage_until_the_end_of_the_run_counts_to_the_end():
    spec = [("fra1", "NOERROR")] * 10 + [(None, None)] * 40
    res = failover.analyze(recs(spec), T0, "fra1")
    assert res["outage_window_s"] == [-0.82, 0.0] and res["outage_ms"] == 820


def test_no_records_is_an_error():
    with pytest.raises(LabError):
        failover.analyze([], T0, "fra1")


def result(profile: str, fault: str = "knot_killed", outage: int = 100, moved: bool = True) -> dict:
    return {"fault": fault, "title": "Knot killed", "profile": profile, "outage_ms": outage, "moved": moved,
            "cleared_s": None, "sequence": ["fra1", "tyo1"], "sent": 600, "lost": 3, "servfail": 0, "notes": [],
            "outage_window_s": [0.0, outage / 1000],
            "timeline": [[-1.0, "fra1", "NOERROR"], [0.05, None, None], [0.5, "tyo1", "NOERROR"],
                         [0.6, "fra1", "SERVFAIL"]]}


def test_side_by_side_pairs_the_profiles_per_fault_and_skips_half_runs():
    rows = failover.side_by_side([result("daemon", outage=40), result("seed002", outage=4100, moved=True),
                                  result("daemon", fault="frr_restarted")])
    assert rows == [{"fault": "knot_killed", "title": "Knot killed", "ours_ms": 40, "seed_ms": 4100,
                     "ours_moved": True, "seed_moved": True, "fault_cleared_s": None, "ours_unserved": 3,
                     "seed_unserved": 3}]
    text = failover.markdown(rows, [result("daemon"), result("seed002")])
    assert "| Knot killed | 40 ms | 4100 ms | yes | yes | 3 | 3 | - |" in text


def test_every_fault_of_the_health_issue_is_measured_once():
    keys = [f.key for f in failover.FAULTS]
    assert len(keys) == len(set(keys))
    assert set(keys) == {"knot_killed", "knot_stopped", "knot_hung", "zone_servfail", "frr_restarted",
                         "keepalived_restarted", "rebooted", "powered_off", "link_down", "ipv6_broken", "knot_flapping"}
    assert all(f.duration > failover.LEAD + 5 for f in failover.FAULTS)


def test_lanes_put_the_node_on_top_and_failures_at_the_bottom():
    assert plots.lanes([result("daemon")], "fra1") == [plots.NO_ANSWER, plots.BAD_RCODE, "tyo1", "fra1"]


def test_plots_are_png_images(tmp_path):
    plots.timeline_png([result("daemon"), result("seed002")], "fra1", lambda s: s[:3], tmp_path / "t.png")
    plots.outages_png(failover.side_by_side([result("daemon"), result("seed002")]), tmp_path / "o.png")
    plots.timings_png([{"servers": 5, "seconds": 60.0}, {"servers": 10, "seconds": 80.0}], tmp_path / "s.png")
    for name in ("t.png", "o.png", "s.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
