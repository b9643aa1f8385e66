"""The health daemon's state as Prometheus metrics, for node_exporter's textfile collector
(written with prometheus_client: python3-prometheus-client on the node)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .family import Family

STATES = ("announced", "draining", "drained", "damped", "withdrawn")
PREFIX = "anycast_health_"


class HealthCollector:
    """One reading of the daemon's families, drain and query counter."""

    def __init__(self, families: dict[str, Family], drain: dict | None, now: float, *, drained: bool = False,
                 queries: int | None = None):
        self.families = list(families.values())
        self.drain = drain
        self.now = now
        self.drained = drained
        self.queries = queries

    def _gauge(self, name: str, helptext: str, values, labels=("family",)) -> GaugeMetricFamily:
        metric = GaugeMetricFamily(PREFIX + name, helptext, labels=list(labels))
        for label_values, value in values:
            metric.add_metric(list(label_values), value)
        return metric

    def _counter(self, name: str, helptext: str, values, labels=("family",)) -> CounterMetricFamily:
        metric = CounterMetricFamily(PREFIX + name, helptext, labels=list(labels))
        for label_values, value in values:
            metric.add_metric(list(label_values), value)
        return metric

    def collect(self) -> Iterator[Metric]:
        fams, now = self.families, self.now
        yield self._gauge("announced", "1 while this family's aggregates are announced",
                          [((f.name,), int(f.announced)) for f in fams])
        yield self._gauge("healthy", "1 while the local Knot passes the checks (fall/rise applied)",
                          [((f.name,), int(f.healthy)) for f in fams])
        yield self._gauge("state", "the family's state, one series per state, 1 for the current one",
                          [((f.name, s), int(f.state(now, self.drain, self.drained) == s)) for f in fams
                           for s in STATES], labels=("family", "state"))
        yield self._gauge("held_down_seconds", "seconds damping still holds the family down",
                          [((f.name,), math.ceil(f.held(now))) for f in fams])
        yield self._gauge("last_transition_timestamp_seconds", "when the family was last announced or withdrawn",
                          [((f.name,), float(f.last_transition)) for f in fams])
        yield self._counter("transitions_total", "announcements and withdrawals since the daemon started",
                            [((f.name,), f.transitions) for f in fams])
        yield self._counter("failures_total", "failures of the local Knot seen since the daemon started",
                            [((f.name,), f.failures) for f in fams])
        withdraws = [((f.name,), float(f.withdraw_seconds)) for f in fams if f.withdraw_seconds is not None]
        if withdraws:
            yield self._gauge("withdraw_seconds",
                              "last withdrawal: seconds from the failure's detection until the routes left the kernel",
                              withdraws)
        yield self._gauge("drained", "1 while the drain flag is set (draining or drained)",
                          [((), int(self.drain is not None))], labels=())
        if self.queries is not None:
            yield self._counter("external_queries_total",
                                "DNS queries that reached the anycast addresses from outside (UDP packets and TCP "
                                "SYNs, not lo)", [((), self.queries)], labels=())
        yield self._gauge("updated_timestamp_seconds", "when the daemon last wrote this file (at least once a second)",
                          [((), float(now))], labels=())


def registry(collector: HealthCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def prom_text(families: dict[str, Family], drain: dict | None, now: float, *, drained: bool = False,
              queries: int | None = None) -> str:
    """The metrics in Prometheus's text format."""
    return generate_latest(registry(HealthCollector(families, drain, now, drained=drained, queries=queries))).decode()


def write_textfile(path: str, families: dict[str, Family], drain: dict | None, now: float, *,
                   drained: bool = False, queries: int | None = None) -> None:
    """PATH replaced in one rename (prometheus_client's write_to_textfile)."""
    write_to_textfile(path, registry(HealthCollector(families, drain, now, drained=drained, queries=queries)))
