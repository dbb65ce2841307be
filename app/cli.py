"""``preflight``: serve | migrate | keys create | openapi."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

from app.core.config import DEFAULT_DATABASE_URL, Settings
from app.core.db import is_sqlite


def _prepare_sqlite(url: str) -> None:
    if is_sqlite(url) and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _migrate(url: str) -> None:
    from app.core.migrations import upgrade

    _prepare_sqlite(url)
    upgrade(url)


async def _seed_demo(settings: Settings) -> bool:
    from app.core.db import create_engine, create_session_factory
    from app.demo import seed

    engine = create_engine(settings.database_url, 2)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return await seed(session)
    finally:
        await engine.dispose()


def _print_demo_banner(host: str, port: int, admin_key: str) -> None:
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    auth = f'-H "Authorization: Bearer {admin_key}"'
    print(
        f"""
Preflight demo — {base}  (docs: {base}/docs)
admin key: {admin_key}
risk page: {base}/ui  (paste the admin key)

  curl -s {auth} {base}/v1/subaccounts/fund-a.cross/margin
  curl -s {auth} {base}/v1/marks/BTC-PERP
  curl -s {auth} -H 'Content-Type: application/json' {base}/v1/pretrade/check -d '{{"subaccount_id": "fund-a.cross", "orders": [{{"instrument": "BTC-PERP", "side": "buy", "size": "0.5", "type": "market"}}]}}'
""",
        flush=True,
    )


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = Settings()
    if args.demo:
        if not settings.admin_key:
            os.environ["PREFLIGHT_ADMIN_KEY"] = "pf_demo_" + secrets.token_urlsafe(24)
        os.environ["PREFLIGHT_DEMO_FEED"] = "true"
        settings = Settings()
    if settings.redis_url is None and args.workers > 1:
        sys.exit("--workers > 1 needs PREFLIGHT_REDIS_URL: the in-process cache is not shared")
    if is_sqlite(settings.database_url):
        # The embedded default migrates itself; production runs `preflight migrate` first.
        _migrate(settings.database_url)
    if args.demo:
        seeded = asyncio.run(_seed_demo(settings))
        print("demo desk seeded" if seeded else "demo desk already present", flush=True)
        assert settings.admin_key is not None
        _print_demo_banner(args.host, args.port, settings.admin_key.get_secret_value())
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


def run_background(args: argparse.Namespace) -> None:
    from app import background

    background.main(Settings(), args.parent)


def migrate(_: argparse.Namespace) -> None:
    _migrate(Settings().database_url)
    print("database is at the latest revision")


async def _create_key(role: str, accounts: list[str] | None, label: str | None) -> str:
    from app.accounts import keys
    from app.audit.service import Actor
    from app.auth.principal import Role
    from app.core.db import create_engine, create_session_factory

    engine = create_engine(Settings().database_url, 2)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            created = await keys.create(session, Actor("cli"), Role(role), accounts, label)
            return created.key
    finally:
        await engine.dispose()


def keys_create(args: argparse.Namespace) -> None:
    from app.core.errors import PreflightError

    url = Settings().database_url
    if is_sqlite(url):
        # As on serve: the embedded default migrates itself, so a fresh clone can mint its
        # first key before the first start.
        _migrate(url)
    try:
        key = asyncio.run(_create_key(args.role, args.account or None, args.label))
    except PreflightError as exc:  # e.g. an unknown account: a message, not a traceback
        sys.exit(f"preflight: {exc.detail}")
    print(key)


def openapi(args: argparse.Namespace) -> None:
    from app.main import create_app

    spec = create_app(Settings(database_url=DEFAULT_DATABASE_URL)).openapi()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    print(f"wrote {output}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="preflight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the HTTP service")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.add_argument("--demo", action="store_true", help="seed and feed a demo desk")
    serve_parser.set_defaults(handler=serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=migrate)
    background = commands.add_parser(
        "background",
        help="run the background passes (audit sealing, margin-call sweeps, webhooks, capture); "
        "an API process on PostgreSQL starts one itself",
    )
    background.add_argument(
        "--parent", type=int, help="exit once the process with this id is no longer the parent"
    )
    background.set_defaults(handler=run_background)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument(
        "--role", required=True, choices=["admin", "risk", "trader", "feeder", "auditor"]
    )
    create.add_argument("--account", action="append", help="scope to this account (repeatable)")
    create.add_argument("--label")
    create.set_defaults(handler=keys_create)

    spec = commands.add_parser("openapi", help="write the OpenAPI document")
    spec.add_argument("--output", default="openapi/openapi.json")
    spec.set_defaults(handler=openapi)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
