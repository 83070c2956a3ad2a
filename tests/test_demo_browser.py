"""`pulse demo` in a real browser: the command serves on a free loopback port, headless Chromium (the system's,
driven by Playwright) uploads the shipped LR face, then a corrupt file, then the face again.

Skipped only where the demo extra (Gradio) or a Chromium is missing; `.ci/run` installs both. Playwright is part of
the test extra, so without it the test fails saying so. Nothing is downloaded while it runs, and the page must fetch
nothing from anywhere but the server.
"""

import contextlib
import io
import shutil
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pulse.demo import EXAMPLES

ASTRONAUT_LR = Path(__file__).resolve().parents[1] / "examples" / "lr_faces" / "astronaut.png"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
SERVER_START_S, SEARCH_S = 180, 120  # bounds on a loaded 2-core machine (it starts in about 10 s, searches in 2)

pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
if CHROMIUM is None:
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_load):
    """`pulse demo` on a free loopback port: (url, process, log path); stopped (Ctrl-C, then killed) at the end."""
    folder = tmp_path_factory.mktemp("demo")
    port = demo_load.free_port()
    process = demo_load.start_server(port, folder, ["--device", "cpu", "--time-limit", str(SEARCH_S)], SERVER_START_S)
    try:
        yield f"http://127.0.0.1:{port}/", process, folder / "server.log"
    finally:
        demo_load.stop_server(process)


@pytest.fixture(scope="module")
def sync_api(import_test_extra):
    return import_test_extra("playwright.sync_api", "playwright")


def upload(sync_api, page, path: Path) -> None:
    if page.locator("#pulse-upload button[aria-label='Clear']").count():
        page.click("#pulse-upload button[aria-label='Clear']")
    page.locator("#pulse-upload input[type=file]").set_input_files(str(path))
    sync_api.expect(page.locator("#pulse-upload")).to_contain_text(path.stem)  # uploaded to the server


def run_and_wait(sync_api, page, outcome: str, says: str) -> str:
    """Run, wait for the status line of ``outcome`` ("done" or "error") to say ``says``; return that line."""
    page.click("#pulse-run")
    line = page.locator(f"#pulse-status .pulse-{outcome}")
    sync_api.expect(line).to_contain_text(says, timeout=SEARCH_S * 1000)
    return line.inner_text()


def result_sizes(page) -> list[list[int]]:
    """The natural sizes of the gallery's images, once all have loaded."""
    page.wait_for_function("""() => {
        const images = [...document.querySelectorAll('#pulse-results img')];
        return images.length === 3 && images.every(i => i.complete && i.naturalWidth > 0);
    }""")
    return page.eval_on_selector_all("#pulse-results img",
                                     "images => images.map(i => [i.naturalWidth, i.naturalHeight])")


@contextlib.contextmanager
def browser_page(sync_api, url: str, log: Path, tmp_path: Path):
    """Headless Chromium on ``url``; on failure a screenshot and the server's log; the page must fetch nothing from
    anywhere but the server."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        elsewhere = []
        page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
        try:
            page.goto(url)
            yield page
            assert not elsewhere, f"the page fetched from outside the server: {elsewhere}"
        except Exception:
            page.screenshot(path=tmp_path / "page.png", full_page=True)
            print(f"screenshot: {tmp_path / 'page.png'}\nserver log:\n{log.read_text()}")
            raise
        finally:
            browser.close()


def test_a_face_then_a_corrupt_file_then_the_face_again(server, sync_api, tmp_path):
    url, process, log = server
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(ASTRONAUT_LR.read_bytes()[:300])
    with browser_page(sync_api, url, log, tmp_path) as page:
        steps = page.locator("#pulse-steps input[type=number]")
        steps.fill("5")
        steps.press("Enter")

        upload(sync_api, page, ASTRONAUT_LR)
        run_and_wait(sync_api, page, "done", "astronaut.png: done in")
        status = page.inner_text("#pulse-status")
        assert "LR-PSNR" in status and "within eps" in status and "never" in status.lower()
        assert result_sizes(page) == [[128, 128]] * 3  # LR (enlarged) | bicubic | the pulse result
        assert " dB " in page.inner_text("#pulse-results")  # the result's caption: its LR-PSNR
        link = page.locator("#pulse-download a[href$='/astronaut_pulse.zip']").get_attribute("href")
        with urllib.request.urlopen(link, timeout=30) as answer, zipfile.ZipFile(io.BytesIO(answer.read())) as got:
            assert sorted(got.namelist()) == ["astronaut.png", "report.json"]
            assert Image.open(io.BytesIO(got.read("astronaut.png"))).size == (128, 128)

        upload(sync_api, page, corrupt)
        said = run_and_wait(sync_api, page, "error", "corrupt.png: not a readable image")
        assert said.startswith("error: corrupt.png: not a readable image") and process.poll() is None

        upload(sync_api, page, ASTRONAUT_LR)
        run_and_wait(sync_api, page, "done", "astronaut.png: done in")
        assert result_sizes(page) == [[128, 128]] * 3


def test_the_page_opens_with_captioned_examples_and_one_click_runs_one(server, sync_api, tmp_path):
    url, _, log = server
    with browser_page(sync_api, url, log, tmp_path) as page:
        sync_api.expect(page.locator("#pulse-examples button")).to_have_text([e.caption for e in EXAMPLES])
        page.locator("#pulse-examples button", has_text="srresnet").click()  # the fast one: no search
        line = page.locator("#pulse-status .pulse-done")
        sync_api.expect(line).to_contain_text("astronaut_face_16px.png: done in", timeout=SEARCH_S * 1000)
        assert result_sizes(page) == [[128, 128]] * 3 and "srresnet: " in page.inner_text("#pulse-results")
        sync_api.expect(page.locator("#pulse-upload")).to_contain_text("astronaut_face_16px")  # the example's file
        assert not page.locator("#pulse-steps").is_visible()  # srresnet does not search
