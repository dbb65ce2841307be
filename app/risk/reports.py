"""End-of-day margin reports: today's is computed live; a past day's is the capture taken
shortly after that day ended (the service keeps no history of marks to rebuild it from)."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.core.errors import InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import SUMMARY_FIELDS
from app.engine.rounding import summary_to_decimals
from app.risk import repository, resident, service
from app.risk.batch import evaluate_subaccounts
from app.risk.schemas import MarginReportOut, MarginReportRow

log = logging.getLogger("preflight.reports")
COLUMNS = ("subaccount_id", "account_id", "margin_mode", *SUMMARY_FIELDS)


async def _live_rows(
    session: AsyncSession, runtime: Runtime, accounts: frozenset[str] | None
) -> list[MarginReportRow]:
    view = await resident.current_view(session, runtime)
    subaccounts = (
        view.subaccounts(None, accounts)
        if view is not None
        else await accounts_repository.list_subaccounts(session, None, accounts)
    )
    if not subaccounts:
        return []
    parameters = await service.parameters(session)
    evaluation = await evaluate_subaccounts(
        session, runtime, subaccounts, parameters, everyone=accounts is None, view=view
    )
    return [
        MarginReportRow.model_validate(
            {
                "subaccount_id": book.subaccount_id,
                "account_id": book.account_id,
                "margin_mode": book.margin_mode,
                **summary_to_decimals(
                    evaluation.summary.row(i), book.margin_mode, parameters.settlement_decimals
                ),
            }
        )
        for i, book in enumerate(subaccounts)
    ]


async def margin_report(
    session: AsyncSession, runtime: Runtime, accounts: frozenset[str] | None, report_date: date
) -> MarginReportOut:
    today = utcnow().date()
    if report_date > today:
        raise InvalidInput("date", "is in the future")
    if report_date == today:
        rows = await _live_rows(session, runtime, accounts)
        return MarginReportOut(date=report_date, as_of=utcnow(), live=True, subaccounts=rows)
    stored = await repository.report_rows(session, report_date, accounts)
    if not stored:
        raise NotFound(f"no end-of-day report was captured for {report_date.isoformat()}")
    return MarginReportOut(
        date=report_date,
        as_of=min(row.captured_at for row in stored),
        live=False,
        subaccounts=[
            MarginReportRow.model_validate(
                {
                    "subaccount_id": row.subaccount_id,
                    "account_id": row.account_id,
                    "margin_mode": row.margin_mode,
                    **row.summary,
                }
            )
            for row in stored
        ],
    )


def as_csv(report: MarginReportOut) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.subaccounts:
        values = row.model_dump(mode="json")
        writer.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
    return buffer.getvalue()


async def capture(session: AsyncSession, runtime: Runtime, report_date: date) -> int:
    """Store every subaccount's summary now as ``report_date``'s end of day."""
    rows = await _live_rows(session, runtime, None)
    now = utcnow()
    await repository.insert_reports(
        session,
        [
            {
                "report_date": report_date,
                "subaccount_id": row.subaccount_id,
                "account_id": row.account_id,
                "margin_mode": row.margin_mode,
                "summary": row.model_dump(
                    mode="json", exclude={"subaccount_id", "account_id", "margin_mode"}
                ),
                "captured_at": now,
            }
            for row in rows
        ],
    )
    return len(rows)


async def capture_forever(runtime: Runtime, every_s: float = 60.0) -> None:
    """Once a UTC day has ended, capture its report (at most ``every_s`` late). The first look
    waits ``every_s`` too, so a server's start-up is not slowed by a whole-book batch."""
    while True:
        await asyncio.sleep(every_s)
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
        try:
            async with runtime.session_factory() as session, session.begin():
                if not await repository.has_report(session, yesterday):
                    count = await capture(session, runtime, yesterday)
                    log.info(
                        "end-of-day report captured",
                        extra={"date": str(yesterday), "subaccounts": count},
                    )
        except Exception:
            log.exception("end-of-day capture failed")
