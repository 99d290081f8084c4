"""/docs works with no internet access: the page and everything it loads come from the
service (Swagger UI from the installed swagger-ui-py package), and no URL in them points
anywhere else."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


async def test_the_docs_page_loads_only_from_the_service(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = _Links()
    links.feed(response.text)
    assert len(links.urls) >= 4  # stylesheet, icon, two Swagger UI scripts, the start script
    assert not re.search(r"https?://", response.text), "the page names an external URL"
    for url in links.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        if url.endswith(".js"):
            assert asset.headers["content-type"].startswith("text/javascript"), url
        elif url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css"), url


async def test_the_start_script_points_the_ui_at_the_served_document(client):
    script = (await client.get("/docs/assets/init.js")).text
    assert 'url: "/docs/openapi.json"' in script
    assert "validatorUrl: null" in script  # the validator badge would call out to the internet
    assert not re.search(r"https?://", script)


async def test_swagger_ui_is_version_5_and_its_licence_is_served(client):
    bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert re.search(r'"5\.\d+\.\d+"', bundle), "OpenAPI 3.1 needs Swagger UI 5"
    licence = await client.get("/docs/assets/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text


async def test_only_listed_assets_are_served(client):
    for name in ("index.css", "..%2Fapp.py", "swagger-editor.js"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code == 404 and response.json()["error"] == "NotFound", name
