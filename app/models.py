"""Imports every ORM model so that ``Base.metadata`` knows every table (Alembic needs this)."""

from __future__ import annotations


def load_all_models() -> None:
    import app.accounts.models
    import app.audit.models
    import app.auth.models
    import app.core.reference
    import app.core.versions
    import app.instruments.models
    import app.marketdata.models
    import app.pretrade.models
    import app.risk.models  # noqa: F401
