"""The console's static files, read once from the package and served from memory.

Only files that exist in the package are served, by exact name, so no path from a URL ever
reaches the file system. Each answer carries a strong ETag; the browser revalidates
(``no-cache``) and gets a 304 while the file is unchanged. Each file is also kept gzipped
(compressed once, at the first request), for browsers that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aiohttp import web

from omnirelay.wire.errors import NotFound

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    """Every file under ``static/``, by its path there (``pages/keys.js``)."""
    root = resources.files("omnirelay.api.console").joinpath("static")
    found: dict[str, StaticFile] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if suffix in CONTENT_TYPES:
                body = entry.read_bytes()
                digest = hashlib.sha256(body).hexdigest()[:16]
                packed = gzip.compress(body, compresslevel=9, mtime=0)
                found[name] = StaticFile(body, packed, CONTENT_TYPES[suffix], f'"{digest}"')

    walk(root, "")
    return found


def version() -> str:
    """One hash over every file: page shells name it so a new release is fetched afresh."""
    digest = hashlib.sha256()
    for name, item in sorted(static_files().items()):
        digest.update(name.encode() + item.etag.encode())
    return digest.hexdigest()[:12]


async def serve_static(request: web.Request) -> web.Response:
    item = static_files().get(request.match_info["path"])
    if item is None:
        raise NotFound("No such console file.")
    packed = "gzip" in request.headers.get("Accept-Encoding", "")
    # Each encoding is its own representation, with its own tag.
    etag = item.etag[:-1] + '-gz"' if packed else item.etag
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = item.content_type
    if packed:
        return web.Response(body=item.gzipped, headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=item.body, headers=headers)
