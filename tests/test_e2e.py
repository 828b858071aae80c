"""Start the real app and drive it in headless Chromium (Debian's /usr/bin/chromium via Playwright).

Screenshots are written to MEDCORE_SCREENSHOT_DIR (default: screenshots/) for a person to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.synthetic import chest_like, encode, make_dicom, text_screenshot

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")]
SCREENSHOTS = Path(os.environ.get("MEDCORE_SCREENSHOT_DIR", "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "MEDCORE_STORE_DIR": str(tmp_path_factory.mktemp("store"))}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("the app did not start within 90 s")
    yield url
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def test_xray_batch_in_the_browser(app_url, browser, xray_model, tmp_path):
    reference = xray_model.artifact.quality_reference
    film = chest_like(reference, 700, 600, seed=7)
    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    page.goto(app_url)
    page.get_by_text("Operating threshold").wait_for(timeout=90_000)
    page.locator("input[type=file]").set_input_files([
        {"name": "film.png", "mimeType": "image/png", "buffer": encode(film, "PNG")},
        {"name": "study.dcm", "mimeType": "application/dicom",
         "buffer": make_dicom((chest_like(reference, 512, 512, seed=8) * 4095).astype("uint16"), bits=12)},
        {"name": "screenshot.png", "mimeType": "image/png", "buffer": encode(text_screenshot(), "PNG")},
    ])
    page.get_by_text("3 studies:").wait_for(timeout=90_000)
    page.get_by_text("Grad-CAM: regions that raised the pneumonia score").first.wait_for(timeout=30_000)
    page.get_by_test_id("stAlertContentWarning").get_by_text("one flat tone").wait_for()
    assert page.get_by_text("Download report (HTML)").count() == 2
    assert page.locator("img").count() >= 4  # original + overlay for each of the two films
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "xray_batch.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_text("Download summary (CSV)").click()
    csv = Path(download.value.path()).read_text()
    assert csv.splitlines()[0] == "file,decision,pneumonia probability,note" and "study.dcm" in csv
    page.close()


def test_case_note_in_the_browser(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(f"{app_url}/notes")
    page.get_by_text("Paste the note").wait_for(timeout=90_000)
    # Reached by URL, the page still runs inside app.py's navigation (no page script runs on its own).
    assert page.get_by_text("decision support, not a diagnosis").count() == 1
    assert page.get_by_text("Chest X-ray").count() >= 1 and page.get_by_text("common").count() == 0
    page.get_by_role("combobox", name="Task").click()
    page.get_by_role("option", name="Disease from symptoms").click()
    page.get_by_text("symptom2disease").first.wait_for()  # the model caption of the chosen task
    note = ("I have been coughing a lot, wheezing, and I get short of breath at night, especially when it is cold. "
            "<img src=x onerror=alert(1)>")
    page.get_by_role("textbox").first.fill(note)
    page.get_by_role("button", name="Analyse").click()
    page.get_by_text("Most likely:").wait_for(timeout=60_000)
    page.get_by_text("pushed the note towards").wait_for()
    page.locator(".js-plotly-plot .bars path").first.wait_for()  # the top-3 bars are drawn
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "case_note.png"), full_page=True)
    hovered = page.locator("span[title^='SHAP']")
    assert hovered.count() >= 20
    assert page.locator("img[src=x]").count() == 0  # the note's markup is shown as text, never run
    assert page.get_by_text("<img src=x onerror=alert(1)>", exact=False).count() >= 1
    page.close()


def test_performance_page_in_the_browser(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(f"{app_url}/performance")
    page.get_by_text("Model performance").first.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
    assert page.get_by_text("ROC curve").count() >= 1 and page.get_by_text("Calibration (reliability)").count() >= 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "performance_xray.png"), full_page=True)
    page.get_by_role("tab", name="Case notes").click()
    page.get_by_text("F1 per class").wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "performance_notes.png"), full_page=True)
    page.close()
