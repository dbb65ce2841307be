"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.mark_age = Gauge(
            "preflight_mark_age_seconds",
            "Age of the newest source of each mark when last read",
            ["symbol"],
            registry=self.registry,
        )
        self._mark_ages: dict[str, Gauge] = {}
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

    def mark_age_of(self, symbol: str) -> Gauge:
        """The mark-age gauge of ``symbol`` (``labels()`` costs more than the ``set`` itself,
        and a check sets one per symbol it values)."""
        gauge = self._mark_ages.get(symbol)
        if gauge is None:
            gauge = self._mark_ages[symbol] = self.mark_age.labels(symbol)
        return gauge
