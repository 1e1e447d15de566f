"""The chat page over plain HTTP: `/` serves it to browsers (and a line of text to scripts), its
files come with their content types and a policy that keeps the page on this server, and with
--api-key the page stays public while the API it calls needs the key.
(The page at work in a browser: test_browser_chat_page.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from mullama.server import BackgroundServer, ServedModel, create_app, page

pytest_plugins = ["server_fixtures"]

API_KEY = "sesame"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(scope="module")
def page_model(tiny_model_path: Path):
    """The tiny model on the default engine (the page does not depend on which)."""
    from mullama.model import Model

    return Model.load(tiny_model_path)


@pytest.fixture(scope="module")
def open_server(page_model) -> Iterator[BackgroundServer]:
    running = BackgroundServer(create_app(ServedModel(page_model, "tiny"))).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed_server(page_model) -> Iterator[BackgroundServer]:
    served = ServedModel(page_model, "tiny")
    running = BackgroundServer(create_app(served, api_key=API_KEY)).start()
    yield running
    running.stop()


def test_a_browser_gets_the_chat_page(open_server: BackgroundServer) -> None:
    response = httpx.get(open_server.url + "/", headers=BROWSER, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert '<script type="module" src="/static/chat.js"></script>' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_script_gets_a_line_of_text(open_server: BackgroundServer) -> None:
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = httpx.get(open_server.url + "/", headers=headers, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == "mullama is running"


def _referenced_files(html: str, script: str) -> set[str]:
    """The page's own files: src/href in the HTML and the scripts' relative imports."""
    names = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    names |= set(re.findall(r'from "\./([^"]+)"', script))
    return names


def test_every_file_the_page_uses_is_served_with_its_type(open_server: BackgroundServer) -> None:
    html = page.read_asset("index.html").decode()
    used = _referenced_files(html, page.read_asset("chat.js").decode())
    assert used == {"chat.js", "chat.css", "markdown.js"}
    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
    for name in used:
        response = httpx.get(f"{open_server.url}/static/{name}", timeout=10)
        assert response.status_code == 200, name
        assert response.headers["content-type"] == types[name.rsplit(".", 1)[1]]
        assert response.content == page.read_asset(name)


def test_the_package_ships_exactly_the_files_served() -> None:
    folder = resources.files("mullama.server") / "static"
    assert {f.name for f in folder.iterdir() if f.is_file()} == set(page.MEDIA_TYPES)


def test_the_page_fetches_nothing_from_elsewhere() -> None:
    for name in page.MEDIA_TYPES:
        text = page.read_asset(name).decode()
        # No address of another host in a src, href, import, url() or fetch.
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), name
        assert not re.search(r"""(import|fetch|url)\s*\(?\s*["']?(https?:)?//""", text), name
        assert not re.search(r"""from\s+["'](https?:)?//""", text), name


def test_other_names_under_static_are_not_found(open_server: BackgroundServer) -> None:
    for path in ("/static/nope.js", "/static/..%2fapp.py", "/static/", "/static/index.htm"):
        response = httpx.get(open_server.url + path, timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_with_an_api_key_the_page_is_public_and_the_api_is_not(
    keyed_server: BackgroundServer,
) -> None:
    url = keyed_server.url
    page_response = httpx.get(url + "/", headers=BROWSER, timeout=10)
    assert page_response.status_code == 200
    assert page_response.headers["content-type"] == "text/html; charset=utf-8"
    for name in page.MEDIA_TYPES:
        assert httpx.get(f"{url}/static/{name}", timeout=10).status_code == 200, name
    # What the page calls first: refused without the key (the JSON it reads the message from).
    refused = httpx.get(url + "/v1/models", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    ok = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert ok.status_code == 200
    assert [m["id"] for m in ok.json()["data"]] == ["tiny"]
    # The public paths are the page's own: other names still need the key.
    assert httpx.get(url + "/staticx", timeout=10).status_code == 401
    assert httpx.get(url + "/v1/static/chat.js", timeout=10).status_code == 401
