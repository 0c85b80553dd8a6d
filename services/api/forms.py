"""Digital form submissions (process 49)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/forms")
