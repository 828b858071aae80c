"""H1 (issue 21): promote and roll back act only on what the admin saw, with two admins at once.

The version acted on and the production the page showed travel with the click itself; the registry refuses a
click whose page is out of date. Each test draws admin 1's page, lets admin 2 act meanwhile, then clicks.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from medcore import auth, registry, tasks
from medcore.jobs import store as job_store
from tests.conftest import signed_in_app

SECOND_ADMIN = auth.operator("cli:second-admin")  # the other admin, acting between draw and click


def _candidate(tmp_path, version: str) -> str:
    folder = tmp_path / version
    shutil.copytree(tasks.get("xray").shipped_dir, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = version
    (folder / "meta.json").write_text(json.dumps(meta))
    version = registry.register("xray", folder, "tests").version
    time.sleep(0.01)  # versions are listed newest first, by registration time
    return version


def _finished_job(candidate: str) -> None:
    """A retraining job that ended with `candidate` registered (what the Retrain tab shows)."""
    job_id = job_store._record("xray", tasks.get("xray").shipped_dir, "tests", {}, "tests")
    job_store.finish(job_id, "succeeded", version=candidate)
    time.sleep(0.01)


def _choice(page):
    """The versions tab's choice (its key names the production it was drawn for)."""
    return next(box for box in page.selectbox if (box.key or "").startswith("put-in-production-xray-"))


def _admin_page():
    page = signed_in_app("admin", "views/admin.py")
    assert not page.exception, page.exception
    return page


def test_put_in_production_acts_on_the_chosen_version_and_refuses_a_changed_production(store, tmp_path):
    c1, c2, c3, c4 = (_candidate(tmp_path, f"xray-c{i}") for i in (1, 2, 3, 4))
    shipped = registry.production("xray").version
    page = _admin_page()
    registry.promote("xray", c4, SECOND_ADMIN, expected_production=shipped)  # admin 2, meanwhile
    _choice(page).set_value(c1)  # the form: choice and click go together
    next(b for b in page.button if b.label == "Put in production").click().run()
    assert not page.exception, page.exception
    assert registry.production("xray").version == c4  # neither C1 (out of date) nor C3 (the list's new first)
    assert {registry.get("xray", v).status for v in (c1, c2, c3)} == {"candidate"}
    assert "changed to xray-c4 since this page was drawn" in page.error[0].value.replace("\\", "")

    # Drawn again, the page shows C4 in production; choosing C1 now puts exactly C1 there.
    _choice(page).set_value(c1)
    next(b for b in page.button if b.label == "Put in production").click().run()
    assert registry.production("xray").version == c1
    assert "is now in production" in page.success[0].value


def test_rolling_back_from_an_out_of_date_page_is_refused(store, tmp_path):
    c1, c2 = _candidate(tmp_path, "xray-r1"), _candidate(tmp_path, "xray-r2")
    shipped = registry.production("xray").version
    registry.promote("xray", c1, SECOND_ADMIN, expected_production=shipped)
    page = _admin_page()
    registry.promote("xray", c2, SECOND_ADMIN, expected_production=c1)  # admin 2, meanwhile
    _choice(page).set_value(shipped)  # roll back to the shipped model
    next(b for b in page.button if b.label == "Put in production").click().run()
    assert registry.production("xray").version == c2
    assert "since this page was drawn" in page.error[0].value


def test_the_retrain_tab_promotes_the_candidate_it_showed_not_a_newer_one(store, tmp_path):
    c1 = _candidate(tmp_path, "xray-job-c1")
    _finished_job(c1)
    page = _admin_page()
    assert any(f"Candidate `{c1}`" in s.value for s in page.subheader)
    c2 = _candidate(tmp_path, "xray-job-c2")
    _finished_job(c2)  # a newer job's candidate arrives before the click
    promote = next(b for b in page.button if b.label == "Promote to production")
    assert c1 in promote.key
    promote.click().run()
    assert registry.production("xray").version == c1
    assert registry.get("xray", c2).status == "candidate"


def test_the_retrain_tab_refuses_a_promotion_when_production_changed(store, tmp_path):
    c1, c4 = _candidate(tmp_path, "xray-p1"), _candidate(tmp_path, "xray-p4")
    _finished_job(c1)
    page = _admin_page()
    shipped = registry.production("xray").version
    registry.promote("xray", c4, SECOND_ADMIN, expected_production=shipped)
    next(b for b in page.button if b.label == "Promote to production").click().run()
    assert registry.production("xray").version == c4
    assert registry.get("xray", c1).status == "candidate"
    assert "since this page was drawn" in page.error[0].value


def test_a_discard_names_its_version(store, tmp_path):
    c1 = _candidate(tmp_path, "xray-d1")
    _finished_job(c1)
    page = _admin_page()
    c2 = _candidate(tmp_path, "xray-d2")
    _finished_job(c2)
    next(b for b in page.button if b.label == "Discard candidate").click().run()
    assert registry.get("xray", c1).status == "discarded" and registry.get("xray", c2).status == "candidate"


def test_a_click_after_the_session_ended_changes_nothing(store, tmp_path, monkeypatch):
    c1 = _candidate(tmp_path, "xray-e1")
    _finished_job(c1)
    page = _admin_page()
    shipped = registry.production("xray").version
    long_ago = time.time() - 13 * 3600  # idle, and open, far past the limits
    page.session_state["auth"] = {"name": "test-admin", "signed_in_at": long_ago, "last_seen": long_ago}
    next(b for b in page.button if b.label == "Promote to production").click().run()
    assert registry.production("xray").version == shipped
    assert page.button[0].label == "Sign in"


def test_registry_put_in_production_refuses_a_mismatch(store, tmp_path):
    c1 = _candidate(tmp_path, "xray-m1")
    with pytest.raises(registry.RegistryError, match="since this page was drawn"):
        registry.put_in_production("xray", c1, SECOND_ADMIN, expected_production="xray-something-else")
    assert registry.get("xray", c1).status == "candidate"


def test_a_click_right_after_changing_the_choice_acts_on_the_new_choice(store, tmp_path):
    """The choice and the click are submitted together: no window in which the button still carries the old one."""
    r1, r2 = _candidate(tmp_path, "xray-rv1"), _candidate(tmp_path, "xray-rv2")
    page = _admin_page()
    _choice(page).set_value(r1).run()
    _choice(page).set_value(r2)  # changed, and clicked before any redraw
    next(b for b in page.button if b.label == "Put in production").click().run()
    assert registry.production("xray").version == r2
