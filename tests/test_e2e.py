"""Start the real app and drive it in headless Chromium (Debian's /usr/bin/chromium via Playwright).

Screenshots are written to MEDCORE_SCREENSHOT_DIR (default: screenshots/) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import CHROMIUM
from tests.synthetic import chest_like, encode, make_dicom, text_screenshot

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")]
SCREENSHOTS = Path(os.environ.get("MEDCORE_SCREENSHOT_DIR", "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADMIN = ("chief", "e2e admin secret")  # created by the app at first start, from the environment
CLINICIAN = ("dr.e2e", "e2e clinician secret")  # created with `medcore users add`


def start_app(store: Path, port: int | None = None, arguments: tuple[str, ...] = (), **environment: str):
    """The real app on a free port (or `port`) with its own store and the e2e accounts, and Streamlit's `arguments`
    (e.g. --secrets.files); yields its URL, then stops it."""
    port = port or _free_port()
    import tempfile

    env = {**os.environ, "MEDCORE_STORE_DIR": str(store), "MEDCORE_ADMIN_USER": ADMIN[0],
           "MEDCORE_ADMIN_PASSWORD": ADMIN[1],  # the tests' data sets lie in the temporary folder
           "MEDCORE_DATA_ROOTS": os.pathsep.join([os.environ.get("MEDCORE_DATA_DIR", "../shared/data"),
                                                 tempfile.gettempdir()]), **environment}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", *arguments],
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
    added = subprocess.run([sys.executable, "-m", "medcore.cli", "users", "add", CLINICIAN[0]], capture_output=True,
                           text=True, env={**env, "MEDCORE_NEW_PASSWORD": CLINICIAN[1]}, timeout=60)
    assert added.returncode == 0, added.stderr
    yield url
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    yield from start_app(tmp_path_factory.mktemp("store"))


@pytest.fixture
def own_app(tmp_path_factory):
    """(URL, store) of an app with a store of its own, for a test that changes production: no test then depends on
    which others ran before it (issue 26)."""
    store = tmp_path_factory.mktemp("own-store")
    for url in start_app(store):
        yield url, store


def _patient_content_through_the_cli(store: Path, film: Path) -> None:
    """A film and a note with identifying text scored into `store` by the command line, as a clinician's script
    would: the audit log must then hold neither the file's name nor the note's words."""
    env = {**os.environ, "MEDCORE_STORE_DIR": str(store)}
    for command, stdin in ((["predict", "xray", str(film), "--json"], None),
                           (["predict", "notes", "--task", "symptom2disease", "--json"],
                            "Patient Jane Quorrington coughs at night <img src=x onerror=alert(1)>")):
        done = subprocess.run([sys.executable, "-m", "medcore.cli", *command], input=stdin, capture_output=True,
                              text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr


def sign_in(browser, url: str, account: tuple[str, str], height: int = 1500, path: str = ""):
    """A fresh browser session (its own cookies and Streamlit session), signed in through the form."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url + path)
    page.get_by_role("textbox", name="User name").fill(account[0])
    page.get_by_role("textbox", name="Password").fill(account[1])
    page.get_by_role("button", name="Sign in", exact=True).click()  # not "Sign in with your hospital account"
    page.get_by_text("Signed in as").wait_for(timeout=90_000)
    return page


def settled(page):
    """Wait until Streamlit has finished the current run: the app's own script-state attribute says so (no fixed
    sleep; callers first wait for what the run they started must show)."""
    page.wait_for_function("() => document.querySelector('[data-testid=stApp]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=60_000)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)
    return page


def test_xray_batch_in_the_browser(app_url, browser, xray_model, tmp_path):
    reference = xray_model.artifact.quality_reference
    film = chest_like(reference, 700, 600, seed=7)
    page = sign_in(browser, app_url, CLINICIAN, 2600)
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
    expect(page.get_by_text("Download report (HTML)")).to_have_count(2)
    page.locator("img").nth(3).wait_for()  # original + overlay for each of the two films
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "xray_batch.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_text("Download summary (CSV)").click()
    csv = Path(download.value.path()).read_text()
    assert csv.splitlines()[0] == "file,decision,pneumonia probability,note" and "study.dcm" in csv
    with page.expect_download() as download:  # made on click, on Streamlit's own thread, for this live session
        page.get_by_role("button", name="PDF report").first.click()
    report = Path(download.value.path()).read_bytes()
    assert report.startswith(b"%PDF") and len(report) > 20_000  # the film, its heatmap and the figures
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", download.value.path(), "-"], capture_output=True, text=True).stdout
        assert "MedCore chest X-ray report" in text and "session ended" not in text
    page.get_by_role("button", name="Check the heatmap with a second method (occlusion)").first.click()
    page.get_by_text("Occlusion: regions whose covering lowered the pneumonia score").wait_for(timeout=60_000)
    page.get_by_text("The two methods").first.wait_for()
    expect(page.get_by_text("Rank correlation", exact=True)).to_have_count(1)
    page.get_by_text("Occlusion: regions").scroll_into_view_if_needed()
    settled(page).screenshot(path=str(SCREENSHOTS / "xray_occlusion.png"))
    page.close()


def test_case_note_in_the_browser(app_url, browser):
    # Reached by URL without signing in, the page does not run: app.py shows the sign-in form instead.
    # After signing in there, the bookmarked page opens.
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(f"{app_url}/notes")
    page.get_by_role("button", name="Sign in").wait_for(timeout=90_000)
    expect(page.get_by_text("Paste the note")).to_have_count(0)
    expect(page.get_by_text("common")).to_have_count(0)
    page.get_by_role("textbox", name="Password").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sign_in.png"))
    page.close()
    page = sign_in(browser, app_url, CLINICIAN, 1800, path="/notes")
    page.get_by_text("Paste the note").wait_for(timeout=90_000)
    expect(page.get_by_text("decision support, not a diagnosis")).to_have_count(1)
    expect(page.get_by_role("link", name="Models & retraining")).to_have_count(0)  # not for clinicians
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
    expect(page.locator("img[src=x]")).to_have_count(0)  # the note's markup is shown as text, never run
    page.get_by_text("<img src=x onerror=alert(1)>", exact=False).first.wait_for(state="attached")
    page.get_by_role("button", name="Check the words with a second method (LIME)").click()
    page.get_by_text("SHAP and LIME share").wait_for(timeout=60_000)
    page.get_by_text("SHAP and LIME share").scroll_into_view_if_needed()
    settled(page).screenshot(path=str(SCREENSHOTS / "case_note_lime.png"))
    page.close()


def test_a_note_the_model_is_unsure_of_names_a_set(app_url, browser):
    """A short, vague note on the abstracts task: one category is not enough to hold the true one with 90 % coverage,
    so the page names the set and still shows the candidates and the words behind them."""
    page = sign_in(browser, app_url, CLINICIAN, 1500, path="/notes")
    page.get_by_text("Paste the note").wait_for(timeout=90_000)
    page.get_by_role("combobox", name="Task").click()
    page.get_by_role("option", name="condition category").click()
    page.get_by_role("textbox").first.fill("Patient reports tiredness and some pain for two weeks.")
    page.get_by_role("button", name="Analyse").click()
    page.get_by_text("One of:").wait_for(timeout=60_000)
    expect(page.get_by_text("read them as the possibilities to weigh")).to_have_count(1)
    page.locator(".js-plotly-plot .bars path").first.wait_for()
    settled(page).screenshot(path=str(SCREENSHOTS / "case_note_uncertain.png"), full_page=True)
    page.close()


def test_performance_page_in_the_browser(app_url, browser):
    page = sign_in(browser, app_url, CLINICIAN)
    page.get_by_role("link", name="Model performance").click()
    page.get_by_text("Model performance").first.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(3).wait_for(timeout=60_000)
    page.get_by_text("ROC curve").first.wait_for(state="attached")
    page.get_by_text("Calibration (reliability)").first.wait_for(state="attached")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "performance_xray.png"), full_page=True)
    page.get_by_role("tab", name="Chest X-ray: recent use").click()
    page.get_by_text("studies in the last 30 days").wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "performance_recent_use.png"), full_page=True)
    page.get_by_role("tab", name="Case notes").click()
    page.get_by_text("F1 per class").wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "performance_notes.png"), full_page=True)
    page.close()


def test_admin_pages_are_refused_to_clinicians_even_by_url(app_url, browser):
    for path in ("/admin", "/audit_log"):
        page = sign_in(browser, app_url, CLINICIAN, path=path)
        page.get_by_text("Operating threshold").wait_for(timeout=60_000)  # the default page, nothing else
        expect(page.get_by_text("Start retraining")).to_have_count(0)
        expect(page.get_by_text("most recent events")).to_have_count(0)
        expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
        page.screenshot(path=str(SCREENSHOTS / f"clinician_at_{path[1:]}.png"))
        page.close()


def test_admin_retrains_compares_promotes_rolls_back_and_audits(own_app, browser, xray_model, tmp_path):
    from playwright.sync_api import expect

    from tests.synthetic import write_opacity_folder

    app_url, store = own_app
    films = write_opacity_folder(tmp_path / "films", xray_model.artifact.quality_reference, 20)
    named_film = tmp_path / "Quorrington_Jane_chest.png"
    named_film.write_bytes(encode(chest_like(xray_model.artifact.quality_reference, 600, 500, seed=3), "PNG"))
    _patient_content_through_the_cli(store, named_film)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = sign_in(browser, app_url, ADMIN, 1900)
    page.get_by_role("link", name="Models & retraining").click()
    page.get_by_text("In production:").wait_for(timeout=60_000)
    shipped = xray_model.artifact.version
    page.get_by_text(shipped).first.wait_for(state="attached")
    page.get_by_label("Path on the server").fill(str(films))
    page.get_by_role("spinbutton", name="Epochs per member").fill("60")
    page.get_by_role("combobox", name="Image size (px)").click()
    page.get_by_role("option", name="64", exact=True).click()
    page.get_by_role("combobox", name="Ensemble members").click()
    page.get_by_role("option", name="1", exact=True).click()
    page.get_by_role("button", name="Start retraining").click()
    page.get_by_text("about").filter(has_text="left").first.wait_for(timeout=120_000)  # live epoch progress
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "admin_training_live.png"), full_page=True)

    # Another browser (or a reload) sees the same run, from the store.
    other = sign_in(browser, app_url, ADMIN, 1900)
    other.get_by_role("link", name="Models & retraining").click()
    other.get_by_text("Candidate `xray-").or_(other.get_by_text("Training: Chest X-ray")).first.wait_for(timeout=60_000)
    other.close()

    page.get_by_text("Both models scored on the same").wait_for(timeout=240_000)
    page.get_by_text("ROC on the same held-out data").wait_for(timeout=30_000)
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_candidate.png"), full_page=True)
    page.get_by_role("button", name="Promote to production").click()
    page.get_by_text("status: production").wait_for(timeout=60_000)
    candidate = page.get_by_text("In production:").inner_text()
    assert shipped not in candidate

    page.get_by_role("tab", name="Versions and rollback").click()
    page.get_by_text("History", exact=True).wait_for()
    # The version production replaced (the shipped one) is offered first; release 1 follows it.
    expect(page.get_by_role("combobox", name="Version to put in production")).to_have_value(shipped)
    page.get_by_role("button", name="Put in production").click()
    page.get_by_text(f"In production: {shipped}").wait_for(timeout=60_000)
    settled(page).get_by_role("tab", name="Versions and rollback").click()
    page.screenshot(path=str(SCREENSHOTS / "admin_versions.png"), full_page=True)

    page.get_by_role("link", name="Audit log").click()
    page.get_by_text(re.compile(r"of the \d+ most recent events")).wait_for(timeout=60_000)
    page.get_by_role("button", name="Download these events (CSV)").wait_for(timeout=30_000)
    page.get_by_text("Outcome", exact=True).wait_for()
    page.screenshot(path=str(SCREENSHOTS / "audit_log.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_text("Download these events (CSV)").click()
    csv = Path(download.value.path()).read_text()
    for action in ("sign_in", "train_start:xray", "train:xray", "promote:xray", "rollback:xray"):
        assert action in csv, action
    assert "predict_xray" in csv and "predict_notes" in csv  # the scripted studies are audited ...
    assert "Quorrington" not in csv and "onerror" not in csv and "coughs" not in csv  # ... without patient content
    page.close()


def test_admin_validates_locally_promotes_and_the_pages_follow(own_app, browser, xray_model, tmp_path):
    """Local validation on the hospital's own films: a recalibrated candidate, promoted; the X-ray banner and the
    performance page then state the local, cross-validated figures."""
    from tests.synthetic import write_opacity_folder

    app_url, _ = own_app
    films = write_opacity_folder(tmp_path / "local", xray_model.artifact.quality_reference, 30, seed=11)
    page = sign_in(browser, app_url, ADMIN, 1700)
    page.get_by_role("link", name="Models & retraining").click()
    page.get_by_text("In production:").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Local validation").click()
    page.get_by_label("Folder of local films on the server").fill(str(films))
    page.get_by_role("button", name="Validate and recalibrate").click()
    page.get_by_text("Locally calibrated candidate").wait_for(timeout=180_000)
    expect(page.get_by_text("Calibration chosen by cross-validated ECE")).to_have_count(1)
    expect(page.get_by_text("Only 30 films in the smaller class")).to_have_count(1)  # a small set is flagged
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_local_validation.png"), full_page=True)
    page.get_by_role("button", name="Promote to production").last.click()
    page.get_by_text(re.compile(r"In production: xray-\S+-local-")).wait_for(timeout=60_000)

    page.get_by_role("link", name="Chest X-ray").click()
    page.get_by_text("Local validation: 60 films").wait_for(timeout=60_000)
    page.screenshot(path=str(SCREENSHOTS / "xray_banner_local.png"))
    page.get_by_role("link", name="Model performance").click()
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    page.get_by_text("Local validation", exact=True).first.wait_for(state="attached")
    settled(page).screenshot(path=str(SCREENSHOTS / "performance_local.png"), full_page=True)
    page.close()


def test_admin_trains_across_hospitals_with_flower_and_watches_each_round(app_url, browser, xray_model, tmp_path):
    """Federated training from the admin page: three hospital folders, live per-round curves, a compared candidate."""
    from tests.synthetic import write_opacity_folder

    reference = xray_model.artifact.quality_reference
    sites = [write_opacity_folder(tmp_path / f"hospital_{name}", reference, n, seed=20 + i)
             for i, (name, n) in enumerate((("a", 10), ("b", 14), ("c", 12)))]
    held_out = write_opacity_folder(tmp_path / "held_out", reference, 10, seed=30)
    page = sign_in(browser, app_url, ADMIN, 2000)
    page.get_by_role("link", name="Models & retraining").click()
    page.get_by_text("In production:").wait_for(timeout=60_000)
    page.get_by_text("Federated training across hospitals (Flower)").click()
    page.get_by_label("Hospital folders on the server, one per line").fill("\n".join(str(s) for s in sites))
    page.get_by_label("Held-out folder for the comparison with production").fill(str(held_out))
    rounds = page.get_by_label("Rounds")
    rounds.fill("2")
    rounds.press("Tab")
    page.get_by_role("button", name="Start federated training").click()
    page.get_by_text("Validation AUC per round, global and per hospital").wait_for(timeout=240_000)
    page.get_by_text(re.compile(r"Round \d of 2")).wait_for(timeout=60_000)
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_federated_live.png"), full_page=True)
    page.get_by_text(re.compile(r"Candidate xray-fed-")).wait_for(timeout=300_000)
    page.get_by_text(re.compile(r"federated over 3 hospitals")).first.wait_for(state="attached")
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_federated_candidate.png"), full_page=True)
    page.close()


def test_admin_trains_a_film_generator_and_sees_it_judged(app_url, browser, xray_model, tmp_path):
    """Synthetic films tab: train a tiny generator in the background with live curves, promote it, then see its
    quality per class, marked samples of each class and the closest generated/training pairs."""
    from tests.synthetic import write_opacity_folder

    films = write_opacity_folder(tmp_path / "real", xray_model.artifact.quality_reference, 16, seed=40)
    page = sign_in(browser, app_url, ADMIN, 2600)
    page.get_by_role("link", name="Models & retraining").click()
    page.get_by_text("In production:").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Synthetic films").click()
    form = page.get_by_test_id("stForm").filter(has_text="Real films to learn from")
    form.get_by_label("Folder of real films on the server").fill(str(films))
    for label, value in (("Epochs (at most)", "4"), ("Measure every (epochs)", "2")):
        field = form.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Tab")
    form.get_by_role("combobox", name="Film size (px)").click()
    page.get_by_role("option", name="32", exact=True).click()
    form.get_by_role("button", name="Train a generator").click()
    page.get_by_text("Fréchet distance / real-vs-real floor").wait_for(timeout=240_000)
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_gan_live.png"), full_page=True)
    page.get_by_text(re.compile(r"Candidate gan-")).wait_for(timeout=300_000)
    page.get_by_role("button", name="Promote to production").click()
    page.get_by_text(re.compile(r"Generator gan-\S+ \(production\)")).wait_for(timeout=60_000)
    page.get_by_text("Memorization check").wait_for(timeout=180_000)  # 16 samples drawn and marked first
    page.get_by_text(re.compile(r"nearest training film \(")).first.wait_for(timeout=60_000)
    images = settled(page).get_by_test_id("stImage").locator("img")
    assert images.count() >= 16 + 2 * 2, images.count()  # 8 samples per class, and generated/training pairs
    settled(page).screenshot(path=str(SCREENSHOTS / "admin_gan_generator.png"), full_page=True)
    page.close()


def test_an_unattended_page_clears_itself_when_the_session_ends(tmp_path_factory, browser, xray_model):
    """M4 (issue 21): nobody clicks; once the idle limit has passed, the film and its result leave the screen and the
    sign-in form says why."""
    for url in start_app(tmp_path_factory.mktemp("short-store"), MEDCORE_SESSION_IDLE_MINUTES="0.25"):
        page = sign_in(browser, url, CLINICIAN, 1600)
        page.locator("input[type=file]").set_input_files([{"name": "unattended.png", "mimeType": "image/png",
                                                           "buffer": encode(chest_like(
                                                               xray_model.artifact.quality_reference, 512, 512,
                                                               seed=5), "PNG")}])
        page.get_by_text("1 studies:").wait_for(timeout=90_000)
        page.get_by_text("without activity").wait_for(timeout=90_000)  # 15 s idle, then the 20 s clock
        page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
        expect(page.get_by_text("unattended.png")).to_have_count(0)
        expect(page.get_by_text("1 studies:")).to_have_count(0)
        page.screenshot(path=str(SCREENSHOTS / "session_ended_unattended.png"))
        page.close()


def test_sign_in_throttling_is_keyed_on_the_address_the_app_derives(tmp_path_factory, browser):
    """Behind a configured proxy (here: loopback), failures count against the browser's forwarded address as the
    app derives it, not the proxy's and not the session's: the store records them under that address, and a hop the
    client wrote itself (left of it) is not believed."""
    from sqlalchemy import create_engine, text

    store = tmp_path_factory.mktemp("proxy-store")
    # FORWARDED_ALLOW_IPS="": the web server under Streamlit (uvicorn) would otherwise already believe X-Forwarded-For
    # from loopback itself; here the derivation is MedCore's alone.
    for url in start_app(store, MEDCORE_TRUSTED_PROXIES="127.0.0.1/32", FORWARDED_ALLOW_IPS=""):
        for forwarded in ("203.0.113.7", "198.51.100.9, 203.0.113.7"):  # a client-written left hop is not believed
            context = browser.new_context(extra_http_headers={"X-Forwarded-For": forwarded})
            page = context.new_page()
            page.goto(url)
            for attempt in range(2):
                page.get_by_role("textbox", name="User name").fill(CLINICIAN[0])
                page.get_by_role("textbox", name="Password").fill(f"wrong password {attempt}")
                page.get_by_role("button", name="Sign in").click()
                settled(page).get_by_text("Wrong user name or password").first.wait_for(timeout=60_000)
            context.close()
        engine = create_engine(f"sqlite:///{store / 'medcore.sqlite'}")
        with engine.connect() as db:
            clients = [row[0] for row in db.execute(text("SELECT client FROM sign_in_failures"))]
        assert clients == ["ip:203.0.113.7"] * 4, clients
