"""``/docs`` (Swagger UI) and ``/redoc`` served entirely by the gateway, from files a package ships.

FastAPI's own pages load their scripts from a CDN, so on an air-gapped host they stay blank. Here the
scripts and styles come from the ``fastapi-offline`` wheel (Swagger UI 5 and ReDoc, in its
``static/`` folder; installed with memotion[serve]) under ``/docs/assets``. Create the app with
``docs_url=None, redoc_url=None`` and call :func:`mount_docs`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def assets_dir() -> Path:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def mount_docs(app: FastAPI) -> None:
    """Serve the interactive docs without any request leaving the gateway's host."""
    directory = assets_dir()
    app.mount(ASSETS_PATH, StaticFiles(directory=directory), name="docs-assets")
    title = f"{app.title} - API docs"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
