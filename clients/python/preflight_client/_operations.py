"""Every operation of the API as a typed method, sync and async, generated from
openapi/openapi.json by clients/python/generate.py: do not edit by hand."""

from __future__ import annotations

import datetime as dt
from typing import Literal, TypeVar

from pydantic import BaseModel

from preflight_client import models
from preflight_client._base import Operation, json_of, ndjson_of, text

T = TypeVar("T")


HEALTHZ = Operation(
    "healthz",
    "GET",
    "/healthz",
    json_of(models.Health),
    retry="read",
    answers=frozenset({200}),
)

METRICS = Operation(
    "metrics",
    "GET",
    "/metrics",
    text,
    retry="read",
    answers=frozenset({200}),
)

READYZ = Operation(
    "readyz",
    "GET",
    "/readyz",
    json_of(models.Readiness),
    retry="read",
    answers=frozenset({200, 503}),
)

LIST_ACCOUNTS = Operation(
    "list_accounts",
    "GET",
    "/v1/accounts",
    json_of(models.AccountList),
    retry="read",
    answers=frozenset({200}),
)

CREATE_ACCOUNT = Operation(
    "create_account",
    "POST",
    "/v1/accounts",
    json_of(models.AccountOut),
    retry="never",
    answers=frozenset({200, 201}),
    body=models.AccountIn,
)

GET_ACCOUNT = Operation(
    "get_account",
    "GET",
    "/v1/accounts/{account_id}",
    json_of(models.AccountOut),
    retry="read",
    answers=frozenset({200}),
)

PUT_ACCOUNT_LIMITS = Operation(
    "put_account_limits",
    "PUT",
    "/v1/accounts/{account_id}/limits",
    json_of(models.AccountOut),
    retry="never",
    answers=frozenset({200}),
    body=models.AccountLimitsIn,
)

ACCOUNT_MARGIN = Operation(
    "account_margin",
    "GET",
    "/v1/accounts/{account_id}/margin",
    json_of(models.AccountMarginOut),
    retry="read",
    answers=frozenset({200}),
)

LIST_KEYS = Operation(
    "list_keys",
    "GET",
    "/v1/api-keys",
    json_of(models.ApiKeyList),
    retry="read",
    answers=frozenset({200}),
)

CREATE_KEY = Operation(
    "create_key",
    "POST",
    "/v1/api-keys",
    json_of(models.CreatedApiKeyOut),
    retry="never",
    answers=frozenset({201}),
    body=models.ApiKeyIn,
)

REVOKE_KEY = Operation(
    "revoke_key",
    "DELETE",
    "/v1/api-keys/{key_id}",
    json_of(models.ApiKeyOut),
    retry="never",
    answers=frozenset({200}),
)

LIST_ASSETS = Operation(
    "list_assets",
    "GET",
    "/v1/assets",
    json_of(models.AssetList),
    retry="read",
    answers=frozenset({200}),
)

GET_ASSET = Operation(
    "get_asset",
    "GET",
    "/v1/assets/{symbol}",
    json_of(models.AssetOut),
    retry="read",
    answers=frozenset({200}),
)

PUT_ASSET = Operation(
    "put_asset",
    "PUT",
    "/v1/assets/{symbol}",
    json_of(models.AssetOut),
    retry="never",
    answers=frozenset({200, 201}),
    body=models.AssetIn,
)

LIST_AUDIT = Operation(
    "list_audit",
    "GET",
    "/v1/audit",
    json_of(models.AuditPage),
    retry="read",
    answers=frozenset({200}),
)

EXPORT_AUDIT = Operation(
    "export_audit",
    "GET",
    "/v1/audit/export",
    ndjson_of(models.AuditEntryOut),
    retry="read",
    answers=frozenset({200}),
)

VERIFY_AUDIT = Operation(
    "verify_audit",
    "GET",
    "/v1/audit/verify",
    json_of(models.VerificationOut),
    retry="read",
    answers=frozenset({200}),
)

GET_BOOK = Operation(
    "get_book",
    "GET",
    "/v1/books/{symbol}",
    json_of(models.BookOut),
    retry="read",
    answers=frozenset({200}),
)

PUT_BOOK = Operation(
    "put_book",
    "PUT",
    "/v1/books/{symbol}",
    json_of(models.BookOut),
    retry="never",
    answers=frozenset({200}),
    body=models.BookIn,
)

RECORD_FILLS = Operation(
    "record_fills",
    "POST",
    "/v1/fills",
    json_of(models.FillsOut),
    retry="replay",
    answers=frozenset({200}),
    body=models.FillsIn,
)

LIST_INSTRUMENTS = Operation(
    "list_instruments",
    "GET",
    "/v1/instruments",
    json_of(models.InstrumentList),
    retry="read",
    answers=frozenset({200}),
)

GET_INSTRUMENT = Operation(
    "get_instrument",
    "GET",
    "/v1/instruments/{symbol}",
    json_of(models.InstrumentOut),
    retry="read",
    answers=frozenset({200}),
)

PUT_INSTRUMENT = Operation(
    "put_instrument",
    "PUT",
    "/v1/instruments/{symbol}",
    json_of(models.InstrumentOut),
    retry="never",
    answers=frozenset({200, 201}),
    body=models.InstrumentIn,
)

LIST_MARGIN_CALLS = Operation(
    "list_margin_calls",
    "GET",
    "/v1/margin-calls",
    json_of(models.MarginCallList),
    retry="read",
    answers=frozenset({200}),
)

ACKNOWLEDGE_MARGIN_CALL = Operation(
    "acknowledge_margin_call",
    "POST",
    "/v1/margin-calls/{call_id}/ack",
    json_of(models.MarginCallOut),
    retry="never",
    answers=frozenset({200}),
)

LIST_MARKS = Operation(
    "list_marks",
    "GET",
    "/v1/marks",
    json_of(models.MarkList),
    retry="read",
    answers=frozenset({200}),
)

POST_MARKS = Operation(
    "post_marks",
    "POST",
    "/v1/marks",
    json_of(models.MarksAccepted),
    retry="never",
    answers=frozenset({200}),
    body=models.MarksIn,
)

GET_MARK = Operation(
    "get_mark",
    "GET",
    "/v1/marks/{symbol}",
    json_of(models.MarkOut),
    retry="read",
    answers=frozenset({200}),
)

CHECK = Operation(
    "check",
    "POST",
    "/v1/pretrade/check",
    json_of(models.CheckOut),
    retry="replay",
    answers=frozenset({200}),
    body=models.CheckIn,
)

MAX_SCALE = Operation(
    "max_scale",
    "POST",
    "/v1/pretrade/max-scale",
    json_of(models.MaxScaleOut),
    retry="read",
    answers=frozenset({200}),
    body=models.MaxScaleIn,
)

MAX_SIZE = Operation(
    "max_size",
    "POST",
    "/v1/pretrade/max-size",
    json_of(models.MaxSizeOut),
    retry="read",
    answers=frozenset({200}),
    body=models.MaxSizeIn,
)

MARGIN_REPORT = Operation(
    "margin_report",
    "GET",
    "/v1/reports/margin",
    json_of(models.MarginReportOut),
    retry="read",
    answers=frozenset({200}),
)

RELEASE_RESERVATION = Operation(
    "release_reservation",
    "DELETE",
    "/v1/reservations/{reservation_id}",
    json_of(models.ReservationOut),
    retry="never",
    answers=frozenset({200}),
)

RISK_OVERVIEW = Operation(
    "risk_overview",
    "GET",
    "/v1/risk/overview",
    json_of(models.OverviewOut),
    retry="read",
    answers=frozenset({200}),
)

GET_PARAMETERS = Operation(
    "get_parameters",
    "GET",
    "/v1/risk/parameters",
    json_of(models.RiskParametersBody),
    retry="read",
    answers=frozenset({200}),
)

PUT_PARAMETERS = Operation(
    "put_parameters",
    "PUT",
    "/v1/risk/parameters",
    json_of(models.RiskParametersBody),
    retry="never",
    answers=frozenset({200}),
    body=models.RiskParametersBody,
)

BOOK_STRESS = Operation(
    "book_stress",
    "POST",
    "/v1/risk/stress",
    json_of(models.BookStressOut),
    retry="read",
    answers=frozenset({200}),
    body=models.BookStressIn,
)

LIST_SUBACCOUNTS = Operation(
    "list_subaccounts",
    "GET",
    "/v1/subaccounts",
    json_of(models.SubaccountList),
    retry="read",
    answers=frozenset({200}),
)

CREATE_SUBACCOUNT = Operation(
    "create_subaccount",
    "POST",
    "/v1/subaccounts",
    json_of(models.SubaccountOut),
    retry="never",
    answers=frozenset({200, 201}),
    body=models.SubaccountIn,
)

GET_SUBACCOUNT = Operation(
    "get_subaccount",
    "GET",
    "/v1/subaccounts/{subaccount_id}",
    json_of(models.SubaccountOut),
    retry="read",
    answers=frozenset({200}),
)

UPDATE_SUBACCOUNT = Operation(
    "update_subaccount",
    "PATCH",
    "/v1/subaccounts/{subaccount_id}",
    json_of(models.SubaccountOut),
    retry="never",
    answers=frozenset({200}),
    body=models.SubaccountPatch,
)

GET_BALANCES = Operation(
    "get_balances",
    "GET",
    "/v1/subaccounts/{subaccount_id}/balances",
    json_of(models.BalancesOut),
    retry="read",
    answers=frozenset({200}),
)

SET_LEVERAGE = Operation(
    "set_leverage",
    "PUT",
    "/v1/subaccounts/{subaccount_id}/leverage",
    json_of(models.SubaccountOut),
    retry="never",
    answers=frozenset({200}),
    body=models.LeverageIn,
)

PUT_SUBACCOUNT_LIMITS = Operation(
    "put_subaccount_limits",
    "PUT",
    "/v1/subaccounts/{subaccount_id}/limits",
    json_of(models.SubaccountOut),
    retry="never",
    answers=frozenset({200}),
    body=models.SubaccountLimitsIn,
)

SUBACCOUNT_MARGIN = Operation(
    "subaccount_margin",
    "GET",
    "/v1/subaccounts/{subaccount_id}/margin",
    json_of(models.SubaccountMarginOut),
    retry="read",
    answers=frozenset({200}),
)

GET_POSITIONS = Operation(
    "get_positions",
    "GET",
    "/v1/subaccounts/{subaccount_id}/positions",
    json_of(models.PositionsOut),
    retry="read",
    answers=frozenset({200}),
)

RECONCILE_SNAPSHOT = Operation(
    "reconcile_snapshot",
    "POST",
    "/v1/subaccounts/{subaccount_id}/reconcile",
    json_of(models.ReconcileOut),
    retry="read",
    answers=frozenset({200}),
    body=models.SnapshotIn,
)

LIST_RESERVATIONS = Operation(
    "list_reservations",
    "GET",
    "/v1/subaccounts/{subaccount_id}/reservations",
    json_of(models.ReservationList),
    retry="read",
    answers=frozenset({200}),
)

LOAD_SNAPSHOT = Operation(
    "load_snapshot",
    "PUT",
    "/v1/subaccounts/{subaccount_id}/snapshot",
    json_of(models.PositionsOut),
    retry="never",
    answers=frozenset({200}),
    body=models.SnapshotIn,
)

SUBACCOUNT_STRESS = Operation(
    "subaccount_stress",
    "POST",
    "/v1/subaccounts/{subaccount_id}/stress",
    json_of(models.StressOut),
    retry="read",
    answers=frozenset({200}),
    body=models.StressIn,
)

RECORD_TRANSFER = Operation(
    "record_transfer",
    "POST",
    "/v1/subaccounts/{subaccount_id}/transfers",
    json_of(models.TransferOut),
    retry="replay",
    answers=frozenset({200, 201}),
    body=models.TransferIn,
)

LIST_TRADING_STATES = Operation(
    "list_trading_states",
    "GET",
    "/v1/trading-state",
    json_of(models.TradingStateList),
    retry="read",
    answers=frozenset({200}),
)

SET_TRADING_STATE = Operation(
    "set_trading_state",
    "PUT",
    "/v1/trading-state",
    json_of(models.TradingStateOut),
    retry="never",
    answers=frozenset({200}),
    body=models.TradingStateIn,
)


OPERATIONS: tuple[Operation[object], ...] = (
    ACCOUNT_MARGIN,
    ACKNOWLEDGE_MARGIN_CALL,
    BOOK_STRESS,
    CHECK,
    CREATE_ACCOUNT,
    CREATE_KEY,
    CREATE_SUBACCOUNT,
    EXPORT_AUDIT,
    GET_ACCOUNT,
    GET_ASSET,
    GET_BALANCES,
    GET_BOOK,
    GET_INSTRUMENT,
    GET_MARK,
    GET_PARAMETERS,
    GET_POSITIONS,
    GET_SUBACCOUNT,
    HEALTHZ,
    LIST_ACCOUNTS,
    LIST_ASSETS,
    LIST_AUDIT,
    LIST_INSTRUMENTS,
    LIST_KEYS,
    LIST_MARGIN_CALLS,
    LIST_MARKS,
    LIST_RESERVATIONS,
    LIST_SUBACCOUNTS,
    LIST_TRADING_STATES,
    LOAD_SNAPSHOT,
    MARGIN_REPORT,
    MAX_SCALE,
    MAX_SIZE,
    METRICS,
    POST_MARKS,
    PUT_ACCOUNT_LIMITS,
    PUT_ASSET,
    PUT_BOOK,
    PUT_INSTRUMENT,
    PUT_PARAMETERS,
    PUT_SUBACCOUNT_LIMITS,
    READYZ,
    RECONCILE_SNAPSHOT,
    RECORD_FILLS,
    RECORD_TRANSFER,
    RELEASE_RESERVATION,
    REVOKE_KEY,
    RISK_OVERVIEW,
    SET_LEVERAGE,
    SET_TRADING_STATE,
    SUBACCOUNT_MARGIN,
    SUBACCOUNT_STRESS,
    UPDATE_SUBACCOUNT,
    VERIFY_AUDIT,
)


class SyncOperations:
    def _call(
        self,
        op: Operation[T],
        *,
        path: dict[str, str] | None = None,
        query: dict[str, object] | None = None,
        body: BaseModel | None = None,
    ) -> T:
        raise NotImplementedError

    def healthz(self) -> models.Health:
        """GET /healthz"""
        return self._call(HEALTHZ)

    def metrics(self) -> str:
        """GET /metrics"""
        return self._call(METRICS)

    def readyz(self) -> models.Readiness:
        """GET /readyz

        503 only when the database is unreachable; a cache outage is ``degraded`` because checks
        keep answering from the marks persisted in the database.
        """
        return self._call(READYZ)

    def list_accounts(self) -> models.AccountList:
        """GET /v1/accounts"""
        return self._call(LIST_ACCOUNTS)

    def create_account(self, body: models.AccountIn) -> models.AccountOut:
        """POST /v1/accounts"""
        return self._call(CREATE_ACCOUNT, body=body)

    def get_account(self, account_id: str) -> models.AccountOut:
        """GET /v1/accounts/{account_id}"""
        return self._call(GET_ACCOUNT, path={"account_id": account_id})

    def put_account_limits(
        self, account_id: str, body: models.AccountLimitsIn
    ) -> models.AccountOut:
        """PUT /v1/accounts/{account_id}/limits"""
        return self._call(PUT_ACCOUNT_LIMITS, path={"account_id": account_id}, body=body)

    def account_margin(self, account_id: str) -> models.AccountMarginOut:
        """GET /v1/accounts/{account_id}/margin"""
        return self._call(ACCOUNT_MARGIN, path={"account_id": account_id})

    def list_keys(self) -> models.ApiKeyList:
        """GET /v1/api-keys"""
        return self._call(LIST_KEYS)

    def create_key(self, body: models.ApiKeyIn) -> models.CreatedApiKeyOut:
        """POST /v1/api-keys"""
        return self._call(CREATE_KEY, body=body)

    def revoke_key(self, key_id: str) -> models.ApiKeyOut:
        """DELETE /v1/api-keys/{key_id}"""
        return self._call(REVOKE_KEY, path={"key_id": key_id})

    def list_assets(self) -> models.AssetList:
        """GET /v1/assets"""
        return self._call(LIST_ASSETS)

    def get_asset(self, symbol: str) -> models.AssetOut:
        """GET /v1/assets/{symbol}"""
        return self._call(GET_ASSET, path={"symbol": symbol})

    def put_asset(self, symbol: str, body: models.AssetIn) -> models.AssetOut:
        """PUT /v1/assets/{symbol}"""
        return self._call(PUT_ASSET, path={"symbol": symbol}, body=body)

    def list_audit(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        subaccount_id: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> models.AuditPage:
        """GET /v1/audit"""
        return self._call(
            LIST_AUDIT,
            query={
                "since": since,
                "until": until,
                "subaccount_id": subaccount_id,
                "kind": kind,
                "cursor": cursor,
                "limit": limit,
            },
        )

    def export_audit(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[models.AuditEntryOut]:
        """GET /v1/audit/export"""
        return self._call(EXPORT_AUDIT, query={"since": since, "until": until})

    def verify_audit(self) -> models.VerificationOut:
        """GET /v1/audit/verify"""
        return self._call(VERIFY_AUDIT)

    def get_book(self, symbol: str) -> models.BookOut:
        """GET /v1/books/{symbol}"""
        return self._call(GET_BOOK, path={"symbol": symbol})

    def put_book(self, symbol: str, body: models.BookIn) -> models.BookOut:
        """PUT /v1/books/{symbol}"""
        return self._call(PUT_BOOK, path={"symbol": symbol}, body=body)

    def record_fills(self, body: models.FillsIn) -> models.FillsOut:
        """POST /v1/fills"""
        return self._call(RECORD_FILLS, body=body)

    def list_instruments(self) -> models.InstrumentList:
        """GET /v1/instruments"""
        return self._call(LIST_INSTRUMENTS)

    def get_instrument(self, symbol: str) -> models.InstrumentOut:
        """GET /v1/instruments/{symbol}"""
        return self._call(GET_INSTRUMENT, path={"symbol": symbol})

    def put_instrument(self, symbol: str, body: models.InstrumentIn) -> models.InstrumentOut:
        """PUT /v1/instruments/{symbol}"""
        return self._call(PUT_INSTRUMENT, path={"symbol": symbol}, body=body)

    def list_margin_calls(
        self,
        *,
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        subaccount_id: str | None = None,
    ) -> models.MarginCallList:
        """GET /v1/margin-calls

        Newest first (at most 500); the calls of every mark posted before the request.
        """
        return self._call(
            LIST_MARGIN_CALLS, query={"status": status, "subaccount_id": subaccount_id}
        )

    def acknowledge_margin_call(self, call_id: str) -> models.MarginCallOut:
        """POST /v1/margin-calls/{call_id}/ack"""
        return self._call(ACKNOWLEDGE_MARGIN_CALL, path={"call_id": call_id})

    def list_marks(self) -> models.MarkList:
        """GET /v1/marks"""
        return self._call(LIST_MARKS)

    def post_marks(self, body: models.MarksIn) -> models.MarksAccepted:
        """POST /v1/marks"""
        return self._call(POST_MARKS, body=body)

    def get_mark(self, symbol: str) -> models.MarkOut:
        """GET /v1/marks/{symbol}"""
        return self._call(GET_MARK, path={"symbol": symbol})

    def check(self, body: models.CheckIn) -> models.CheckOut:
        """POST /v1/pretrade/check

        Judge a basket of 1–50 legs as one; 200 whether accepted or rejected.
        """
        return self._call(CHECK, body=body)

    def max_scale(self, body: models.MaxScaleIn) -> models.MaxScaleOut:
        """POST /v1/pretrade/max-scale

        The largest factor of a basket (each leg rounded down to its lot) the check accepts now;
        a hedge keeps its ratio. Reserves, records and audits nothing.
        """
        return self._call(MAX_SCALE, body=body)

    def max_size(self, body: models.MaxSizeIn) -> models.MaxSizeOut:
        """POST /v1/pretrade/max-size"""
        return self._call(MAX_SIZE, body=body)

    def margin_report(self, *, date: dt.date) -> models.MarginReportOut:
        """GET /v1/reports/margin

        End-of-day per-subaccount summaries: JSON, or CSV with ``Accept: text/csv``. Today's are
        computed live; a past day's were captured just after it ended (404 if none was).
        """
        return self._call(MARGIN_REPORT, query={"date": date})

    def release_reservation(self, reservation_id: str) -> models.ReservationOut:
        """DELETE /v1/reservations/{reservation_id}"""
        return self._call(RELEASE_RESERVATION, path={"reservation_id": reservation_id})

    def risk_overview(
        self,
        *,
        sort: Literal[
            "maintenance_margin_ratio",
            "initial_margin_ratio",
            "leverage",
            "free_collateral",
            "equity",
        ]
        | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        account_id: str | None = None,
        margin_mode: Literal["isolated", "cross", "portfolio"] | None = None,
        min_ratio: float | None = None,
    ) -> models.OverviewOut:
        """GET /v1/risk/overview

        Every subaccount the key sees, most at risk first (``min_ratio`` filters on
        ``maintenance_margin_ratio``).
        """
        return self._call(
            RISK_OVERVIEW,
            query={
                "sort": sort,
                "limit": limit,
                "cursor": cursor,
                "account_id": account_id,
                "margin_mode": margin_mode,
                "min_ratio": min_ratio,
            },
        )

    def get_parameters(self) -> models.RiskParametersBody:
        """GET /v1/risk/parameters"""
        return self._call(GET_PARAMETERS)

    def put_parameters(self, body: models.RiskParametersBody) -> models.RiskParametersBody:
        """PUT /v1/risk/parameters"""
        return self._call(PUT_PARAMETERS, body=body)

    def book_stress(self, body: models.BookStressIn) -> models.BookStressOut:
        """POST /v1/risk/stress"""
        return self._call(BOOK_STRESS, body=body)

    def list_subaccounts(self, *, account_id: str | None = None) -> models.SubaccountList:
        """GET /v1/subaccounts"""
        return self._call(LIST_SUBACCOUNTS, query={"account_id": account_id})

    def create_subaccount(self, body: models.SubaccountIn) -> models.SubaccountOut:
        """POST /v1/subaccounts"""
        return self._call(CREATE_SUBACCOUNT, body=body)

    def get_subaccount(self, subaccount_id: str) -> models.SubaccountOut:
        """GET /v1/subaccounts/{subaccount_id}"""
        return self._call(GET_SUBACCOUNT, path={"subaccount_id": subaccount_id})

    def update_subaccount(
        self, subaccount_id: str, body: models.SubaccountPatch
    ) -> models.SubaccountOut:
        """PATCH /v1/subaccounts/{subaccount_id}"""
        return self._call(UPDATE_SUBACCOUNT, path={"subaccount_id": subaccount_id}, body=body)

    def get_balances(self, subaccount_id: str) -> models.BalancesOut:
        """GET /v1/subaccounts/{subaccount_id}/balances"""
        return self._call(GET_BALANCES, path={"subaccount_id": subaccount_id})

    def set_leverage(self, subaccount_id: str, body: models.LeverageIn) -> models.SubaccountOut:
        """PUT /v1/subaccounts/{subaccount_id}/leverage"""
        return self._call(SET_LEVERAGE, path={"subaccount_id": subaccount_id}, body=body)

    def put_subaccount_limits(
        self, subaccount_id: str, body: models.SubaccountLimitsIn
    ) -> models.SubaccountOut:
        """PUT /v1/subaccounts/{subaccount_id}/limits"""
        return self._call(PUT_SUBACCOUNT_LIMITS, path={"subaccount_id": subaccount_id}, body=body)

    def subaccount_margin(self, subaccount_id: str) -> models.SubaccountMarginOut:
        """GET /v1/subaccounts/{subaccount_id}/margin"""
        return self._call(SUBACCOUNT_MARGIN, path={"subaccount_id": subaccount_id})

    def get_positions(self, subaccount_id: str) -> models.PositionsOut:
        """GET /v1/subaccounts/{subaccount_id}/positions"""
        return self._call(GET_POSITIONS, path={"subaccount_id": subaccount_id})

    def reconcile_snapshot(
        self, subaccount_id: str, body: models.SnapshotIn
    ) -> models.ReconcileOut:
        """POST /v1/subaccounts/{subaccount_id}/reconcile

        The differences between our state and the venue's snapshot; changes nothing.
        """
        return self._call(RECONCILE_SNAPSHOT, path={"subaccount_id": subaccount_id}, body=body)

    def list_reservations(
        self, subaccount_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.ReservationList:
        """GET /v1/subaccounts/{subaccount_id}/reservations

        Newest first, ``limit`` per page; ``next_cursor`` pages on.
        """
        return self._call(
            LIST_RESERVATIONS,
            path={"subaccount_id": subaccount_id},
            query={"limit": limit, "cursor": cursor},
        )

    def load_snapshot(self, subaccount_id: str, body: models.SnapshotIn) -> models.PositionsOut:
        """PUT /v1/subaccounts/{subaccount_id}/snapshot"""
        return self._call(LOAD_SNAPSHOT, path={"subaccount_id": subaccount_id}, body=body)

    def subaccount_stress(self, subaccount_id: str, body: models.StressIn) -> models.StressOut:
        """POST /v1/subaccounts/{subaccount_id}/stress"""
        return self._call(SUBACCOUNT_STRESS, path={"subaccount_id": subaccount_id}, body=body)

    def record_transfer(self, subaccount_id: str, body: models.TransferIn) -> models.TransferOut:
        """POST /v1/subaccounts/{subaccount_id}/transfers"""
        return self._call(RECORD_TRANSFER, path={"subaccount_id": subaccount_id}, body=body)

    def list_trading_states(self) -> models.TradingStateList:
        """GET /v1/trading-state"""
        return self._call(LIST_TRADING_STATES)

    def set_trading_state(self, body: models.TradingStateIn) -> models.TradingStateOut:
        """PUT /v1/trading-state"""
        return self._call(SET_TRADING_STATE, body=body)


class AsyncOperations:
    async def _call(
        self,
        op: Operation[T],
        *,
        path: dict[str, str] | None = None,
        query: dict[str, object] | None = None,
        body: BaseModel | None = None,
    ) -> T:
        raise NotImplementedError

    async def healthz(self) -> models.Health:
        """GET /healthz"""
        return await self._call(HEALTHZ)

    async def metrics(self) -> str:
        """GET /metrics"""
        return await self._call(METRICS)

    async def readyz(self) -> models.Readiness:
        """GET /readyz

        503 only when the database is unreachable; a cache outage is ``degraded`` because checks
        keep answering from the marks persisted in the database.
        """
        return await self._call(READYZ)

    async def list_accounts(self) -> models.AccountList:
        """GET /v1/accounts"""
        return await self._call(LIST_ACCOUNTS)

    async def create_account(self, body: models.AccountIn) -> models.AccountOut:
        """POST /v1/accounts"""
        return await self._call(CREATE_ACCOUNT, body=body)

    async def get_account(self, account_id: str) -> models.AccountOut:
        """GET /v1/accounts/{account_id}"""
        return await self._call(GET_ACCOUNT, path={"account_id": account_id})

    async def put_account_limits(
        self, account_id: str, body: models.AccountLimitsIn
    ) -> models.AccountOut:
        """PUT /v1/accounts/{account_id}/limits"""
        return await self._call(PUT_ACCOUNT_LIMITS, path={"account_id": account_id}, body=body)

    async def account_margin(self, account_id: str) -> models.AccountMarginOut:
        """GET /v1/accounts/{account_id}/margin"""
        return await self._call(ACCOUNT_MARGIN, path={"account_id": account_id})

    async def list_keys(self) -> models.ApiKeyList:
        """GET /v1/api-keys"""
        return await self._call(LIST_KEYS)

    async def create_key(self, body: models.ApiKeyIn) -> models.CreatedApiKeyOut:
        """POST /v1/api-keys"""
        return await self._call(CREATE_KEY, body=body)

    async def revoke_key(self, key_id: str) -> models.ApiKeyOut:
        """DELETE /v1/api-keys/{key_id}"""
        return await self._call(REVOKE_KEY, path={"key_id": key_id})

    async def list_assets(self) -> models.AssetList:
        """GET /v1/assets"""
        return await self._call(LIST_ASSETS)

    async def get_asset(self, symbol: str) -> models.AssetOut:
        """GET /v1/assets/{symbol}"""
        return await self._call(GET_ASSET, path={"symbol": symbol})

    async def put_asset(self, symbol: str, body: models.AssetIn) -> models.AssetOut:
        """PUT /v1/assets/{symbol}"""
        return await self._call(PUT_ASSET, path={"symbol": symbol}, body=body)

    async def list_audit(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        subaccount_id: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> models.AuditPage:
        """GET /v1/audit"""
        return await self._call(
            LIST_AUDIT,
            query={
                "since": since,
                "until": until,
                "subaccount_id": subaccount_id,
                "kind": kind,
                "cursor": cursor,
                "limit": limit,
            },
        )

    async def export_audit(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[models.AuditEntryOut]:
        """GET /v1/audit/export"""
        return await self._call(EXPORT_AUDIT, query={"since": since, "until": until})

    async def verify_audit(self) -> models.VerificationOut:
        """GET /v1/audit/verify"""
        return await self._call(VERIFY_AUDIT)

    async def get_book(self, symbol: str) -> models.BookOut:
        """GET /v1/books/{symbol}"""
        return await self._call(GET_BOOK, path={"symbol": symbol})

    async def put_book(self, symbol: str, body: models.BookIn) -> models.BookOut:
        """PUT /v1/books/{symbol}"""
        return await self._call(PUT_BOOK, path={"symbol": symbol}, body=body)

    async def record_fills(self, body: models.FillsIn) -> models.FillsOut:
        """POST /v1/fills"""
        return await self._call(RECORD_FILLS, body=body)

    async def list_instruments(self) -> models.InstrumentList:
        """GET /v1/instruments"""
        return await self._call(LIST_INSTRUMENTS)

    async def get_instrument(self, symbol: str) -> models.InstrumentOut:
        """GET /v1/instruments/{symbol}"""
        return await self._call(GET_INSTRUMENT, path={"symbol": symbol})

    async def put_instrument(self, symbol: str, body: models.InstrumentIn) -> models.InstrumentOut:
        """PUT /v1/instruments/{symbol}"""
        return await self._call(PUT_INSTRUMENT, path={"symbol": symbol}, body=body)

    async def list_margin_calls(
        self,
        *,
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        subaccount_id: str | None = None,
    ) -> models.MarginCallList:
        """GET /v1/margin-calls

        Newest first (at most 500); the calls of every mark posted before the request.
        """
        return await self._call(
            LIST_MARGIN_CALLS, query={"status": status, "subaccount_id": subaccount_id}
        )

    async def acknowledge_margin_call(self, call_id: str) -> models.MarginCallOut:
        """POST /v1/margin-calls/{call_id}/ack"""
        return await self._call(ACKNOWLEDGE_MARGIN_CALL, path={"call_id": call_id})

    async def list_marks(self) -> models.MarkList:
        """GET /v1/marks"""
        return await self._call(LIST_MARKS)

    async def post_marks(self, body: models.MarksIn) -> models.MarksAccepted:
        """POST /v1/marks"""
        return await self._call(POST_MARKS, body=body)

    async def get_mark(self, symbol: str) -> models.MarkOut:
        """GET /v1/marks/{symbol}"""
        return await self._call(GET_MARK, path={"symbol": symbol})

    async def check(self, body: models.CheckIn) -> models.CheckOut:
        """POST /v1/pretrade/check

        Judge a basket of 1–50 legs as one; 200 whether accepted or rejected.
        """
        return await self._call(CHECK, body=body)

    async def max_scale(self, body: models.MaxScaleIn) -> models.MaxScaleOut:
        """POST /v1/pretrade/max-scale

        The largest factor of a basket (each leg rounded down to its lot) the check accepts now;
        a hedge keeps its ratio. Reserves, records and audits nothing.
        """
        return await self._call(MAX_SCALE, body=body)

    async def max_size(self, body: models.MaxSizeIn) -> models.MaxSizeOut:
        """POST /v1/pretrade/max-size"""
        return await self._call(MAX_SIZE, body=body)

    async def margin_report(self, *, date: dt.date) -> models.MarginReportOut:
        """GET /v1/reports/margin

        End-of-day per-subaccount summaries: JSON, or CSV with ``Accept: text/csv``. Today's are
        computed live; a past day's were captured just after it ended (404 if none was).
        """
        return await self._call(MARGIN_REPORT, query={"date": date})

    async def release_reservation(self, reservation_id: str) -> models.ReservationOut:
        """DELETE /v1/reservations/{reservation_id}"""
        return await self._call(RELEASE_RESERVATION, path={"reservation_id": reservation_id})

    async def risk_overview(
        self,
        *,
        sort: Literal[
            "maintenance_margin_ratio",
            "initial_margin_ratio",
            "leverage",
            "free_collateral",
            "equity",
        ]
        | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        account_id: str | None = None,
        margin_mode: Literal["isolated", "cross", "portfolio"] | None = None,
        min_ratio: float | None = None,
    ) -> models.OverviewOut:
        """GET /v1/risk/overview

        Every subaccount the key sees, most at risk first (``min_ratio`` filters on
        ``maintenance_margin_ratio``).
        """
        return await self._call(
            RISK_OVERVIEW,
            query={
                "sort": sort,
                "limit": limit,
                "cursor": cursor,
                "account_id": account_id,
                "margin_mode": margin_mode,
                "min_ratio": min_ratio,
            },
        )

    async def get_parameters(self) -> models.RiskParametersBody:
        """GET /v1/risk/parameters"""
        return await self._call(GET_PARAMETERS)

    async def put_parameters(self, body: models.RiskParametersBody) -> models.RiskParametersBody:
        """PUT /v1/risk/parameters"""
        return await self._call(PUT_PARAMETERS, body=body)

    async def book_stress(self, body: models.BookStressIn) -> models.BookStressOut:
        """POST /v1/risk/stress"""
        return await self._call(BOOK_STRESS, body=body)

    async def list_subaccounts(self, *, account_id: str | None = None) -> models.SubaccountList:
        """GET /v1/subaccounts"""
        return await self._call(LIST_SUBACCOUNTS, query={"account_id": account_id})

    async def create_subaccount(self, body: models.SubaccountIn) -> models.SubaccountOut:
        """POST /v1/subaccounts"""
        return await self._call(CREATE_SUBACCOUNT, body=body)

    async def get_subaccount(self, subaccount_id: str) -> models.SubaccountOut:
        """GET /v1/subaccounts/{subaccount_id}"""
        return await self._call(GET_SUBACCOUNT, path={"subaccount_id": subaccount_id})

    async def update_subaccount(
        self, subaccount_id: str, body: models.SubaccountPatch
    ) -> models.SubaccountOut:
        """PATCH /v1/subaccounts/{subaccount_id}"""
        return await self._call(UPDATE_SUBACCOUNT, path={"subaccount_id": subaccount_id}, body=body)

    async def get_balances(self, subaccount_id: str) -> models.BalancesOut:
        """GET /v1/subaccounts/{subaccount_id}/balances"""
        return await self._call(GET_BALANCES, path={"subaccount_id": subaccount_id})

    async def set_leverage(
        self, subaccount_id: str, body: models.LeverageIn
    ) -> models.SubaccountOut:
        """PUT /v1/subaccounts/{subaccount_id}/leverage"""
        return await self._call(SET_LEVERAGE, path={"subaccount_id": subaccount_id}, body=body)

    async def put_subaccount_limits(
        self, subaccount_id: str, body: models.SubaccountLimitsIn
    ) -> models.SubaccountOut:
        """PUT /v1/subaccounts/{subaccount_id}/limits"""
        return await self._call(
            PUT_SUBACCOUNT_LIMITS, path={"subaccount_id": subaccount_id}, body=body
        )

    async def subaccount_margin(self, subaccount_id: str) -> models.SubaccountMarginOut:
        """GET /v1/subaccounts/{subaccount_id}/margin"""
        return await self._call(SUBACCOUNT_MARGIN, path={"subaccount_id": subaccount_id})

    async def get_positions(self, subaccount_id: str) -> models.PositionsOut:
        """GET /v1/subaccounts/{subaccount_id}/positions"""
        return await self._call(GET_POSITIONS, path={"subaccount_id": subaccount_id})

    async def reconcile_snapshot(
        self, subaccount_id: str, body: models.SnapshotIn
    ) -> models.ReconcileOut:
        """POST /v1/subaccounts/{subaccount_id}/reconcile

        The differences between our state and the venue's snapshot; changes nothing.
        """
        return await self._call(
            RECONCILE_SNAPSHOT, path={"subaccount_id": subaccount_id}, body=body
        )

    async def list_reservations(
        self, subaccount_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.ReservationList:
        """GET /v1/subaccounts/{subaccount_id}/reservations

        Newest first, ``limit`` per page; ``next_cursor`` pages on.
        """
        return await self._call(
            LIST_RESERVATIONS,
            path={"subaccount_id": subaccount_id},
            query={"limit": limit, "cursor": cursor},
        )

    async def load_snapshot(
        self, subaccount_id: str, body: models.SnapshotIn
    ) -> models.PositionsOut:
        """PUT /v1/subaccounts/{subaccount_id}/snapshot"""
        return await self._call(LOAD_SNAPSHOT, path={"subaccount_id": subaccount_id}, body=body)

    async def subaccount_stress(
        self, subaccount_id: str, body: models.StressIn
    ) -> models.StressOut:
        """POST /v1/subaccounts/{subaccount_id}/stress"""
        return await self._call(SUBACCOUNT_STRESS, path={"subaccount_id": subaccount_id}, body=body)

    async def record_transfer(
        self, subaccount_id: str, body: models.TransferIn
    ) -> models.TransferOut:
        """POST /v1/subaccounts/{subaccount_id}/transfers"""
        return await self._call(RECORD_TRANSFER, path={"subaccount_id": subaccount_id}, body=body)

    async def list_trading_states(self) -> models.TradingStateList:
        """GET /v1/trading-state"""
        return await self._call(LIST_TRADING_STATES)

    async def set_trading_state(self, body: models.TradingStateIn) -> models.TradingStateOut:
        """PUT /v1/trading-state"""
        return await self._call(SET_TRADING_STATE, body=body)
