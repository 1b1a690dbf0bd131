"""The dashboard at /ui: the built files of `ui/` (the top-level folder), kept in `router/ui/` inside the
package so that a pip install serves them without Node.js. `make ui` builds them.

The files hold no data, so they need no token; every API call and stream the dashboard makes sends one.
A path under /ui that names no file is a route of the dashboard itself (`/ui/runs/ID`): it gets index.html.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

ROOT: Final = Path(__file__).resolve().parent.parent / "ui"
INDEX: Final = "index.html"
# the dashboard loads only its own files and calls only this router; React Flow sets inline styles
SECURITY_HEADERS: Final = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
NOT_BUILT: Final = "the dashboard is not built in this installation: run `make ui` in the source tree"


def resolve(root: Path, path: str) -> tuple[Path, bool] | None:
    """The file a /ui path names, and whether it is an asset (a content-hashed name, cached for good); the
    index for a route of the dashboard; None when nothing is built. Never a file outside `root`."""
    index = root / INDEX
    if not index.is_file():
        return None
    candidate = (root / path).resolve()
    if path and candidate.is_relative_to(root.resolve()) and candidate.is_file():
        return candidate, candidate.parent.name == "assets"
    return index, False


def mount_ui(app: FastAPI, root: Path = ROOT) -> None:
    @app.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=308)

    @app.api_route("/ui/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_file(path: str, request: Request) -> Response:
        found = resolve(root, path)
        if found is None:
            return JSONResponse({"error": NOT_BUILT}, status_code=404)
        file, asset = found
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        cache = "public, max-age=31536000, immutable" if asset else "no-cache"
        return FileResponse(file, media_type=media, headers={**SECURITY_HEADERS, "cache-control": cache})
