"""Failures of a background worker's passes (a database outage): logged once when they start,
once when they end, not once per retry."""

from __future__ import annotations

import logging


class Outage:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what = log, what
        self.failures = 0

    def failed(self) -> None:
        """Call from the ``except`` of a failed pass (the first one logs its traceback)."""
        if not self.failures:
            self.log.exception(f"{self.what} failed; retrying")
        self.failures += 1

    def passed(self) -> None:
        if self.failures:
            self.log.info(f"{self.what} resumed", extra={"failed_passes": self.failures})
            self.failures = 0
