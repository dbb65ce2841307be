"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their assets served by the app itself, so
the API docs work offline and behind a firewall that blocks CDNs.

The assets in ``static/`` are the npm packages' browser bundles, unmodified, each with its
licence: ``swagger-ui-dist`` 5.36.0 (Apache-2.0) and ``redoc`` 2.5.4 (MIT; 3.x ships its
standalone bundle as an ES module, which FastAPI's ReDoc page does not load). To update::

    npm pack swagger-ui-dist@5 redoc@2   # then copy each bundle, LICENSE (and NOTICE) over
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS = "/docs/assets"
"""Where ``STATIC`` is mounted."""


def install_api_docs(app: FastAPI) -> None:
    """FastAPI's self-hosting recipe: build the app with ``docs_url=None, redoc_url=None``,
    then call this. The pages are public, as ``/openapi.json`` is."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            # Swagger UI would otherwise send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — ReDoc",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
