"""report.html in a real headless browser (Debian's chromium; .ci/run installs it): the file
alone, without its figures folder, shows every image and is not blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs it: apt-get install chromium)"
)

# Run in the page once everything has loaded: one line per image, written into the DOM.
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 40), complete: i.complete,
                                                width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "imgcheck";
  out.textContent = JSON.stringify(imgs);
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def alone(synth, tmp_path_factory) -> Path:
    """report.html (test_report.py's synthetic study) copied into an empty folder: only what
    it embeds can show."""
    folder = tmp_path_factory.mktemp("mailed")
    shutil.copy(synth["html"], folder / "report.html")
    return folder / "report.html"


def loaded_images(html: str, tmp_path: Path) -> list[dict]:
    """What the browser made of each <img> of a page, after it loaded."""
    page = tmp_path / "checked.html"
    page.write_text(html.replace("</body>", CHECK + "\n</body>"))
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))


def test_the_check_sees_a_broken_image(tmp_path):
    """The control: a missing file is reported, an embedded one is not."""
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
        "nGNgYPj/HwADAgH/eL9GtQAAAABJRU5ErkJggg=="
    )
    html = f'<html><body><img src="{pixel}"><img src="missing.png"></body></html>'
    images = loaded_images(html, tmp_path)
    assert [i["width"] > 0 for i in images] == [True, False]


def test_every_image_loads_in_the_browser(alone, tmp_path):
    images = loaded_images(alone.read_text(), tmp_path)
    assert len(images) >= 10
    broken = [i for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, broken
    assert all(i["src"].startswith("data:image/png;base64,") for i in images)


def test_the_rendered_page_is_not_blank(alone, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", alone.as_uri())
    with Image.open(shot) as img:
        grey = img.convert("L")
        width, height = grey.size
        dark = sum(grey.histogram()[:200]) / (width * height)  # text, lines, plots
        colours = len(img.convert("RGB").resize((320, 600)).getcolors(320 * 600))
    assert (width, height) == (1280, 2400)
    assert dark > 0.01, f"only {dark:.2%} of the page is not near-white"
    assert colours > 50, "no figure colours on the page"
