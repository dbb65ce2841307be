"""The live risk page: plain HTML, CSS and JavaScript from ``static/``, no build step.

The page holds no data and no key of its own: it calls the same ``/v1`` API with a key the user
pastes (kept in the browser's ``sessionStorage``), so the routes here are public like
``/docs``. ``static/vendor/chart.umd.js`` is Chart.js 4.6.2's UMD build from the npm registry,
unchanged, beside its licence (``chart.js-LICENSE.md``, MIT).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from app.core.errors import NotFound

STATIC = Path(__file__).resolve().parent / "static"

# The page loads only its own files and talks only to its own origin; the key it holds cannot
# be sent elsewhere by an injected script, nor the page framed to capture it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A deploy changes the files behind the same names: revalidate, never serve a stale page.
    "Cache-Control": "no-cache",
}


def _assets() -> dict[str, Path]:
    """Every file under ``static/`` by its path relative to it: only these are served."""
    return {
        path.relative_to(STATIC).as_posix(): path for path in STATIC.rglob("*") if path.is_file()
    }


def _file(path: Path) -> FileResponse:
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


def create_router() -> APIRouter:
    """The page's routes, over the files present when the app is built."""
    assets = _assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    @router.get("/ui")
    async def page() -> FileResponse:
        return _file(assets["index.html"])

    @router.get("/ui/{asset:path}")
    async def asset(asset: Annotated[str, PathParam(max_length=200)]) -> FileResponse:
        path = assets.get(asset)
        if path is None:
            raise NotFound(f"no file {asset!r} in the risk page's assets")
        return _file(path)

    return router
