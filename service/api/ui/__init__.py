"""The moderation dashboard: a static page served by the gateway at ``/ui``.

Drop a meme to see its three tasks with scores and the text the models read (OCR or typed), or
drop several / load a ``memotion score`` results file to review a batch. It talks to the same
public API as any client (``/v1/classify``, ``/v1/classify/batch``), with the API key typed in
the page (kept in the browser's local storage). Answers show their policy decision; the review
queue tab (``review.js``) lists pending memes with their reasons and the similar memes already
decided, and decides them with the keyboard through ``/v1/reviews`` with a staff key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"


def mount_ui(app: FastAPI) -> None:
    @app.get(UI_PATH, include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/")

    app.mount(f"{UI_PATH}/", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
