"""The wheel's metadata (license, project URLs, classifiers; the README as long description
with absolute links) and a build that prints no warning."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser

from tests.fixtures.server import ROOT


def test_the_wheel_builds_quietly_with_complete_metadata(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("manas360-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith("METADATA"))).decode())
    assert {"manas360/docs_ui/index.html", "manas360/docs_ui/init.js"} <= set(names)
    account_page = {f"manas360/account_ui/{name}" for name in ("index.html", "app.js", "app.css", "icon.svg")}
    assert account_page <= set(names)
    assert metadata["License-Expression"] == "LicenseRef-Proprietary"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Repository", "Documentation", "Issues"} <= set(urls)
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and "Private :: Do Not Upload" in classifiers
    description = metadata.get_payload()
    assert "## Quickstart" in description
    links = re.findall(r"\]\(([^)\s]+)\)", description)
    assert links and all(link.startswith(("https://", "http://", "#")) for link in links), links
    assert f"]({urls['Repository']}/blob/main/docs/operations.md" in description


def test_the_image_and_manifests_carry_the_package_version():
    from manas360 import __version__

    assert f"ARG VERSION={__version__}\n" in (ROOT / "Containerfile").read_text()
    for manifest in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        for image in re.findall(r"image: (\S+)", manifest.read_text()):
            assert image == f"manas360:{__version__}", (manifest.name, image)
