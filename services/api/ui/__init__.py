"""The web interface under /ui: server-rendered pages for clerks, the triage team,
administrators and auditors (issue 8). `install(app)` adds it to the API application."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from . import admin_pages, clerk_pages, oidc_login, overview_pages  # noqa: F401 - routes
from .web import HERE, router

STATIC = {"ui.css": "text/css"}


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                        headers={"Cache-Control": "public, max-age=3600"})


def install(app: FastAPI) -> None:
    app.include_router(router)


__all__ = ["install", "router"]
