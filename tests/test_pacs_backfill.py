"""`medcore pacs backfill` against a real Orthanc (issue 32): a date range analysed once, a stop halfway resumed with
no study repeated and none missed, a study another process holds left alone, bad dates refused with a clear message.
Needs Orthanc (eval $(.ci/orthanc start)) for all but the date checks. Films are small: the path is the watcher's."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest

from medcore import cli
from medcore.pacs import analysis, backfill
from medcore.pacs.demo import chest_study
from tests.synthetic import chest_like
from tests.test_pacs import needs_pacs, pacs  # noqa: F401  (the fixture)


def _days() -> tuple[datetime.date, datetime.date]:
    """Two consecutive past days of their own: other tests' studies (today's, or an earlier run's) are elsewhere."""
    first = datetime.date(1990, 1, 1) + datetime.timedelta(days=uuid.uuid4().int % 9000)
    return first, first + datetime.timedelta(days=1)


def _load(pacs, xray_model, days, per_day: int) -> list[str]:  # noqa: F811
    studies = [chest_study(chest_like(xray_model.artifact.quality_reference, 320, 320, seed=90 + i),
                           f"Backfill^{i}", f"BF-{i}", f"ACC-BF{i}", study_date=day)
               for day in days for i in range(per_day)]
    pacs.store(studies)
    return [s.StudyInstanceUID for s in studies]


def _objects(pacs, uids) -> list[int]:  # noqa: F811
    return [len(pacs.medcore_series(uid)) for uid in uids]


@needs_pacs
def test_a_range_is_analysed_once_and_a_second_run_finds_it_done(pacs, xray_model):  # noqa: F811
    first, last = _days()
    uids = _load(pacs, xray_model, (first, last), 2)
    rows = []
    done = backfill.backfill(pacs, xray_model, first, last, workers=2, progress=rows.append)
    assert (done.listed, done.analysed, done.errors, done.held, done.stopped) == (4, 4, 0, 0, False)
    assert [r["day"] for r in rows] == [first.isoformat(), last.isoformat()] and rows[-1]["analysed_total"] == 4
    assert all(analysis.record(uid, xray_model.version)["status"] == "done" for uid in uids)
    again = backfill.backfill(pacs, xray_model, first, last)
    assert (again.listed, again.already_done, again.analysed) == (4, 4, 0)
    assert _objects(pacs, uids) == [2, 2, 2, 2]  # one SR and one overlay each, never twice
    assert "Backfill^" not in json.dumps([done.as_dict(), again.as_dict()])  # no patient in the summary


@needs_pacs
def test_a_stop_halfway_resumes_with_nothing_repeated_or_missed(pacs, xray_model, monkeypatch):  # noqa: F811
    first, last = _days()
    uids = _load(pacs, xray_model, (first, last), 3)
    calls: list[str] = []
    real = analysis.analyse_study

    def counted(client, model, study_uid, **kwargs):
        calls.append(study_uid)
        return real(client, model, study_uid, **kwargs)

    monkeypatch.setattr(analysis, "analyse_study", counted)
    stopped = backfill.backfill(pacs, xray_model, first, last, workers=1, should_stop=lambda: len(calls) >= 2)
    assert stopped.stopped and stopped.analysed == 2 and stopped.held == 1  # the rest of the first day
    resumed = backfill.backfill(pacs, xray_model, first, last, workers=2)
    assert not resumed.stopped and (resumed.already_done, resumed.analysed, resumed.held) == (2, 4, 0)
    assert sorted(calls) == sorted(uids)  # each study analysed exactly once over the two runs
    assert _objects(pacs, uids) == [2] * 6
    assert {analysis.record(uid, xray_model.version)["status"] for uid in uids} == {"done"}


@needs_pacs
def test_a_study_another_process_holds_is_left_to_it_and_a_dead_claim_is_taken_over(pacs, xray_model):  # noqa: F811
    from medcore.store import schema, write

    first, _ = _days()
    held, dead, free = _load(pacs, xray_model, (first,), 3)
    assert analysis._claim(analysis.study_key(held), xray_model.version)  # a watcher working on it now
    assert analysis._claim(analysis.study_key(dead), xray_model.version)  # a backfill killed outright
    with write() as db:
        db.execute(schema.pacs_studies.update().where(schema.pacs_studies.c.study_key == analysis.study_key(dead))
                   .values(claimed_at=0.0))
    summary = backfill.backfill(pacs, xray_model, first, first)
    assert (summary.analysed, summary.skipped, summary.held) == (2, 1, 1)
    assert _objects(pacs, [held, dead, free]) == [0, 2, 2]


@needs_pacs
def test_the_command_prints_progress_on_stderr_and_a_json_summary_on_stdout(pacs, xray_model, capsys):  # noqa: F811
    first, last = _days()
    uids = _load(pacs, xray_model, (first,), 2)
    assert cli.main(["pacs", "backfill", "--from", first.isoformat(), "--to", last.isoformat()]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["listed"], summary["analysed"], summary["days"], summary["stopped"]) == (2, 2, 2, False)
    progress = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert [row["day"] for row in progress] == [first.isoformat(), last.isoformat()]
    assert not any(uid in captured.out + captured.err for uid in uids) and "Backfill^" not in captured.err
    assert _objects(pacs, uids) == [2, 2]


@pytest.mark.parametrize("first, last, message", [
    ("2024-02-30", "2024-03-01", "not a date"), ("01/03/2024", "2024-03-02", "YYYY-MM-DD"),
    ("2024-03-05", "2024-03-01", "is after --to"), ("2024-03-01", "2999-01-01", "in the future")])
def test_bad_dates_are_refused_with_a_clear_message(store, capsys, first, last, message):
    assert cli.main(["pacs", "backfill", "--from", first, "--to", last]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
