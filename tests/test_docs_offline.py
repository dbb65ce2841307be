"""``/docs`` and ``/redoc`` work offline: every script, style and icon they load is served by the
app itself, and each answers with its content type."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest

from app.core.apidocs import STATIC

# src=/href= attributes, Swagger UI's `url: '…'` and ReDoc's spec-url.
LOADED = re.compile(r"""(?:\bsrc|\bhref|\bspec-url)\s*=\s*["']([^"']+)["']|\burl:\s*'([^']+)'""")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


def loaded_urls(html: str) -> list[str]:
    return [a or b for a, b in LOADED.findall(html)]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {".js", ".css", ".png", ".json"}),
        ("/redoc", {".js", ".png", ".json"}),
    ],
)
async def test_the_viewers_load_only_what_the_app_serves(
    raw_client: httpx.AsyncClient, page: str, expected: set[str]
) -> None:
    response = await raw_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, "a URL to another host"
    urls = loaded_urls(html)
    assert {"." + url.rsplit(".", 1)[-1] for url in urls} == expected
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        asset = await raw_client.get(url)
        assert asset.status_code == 200, url
        suffix = "." + parts.path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), (
            url,
            asset.headers["content-type"],
        )
        assert asset.content


async def test_the_bundles_ship_with_their_licences(raw_client: httpx.AsyncClient) -> None:
    for viewer in ("swagger-ui", "redoc"):
        assert (STATIC / viewer / "LICENSE").is_file()
        assert (await raw_client.get(f"/docs/assets/{viewer}/LICENSE")).status_code == 200


async def test_the_assets_mount_serves_only_its_directory(raw_client: httpx.AsyncClient) -> None:
    escape = "/docs/assets/swagger-ui/%2e%2e/%2e%2e/apidocs.py"  # app/core/apidocs.py
    assert (await raw_client.get(escape)).status_code == 404
    assert (await raw_client.get("/docs/assets/swagger-ui/missing.js")).status_code == 404
