"""The chat page: `GET /` in a browser, and its scripts and style under /static/.

Plain files shipped in the package (mullama/server/static/), no build step. The page and its
files are public even with --api-key (the API calls the page makes are what need the key).
Its Content-Security-Policy lets it load nothing and talk to nothing but this server.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mullama.server.errors import APIError, openai_error_response

ASSET_PREFIX = "/static/"
"""Where the page's files are served (public, like `/`)."""
PAGE = "index.html"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}
"""Every file the page is made of: the only names served under ASSET_PREFIX."""
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Revalidate: after an upgrade of mullama the browser takes the new page at once.
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """Whether `path` is the page or one of its files (served without the API key)."""
    return path == "/" or path.startswith(ASSET_PREFIX)


def read_asset(name: str) -> bytes:
    """A file of the page, from the installed package (KeyError for a name not in MEDIA_TYPES)."""
    if name not in MEDIA_TYPES:
        raise KeyError(name)
    return (resources.files("mullama.server") / "static" / name).read_bytes()


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html; scripts and health probes (curl, */*) get a line of text."""
    return "text/html" in request.headers.get("accept", "")


async def root(request: Request) -> Response:
    if not wants_html(request):
        return PlainTextResponse("mullama is running")
    return _asset_response(PAGE)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in MEDIA_TYPES:
        return openai_error_response(
            APIError(404, f"no file {ASSET_PREFIX}{name}", code="not_found")
        )
    return _asset_response(name)


def _asset_response(name: str) -> Response:
    return Response(read_asset(name), media_type=MEDIA_TYPES[name], headers=HEADERS)
