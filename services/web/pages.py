"""Rendering a page from its template, with what every page shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(request: Request, template: str, values: dict[str, Any], *, status: int = 200) -> Response:
    """The page with the signed-in admin and their CSRF token (when signed in)."""
    session = getattr(request.state, "session", None)
    common = {
        "admin": session.username if session else None,
        "csrf": session.csrf if session else None,
        "path": request.url.path,
    }
    html = _env.get_template(template).render(common | values)
    return HTMLResponse(html, status_code=status)
