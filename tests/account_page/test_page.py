"""The account page as HTTP: each path the page and the mailed links use answers the page,
with its own CSP (exactly its own files) and no-store; its files with their content types;
the HTML loads nothing but those files and carries no inline script, style or handler;
anything else under /account/ is the envelope's 404."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from manas360.http.hooks import ACCOUNT_CSP, ACCOUNT_PAGES

PAGES = ("/account", "/reset-password", "/verify-email", "/confirm-email", "/cancel-email-change", "/cancel-deletion")
FILES = {
    "/account/app.js": "text/javascript; charset=utf-8",
    "/account/app.css": "text/css; charset=utf-8",
    "/account/icon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OTHER_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


class _Page(HTMLParser):
    """Every tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in and data.strip():
            self.inline.append(f"<{self._in}>{data.strip()[:60]}")


async def test_every_page_path_answers_the_page_with_its_own_csp_and_no_store(client):
    assert ACCOUNT_PAGES == set(PAGES) and ACCOUNT_CSP == CSP
    bodies = set()
    for path in PAGES:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/html; charset=utf-8", path
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["cache-control"] == "no-store", path
        for name, expected in OTHER_HEADERS.items():
            assert response.headers[name] == expected, (path, name)
        bodies.add(response.content)
    assert len(bodies) == 1  # one page; its script reads the path


async def test_the_files_have_their_types_the_same_csp_and_no_store(client):
    for path, content_type in FILES.items():
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type, path
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["cache-control"] == "no-store", path
        assert response.content, path


async def test_the_html_loads_only_its_own_files_and_nothing_inline(client):
    html = (await client.get("/account")).text
    page = _Page()
    page.feed(html)
    assert page.inline == []
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == []
    assert [(tag, attrs) for tag, attrs in page.tags if "style" in attrs] == []
    loaded = sorted(
        attrs.get("src") or attrs.get("href") or ""
        for tag, attrs in page.tags
        if tag in ("script", "link", "img", "iframe", "object", "embed", "source")
    )
    assert loaded == sorted(FILES), loaded
    links = [attrs.get("href") for tag, attrs in page.tags if tag == "a"]
    assert links and all(link == "/account" for link in links), links
    assert not re.search(r"https?://", html), "the page names an external URL"
    script = (await client.get("/account/app.js")).text
    assert not re.search(r"https?://", script.replace("http://www.w3.org/2000/svg", ""))
    # Tokens in memory only, and nothing from the API ever parsed as HTML.
    for banned in ("localStorage", "sessionStorage", "document.cookie", "innerHTML", "outerHTML", "eval("):
        assert banned not in script, banned
    assert "history.replaceState" in script


async def test_every_input_has_a_label_and_the_errors_a_live_region(client):
    page = _Page()
    page.feed((await client.get("/account")).text)
    labelled = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
    inputs = [attrs for tag, attrs in page.tags if tag in ("input", "select", "textarea")]
    assert len(inputs) >= 20
    unlabelled = [attrs.get("id") for attrs in inputs if attrs.get("id") not in labelled]
    assert unlabelled == []
    ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"
    regions = {attrs.get("id"): attrs for _, attrs in page.tags if attrs.get("role") in ("alert", "status")}
    assert regions["problem"]["aria-live"] == "assertive" and regions["notice"]["aria-live"] == "polite"


async def test_anything_else_under_account_is_the_envelopes_404(client):
    for path in ("/account/index.html", "/account/app.js.map", "/account/..%2Fapp.py", "/account/x/y"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "NotFound", path
        assert response.headers["cache-control"] == "no-store", path
