"""The review UI's files — one HTML shell, one script, one style sheet in ``api/static`` — and
the headers they are served with.

The shell holds no data: the script reads everything through the ``/v1`` endpoints with the
key the user typed (kept in ``sessionStorage``, sent as ``X-API-Key``), so the page has no
second path to the data and needs no session cookie (hence no CSRF token). The Content
Security Policy allows only this server's own script, style and API, and blob:/data: images
(pictures fetched with the key header), so no inline script, CDN or other origin can run or
be reached, and the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from synthcohort.core.errors import NotFoundError

STATIC_DIR = Path(__file__).resolve().with_name("static")
SHELL = "shell.html"
ASSETS = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def shell() -> FileResponse:
    """The page every /ui address serves; the script picks what to show from the address."""
    return FileResponse(STATIC_DIR / SHELL, media_type="text/html; charset=utf-8", headers=HEADERS)


def asset(name: str) -> FileResponse:
    """``ui.js`` or ``ui.css``; anything else is 404 (no path is built from the request)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no UI file {name!r}", field="name")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
