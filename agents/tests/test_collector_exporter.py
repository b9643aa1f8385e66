"""anycast-collector-exporter: from what BIRD prints to the metrics the routing-security alerts read.
The BIRD output is what the lab's collector printed (the hijack rows from its routing-security test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from anycast_agents import collector_exporter as ce

DATA = Path(__file__).parent / "data"
CONFIG = {
    "origin_asn": 65053, "collector_asn": 65530, "aggregates": ["203.0.113.0/24", "2001:db8:53::/48"],
    "peers": [
        {"protocol": "p_bb_fra_4", "name": "bb-fra", "asn": 64600, "family": 4},
        {"protocol": "p_bb_fra_6", "name": "bb-fra", "asn": 64600, "family": 6},
        {"protocol": "p_hj_gru_4", "name": "hj-gru", "asn": 64666, "family": 4},
        {"protocol": "p_hj_gru_6", "name": "hj-gru", "asn": 64666, "family": 6},
        {"protocol": "p_tr_gru_4", "name": "tr-gru", "asn": 64604, "family": 4},
        {"protocol": "p_tr_gru_6", "name": "tr-gru", "asn": 64604, "family": 6},
    ],
}


class FakeBird:
    def __init__(self, protocols: str, routes: str, fail: bool = False) -> None:
        self.protocols, self.routes, self.fail = protocols, routes, fail

    def read(self):
        if self.fail:
            raise RuntimeError("birdc show protocols: Unable to connect to server control socket")
        return ce.parse_protocols(self.protocols), ce.parse_routes(self.routes)


def scrape(bird) -> dict[str, list[tuple[dict[str, str], float]]]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ce.CollectorCollector(ce.load_config(json.dumps(CONFIG)), bird))
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(reg).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_routes_are_read_with_their_peer_path_and_rpki_tag():
    routes = ce.parse_routes((DATA / "bird-routes-master4.txt").read_text())
    assert [(r.prefix, r.protocol, r.as_path, r.large_communities) for r in routes] == [
        ("203.0.113.0/24", "p_tr_gru_4", [64604, 64666], [(65530, 1, 2)]),
        ("203.0.113.0/24", "p_hj_gru_4", [64666], [(65530, 1, 2)]),
        ("203.0.113.0/24", "p_bb_fra_4", [64600, 64603, 65053, 65053, 65053], [(65530, 1, 1)]),
        ("203.0.113.0/25", "p_hj_gru_4", [64666], [(65530, 1, 2)]),
    ]


@pytest.mark.parametrize(("path", "expected"), [
    ([64600, 64603, 65053], ("65053", "64603")),
    ([64600, 64603, 65053, 65053], ("65053", "64603")),  # the origin's prepends are skipped
    ([64666], ("64666", "")),
    ([65053], ("65053", "")),
    ([], ("", "")),
])
def test_origin_and_upstream(path, expected):
    assert ce.origin_and_upstream(path) == expected


def test_a_hijack_a_more_specific_and_our_own_route_each_get_their_labels():
    metrics = scrape(FakeBird((DATA / "bird-protocols.txt").read_text(),
                              (DATA / "bird-routes-master4.txt").read_text()))
    routes = sorted((s["peer"], s["prefix"], s["kind"], s["origin_as"], s["upstream_as"], s["rpki"])
                    for s, _ in metrics["anycast_collector_route"])
    assert routes == [
        ("bb-fra", "203.0.113.0/24", "aggregate", "65053", "64603", "valid"),
        ("hj-gru", "203.0.113.0/24", "aggregate", "64666", "", "invalid"),
        ("hj-gru", "203.0.113.0/25", "more_specific", "64666", "", "invalid"),
        ("tr-gru", "203.0.113.0/24", "aggregate", "64666", "64604", "invalid"),
    ]
    up = {(s["peer"], s["family"]): v for s, v in metrics["anycast_collector_peer_up"]}
    # The fixture's protocols: tr-gru has no IPv6 session configured in BIRD, so it is down there.
    assert up == {("bb-fra", "4"): 1, ("bb-fra", "6"): 1, ("hj-gru", "4"): 1, ("hj-gru", "6"): 1,
                  ("tr-gru", "4"): 1, ("tr-gru", "6"): 0}
    assert metrics["anycast_collector_rpki_up"] == [({"cache": "rpki_cache"}, 1)]
    # Visible: the aggregate from our AS; hj-gru and tr-gru see only the hijack of the /24; the
    # IPv6 aggregate reaches no established peer in this fixture (no master6 routes given).
    visible = {(s["peer"], s["prefix"]): v for s, v in metrics["anycast_collector_aggregate_visible"]}
    assert visible == {("bb-fra", "203.0.113.0/24"): 1, ("hj-gru", "203.0.113.0/24"): 0,
                       ("tr-gru", "203.0.113.0/24"): 0, ("bb-fra", "2001:db8:53::/48"): 0,
                       ("hj-gru", "2001:db8:53::/48"): 0}
    assert metrics["anycast_collector_up"] == [({}, 1)]


def test_bird_not_answering_is_a_zero_not_a_silence():
    metrics = scrape(FakeBird("", "", fail=True))
    assert metrics["anycast_collector_up"] == [({}, 0)]
    assert "anycast_collector_aggregate_visible" not in metrics


def test_a_configuration_without_a_key_names_it():
    with pytest.raises(ValueError, match="lacks 'origin_asn'"):
        ce.load_config(json.dumps({k: v for k, v in CONFIG.items() if k != "origin_asn"}))


def test_the_json_view_lists_every_session_with_its_routes():
    config = ce.load_config(json.dumps(CONFIG))
    seen = ce.view(config, ce.parse_protocols((DATA / "bird-protocols.txt").read_text()),
                   ce.parse_routes((DATA / "bird-routes-master4.txt").read_text()))
    by = {(p["peer"], p["family"]): p for p in seen["peers"]}
    assert len(by) == 6 and by[("tr-gru", 6)]["established"] is False
    assert [(r["prefix"], r["kind"], r["origin_as"], r["rpki"]) for r in by[("hj-gru", 4)]["routes"]] == [
        ("203.0.113.0/24", "aggregate", "64666", "invalid"), ("203.0.113.0/25", "more_specific", "64666", "invalid")]
    assert by[("bb-fra", 4)]["routes"][0]["as_path"] == [64600, 64603, 65053, 65053, 65053]
    assert seen["rpki"] == {"rpki_cache": "Established"} and seen["origin_asn"] == 65053


def test_a_session_is_established_whatever_birds_time_format():
    """With `timeformat protocol iso long` the Since column is two words; the state still reads."""
    text = ("Name       Proto      Table      State  Since         Info\n"
            "p_bb_fra_4 BGP        ---        up     2026-12-01 06:39:37  Established\n"
            "p_tr_gru_6 BGP        ---        start  2026-12-01 06:39:35  Passive\n")
    protocols = ce.parse_protocols(text)
    assert [ce.established(info) for _, info in protocols.values()] == [True, False]
