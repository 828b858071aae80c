"""The PACS worklist in Chromium against a real Orthanc, with the watcher running beside the app (issue 23).

Studies stored by STOW-RS appear on the worklist in triage order; the watcher writes an SR and an overlay that a
DICOMweb query finds in the same study (a refused film gets its SR); a clinician opens a study, sees its result
beside the prior film and confirms a finding, which the performance page then counts; Orthanc's own web interface
shows MedCore's series in the study (a screenshot).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import pytest

from tests.test_e2e import CHROMIUM, CLINICIAN, SCREENSHOTS, sign_in, start_app
from tests.test_pacs import PACS

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
              pytest.mark.skipif(not PACS["url"], reason="needs Orthanc (eval $(.ci/orthanc start))")]


@pytest.fixture(scope="module")
def pacs_app(tmp_path_factory):
    """(URL, store folder) of the app with its watcher."""
    env = {f"MEDCORE_PACS_{k.upper()}": v for k, v in PACS.items() if v}
    store = tmp_path_factory.mktemp("pacs-store")
    for url in start_app(store, MEDCORE_PACS_WATCH="1", MEDCORE_PACS_POLL_SECONDS="1",
                         MEDCORE_WORKLIST_PAGE_SIZE="500", **env):  # the PACS holds other tests' studies too
        yield url, store


def _client(monkeypatch):
    from medcore.pacs.client import PacsClient

    for key, value in PACS.items():
        if value:
            monkeypatch.setenv(f"MEDCORE_PACS_{key.upper()}", value)
    return PacsClient()


def _medcore_series(client, study_uid: str, count: int, seconds: float = 90) -> list[dict]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = client.medcore_series(study_uid)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    pytest.fail(f"the watcher wrote {len(client.medcore_series(study_uid))} of {count} series in {seconds:.0f} s")


def test_the_worklist_the_watcher_and_feedback_in_the_browser(pacs_app, browser, xray_model, monkeypatch):
    from medcore.pacs import results
    from medcore.pacs.demo import chest_study
    from tests.synthetic import chest_like, text_screenshot

    url, store = pacs_app
    client = _client(monkeypatch)
    page = sign_in(browser, url, CLINICIAN, 1800)  # the app's first run starts its watcher
    reference = xray_model.artifact.quality_reference
    stamp = datetime.datetime.now().strftime("%H%M%S")
    films = {"clear": chest_like(reference, 1024, 1024, seed=31), "other": chest_like(reference, 1024, 1024, seed=32),
             "refused": text_screenshot(), "adult": chest_like(reference, 1024, 1024, seed=34)}
    studies = {name: chest_study(pixels, f"E2E{stamp}^{name}", f"E2E-{stamp}-{name}", f"E{stamp}{i}",
                                 patient_age="045Y" if name == "adult" else "")
               for i, (name, pixels) in enumerate(films.items())}
    prior = chest_study(chest_like(reference, 1024, 1024, seed=33), f"E2E{stamp}^clear", f"E2E-{stamp}-clear",
                        f"E{stamp}9", datetime.date.today() - datetime.timedelta(days=40))
    client.store([*studies.values(), prior])
    written = {name: _medcore_series(client, s.StudyInstanceUID, 1 if name in ("refused", "adult") else 2)
               for name, s in studies.items()}  # the watcher, beside the app, found them and wrote back
    assert [s["modality"] for s in written["refused"]] == ["SR"] == [s["modality"] for s in written["adult"]]
    sr = next(s for s in written["clear"] if s["modality"] == "SR")
    sop = client.instances(studies["clear"].StudyInstanceUID, sr["series_uid"])[0]
    read = results.read_result(client.instance(studies["clear"].StudyInstanceUID, sr["series_uid"], sop))
    assert read["source_sop_instance_uid"] == studies["clear"].SOPInstanceUID and read["probability"] is not None

    page.get_by_role("link", name="PACS worklist").click()
    page.get_by_text("Open a study").wait_for(timeout=90_000)
    assert page.get_by_text("No PACS watcher has run").count() == 0  # the watcher beside the app is polling
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "pacs_worklist.png"), full_page=True)
    page.get_by_role("combobox", name="Open a study").click()
    page.keyboard.type(f"E2E{stamp} ")  # the list holds other tests' studies too: only ours (it renders a window)
    options = page.get_by_role("option")
    options.first.wait_for()
    ours = [text for text in options.all_inner_texts() if f"E2E{stamp} " in text]  # (typing re-sorts by match)
    states = {text.split(" ")[1]: text.rsplit("· ", 1)[-1].strip() for text in ours}  # "E2E<stamp> <name> (...)"
    assert len(ours) == 4 and states["refused"] == "refused" and states["adult"] == "outside intended use"
    assert {states["clear"], states["other"]} <= {"flagged", "not flagged"}
    page.get_by_role("option", name=f"E2E{stamp} clear").first.click()
    page.get_by_text("Prior chest film of this patient").wait_for(timeout=120_000)
    page.get_by_text("Grad-CAM: regions that raised the pneumonia score").first.wait_for(timeout=60_000)
    page.get_by_text("The film shows").wait_for()
    page.get_by_text("NORMAL", exact=True).last.click()
    page.get_by_role("button", name="Save the finding").click()
    page.get_by_text("Saved: NORMAL").wait_for(timeout=60_000)
    page.screenshot(path=str(SCREENSHOTS / "pacs_study.png"), full_page=True)

    # The privacy officer's question, from the command line on the server: who listed or opened this patient?
    asked = subprocess.run([sys.executable, "-m", "medcore.cli", "audit", "accesses", "--patient-id",
                            f"E2E-{stamp}-clear", "--json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MEDCORE_STORE_DIR": str(store)})
    assert asked.returncode == 0, asked.stderr
    looks = json.loads(asked.stdout)["accesses"]
    assert {(r["user"], r["action"]) for r in looks} >= {(CLINICIAN[0], "listed"), (CLINICIAN[0], "opened")}

    page.get_by_role("link", name="Model performance").click()
    page.get_by_text("Agreement with clinicians' confirmed findings").wait_for(timeout=90_000)
    page.screenshot(path=str(SCREENSHOTS / "performance_pacs_agreement.png"), full_page=True)
    page.close()

    # Orthanc's own web interface shows MedCore's series inside the patient's study.
    context = browser.new_context(http_credentials={"username": PACS["user"], "password": PACS["password"]},
                                  viewport={"width": 1300, "height": 1000})
    explorer = context.new_page()
    base = PACS["url"].rsplit("/dicom-web", 1)[0]
    explorer.goto(f"{base}/app/explorer.html#find-patients")
    explorer.get_by_text(f"E2E-{stamp}-clear").first.click()
    explorer.get_by_text("XR CHEST PA").first.click()
    explorer.get_by_text("MedCore result").first.wait_for(timeout=30_000)
    explorer.screenshot(path=str(SCREENSHOTS / "orthanc_medcore_series.png"), full_page=True)
    context.close()
    assert os.path.getsize(SCREENSHOTS / "orthanc_medcore_series.png") > 10_000
