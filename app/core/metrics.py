"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class MarkAges(Collector):
    """``preflight_mark_age_seconds``: the age, when scraped, of the newest source of each mark
    this process has read. Reads only note the time (a dict entry), not a gauge per symbol
    per check."""

    def __init__(self) -> None:
        self.newest_us: dict[str, int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "preflight_mark_age_seconds",
            "Age of the newest source of each mark this process has read, when scraped",
            labels=["symbol"],
        )
        now_us = time.time_ns() // 1000
        for symbol, newest in sorted(self.newest_us.items()):
            family.add_metric([symbol], max(0, now_us - newest) / 1e6)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "preflight_request_duration_seconds",
            "Request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.check_decisions = Counter(
            "preflight_check_decisions_total",
            "Pre-trade decisions, by decision and reason code",
            ["decision", "reason"],
            registry=self.registry,
        )
        self._decisions: dict[tuple[str, str], Any] = {}
        self.mark_ages = MarkAges()
        self.registry.register(self.mark_ages)
        self.requests_shed = Counter(
            "preflight_requests_shed_total",
            "API requests refused with 503 OVERLOADED (too many in flight in one process)",
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "preflight_dependency_errors_total",
            "Errors talking to PostgreSQL or Redis",
            ["dependency"],
            registry=self.registry,
        )
        self.db_statements = Counter(
            "preflight_db_statements_total",
            "Statements sent to PostgreSQL on the pre-trade check's connections",
            registry=self.registry,
        )
        self.db_sessions = Counter(
            "preflight_db_sessions_total",
            "Connections the ORM's pool handed out (every other endpoint, and cold loads)",
            registry=self.registry,
        )
        self.cache_round_trips = Counter(
            "preflight_cache_round_trips_total",
            "Round trips to Redis",
            registry=self.registry,
        )

    def count_decision(self, decision: str, reason: str) -> None:
        """One check's decision under one of its reason codes (``none`` when accepted); the
        counter's children are kept, not looked up under its lock per check."""
        child = self._decisions.get((decision, reason))
        if child is None:
            child = self._decisions[(decision, reason)] = self.check_decisions.labels(
                decision, reason
            )
        child.inc()
