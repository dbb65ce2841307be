"""The reference for the pre-trade benchmark: a bare FastAPI app whose one route answers a
constant JSON. ``bench/pretrade.py`` serves it with the service's own uvicorn command line
(``tests/servers.py``) from the same virtualenv, so the ratio of the check's req/s to this app's
is the share of the framework's ceiling the check keeps on this machine.

    .venv/bin/python -m uvicorn bench.ping_app:app --host 127.0.0.1 --log-level warning \\
        --no-access-log --workers 1
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}
