"""Published figures come from result files, and a test says when prose is stale (issue 26).

Each table that a script writes into README.md is compared with what the script renders from its result file, and
where the figures can be recomputed cheaply (the hostile-input corpus), with what the code gives today.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import hostile_inputs  # noqa: E402
from readme_blocks import documentation  # noqa: E402  (README.md and docs/*.md)


def test_the_readme_hostile_input_table_is_the_one_its_result_file_renders():
    results = json.loads(hostile_inputs.RESULTS.read_text())
    assert hostile_inputs.readme_block(results) in documentation()


@pytest.fixture(scope="module")
def published():
    return {(r["group"], r["case"]): r["outcome"] for r in json.loads(hostile_inputs.RESULTS.read_text())["rows"]}


def test_the_corpus_still_gives_the_published_outcomes(xray_model, notes_models, published):
    """A model, a message or a case that changed without the table being regenerated fails here."""
    rows = (hostile_inputs.image_rows(xray_model) + hostile_inputs.note_rows(notes_models["symptom2disease"])
            + hostile_inputs.federated_rows(xray_model) + hostile_inputs.model_rows(xray_model))
    now = {(r["group"], r["case"]): r["outcome"] for r in rows}
    stale = {case: (published.get(case), outcome) for case, outcome in now.items() if published.get(case) != outcome}
    assert not stale, f"README's hostile-input table is stale; run python benchmarks/hostile_inputs.py " \
                      f"--write-readme: {stale}"
    assert set(published) - set(now) <= {("PDF", "note with a 5,000-character word")}


# Tables written by hand from a result file: every figure in a row must be a rendering of a value of the matching
# result (as it is, in per cent, in minutes from seconds or in MB from bytes, at the rounding shown). A stale
# figure (a model replaced, a benchmark rerun) fails here; the row's label column is not checked.

def _renderings(value) -> set[str]:
    found: set[str] = set()
    if isinstance(value, bool):
        return found
    if isinstance(value, (int, float)):
        for scaled in (value, 100 * value, value / 60, value / 1e6):
            for digits in range(4):
                text = f"{scaled:.{digits}f}"
                found |= {text, text.lstrip("-"), f"{scaled:+.{digits}f}"}
                if digits == 0 and abs(scaled) >= 1000:
                    found.add(f"{scaled:,.0f}")
    elif isinstance(value, dict):
        for item in value.values():
            found |= _renderings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= _renderings(item)
    return found


def _table_after(header: str, after: str = "") -> list[list[str]]:
    """The rows of the first table with `header` (after the text `after`, where two tables share a header)."""
    text = documentation()
    lines = [line.strip() for line in text[text.index(after):].splitlines()]  # a table in a list: indented
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and header in line)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _figures(cells: list[str]) -> list[str]:
    import re

    ranges = (re.sub(r"(\d)-(\d)", r"\1 \2", cell) for cell in cells[1:])  # "0.938-0.979" is two figures
    return [number for cell in ranges for number in re.findall(r"[+-]?\d[\d,]*(?:\.\d+)?", cell)]


def _assert_rows_come_from(rows: list[list[str]], results: list) -> None:
    assert len(rows) == len(results), (len(rows), len(results))
    for cells, result in zip(rows, results):
        allowed = _renderings(result)
        stale = [figure for figure in _figures(cells) if figure not in allowed]
        assert not stale, (cells[0], stale)


def test_the_readme_federated_table_is_its_result_file():
    import federated_xray

    results = json.loads(federated_xray.RESULTS.read_text())
    assert federated_xray.readme_block(results) in documentation()
    _assert_rows_come_from(_table_after("AUC − central"), [row for _, row in federated_xray.ordered_rows(results)])
    assert len(_table_after("AUC − central")) == len(results["rows"]) >= 7  # central, 3 hospitals, 3 federated


def test_the_stored_federated_card_is_the_one_its_generator_writes():
    """The FedAvg card beside the results: its run's command and version, and a row for every round (issue 26)."""
    import federated_xray

    results = json.loads(federated_xray.RESULTS.read_text())
    card = (federated_xray.RESULTS.parent / "federated_model_card.md").read_text()
    assert f"`{results['command']}`" in card
    fedavg = results["rows"]["federated fedavg"]
    assert f"`{fedavg['version']}`" in card.splitlines()[0]
    history = card.split("## Per-round history", 1)[1].split("\n## ", 1)[0]
    rounds = [line for line in history.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rounds) >= results["rounds"], history


def test_the_readme_prediction_set_holdout_table_is_its_result_file():
    import notes_conformal_holdout

    results = json.loads((ROOT / "benchmarks" / "results" / "notes_conformal_holdout.json").read_text())
    assert notes_conformal_holdout.readme_block(results) in documentation()
    shipped = json.loads((ROOT / "assets" / "models" / "notes_medical_abstracts" / "meta.json").read_text())
    assert results["tasks"]["medical_abstracts"]["rows"]["level by the rule"]["level"] == shipped["conformal"]["level"]


def test_the_readme_prediction_set_table_is_its_result_file():
    import notes_conformal

    results = json.loads((ROOT / "benchmarks" / "results" / "notes_conformal.json").read_text())
    assert notes_conformal.readme_block(results) in documentation()
    _assert_rows_come_from(_table_after("mean set size (goal)"), [
        {**results[task], "goal": results[task]["set_size_goal"]} for task in ("medical_abstracts", "symptom2disease")])


@pytest.mark.parametrize("task", ["medical_abstracts", "symptom2disease"])
def test_the_note_cards_prediction_sets_are_the_benchmarks(task):
    """The card's held-out check and the benchmark split the same notes the same way (the model's seed): one
    measurement, not two that disagree (they once said coverage 90.2 % and 90.9 % of the same model)."""
    results = json.loads((ROOT / "benchmarks" / "results" / "notes_conformal.json").read_text())[task]
    meta = json.loads((ROOT / "assets" / "models" / f"notes_{task}" / "meta.json").read_text())
    check = meta["conformal"]["held_out_check"]
    assert results["model_version"] == meta["version"]
    assert (results["coverage"], results["mean_set_size"], results["sets_one_class"], results["per_class"]) == (
        check["coverage"], check["mean_set_size"], check["singletons"], check["coverage_per_class"])


@pytest.mark.parametrize("name", ["xray", "notes_medical_abstracts", "notes_symptom2disease"])
def test_each_shipped_model_card_is_what_its_generator_writes_from_its_metadata(name):
    """A card edited by hand, or metadata changed without the card (a figure rerun, a lockbox record), fails here."""
    from medcore.model_card import notes_model_card, xray_model_card

    folder = ROOT / "assets" / "models" / name
    meta = json.loads((folder / "meta.json").read_text())
    generator = xray_model_card if name == "xray" else notes_model_card
    assert (folder / "model_card.md").read_text() == generator(meta)


def test_the_readme_shipped_xray_row_is_the_models_metadata():
    meta = json.loads((ROOT / "assets" / "models" / "xray" / "meta.json").read_text())
    shipped = [row for row in _table_after("| | AUC | accuracy |") if row[0].startswith("**shipped")]
    figures = meta["external"]["figures"]
    assert len(shipped) == 1 and f"({figures['n']} films, scored once)" in shipped[0][0]
    assert shipped[0][1:] == [f"{figures[k]:.3f} ({figures['intervals'][k][0]:.3f}-{figures['intervals'][k][1]:.3f})"
                              for k in ("auc", "accuracy", "sensitivity", "specificity", "ece")]  # column by column


def test_the_readme_concurrency_table_is_the_one_its_result_files_render():
    import concurrency

    assert concurrency.readme_block() in documentation()


def test_the_readme_xray_release_table_is_the_one_its_result_files_render():
    """Issue 24: the ensemble, the students, each adaptation and each rule, from meta.json and the result files."""
    import xray_release_table

    assert xray_release_table.readme_block() in documentation()
    rendered = xray_release_table.cells_and_sources()
    assert len(rendered) >= 20 and any(cells[0].startswith("release 1 experiment: distilled student") for cells, _ in rendered)
    assert rendered[0][0][0].startswith("release 2: one network, consistent teacher (shipped")
    for cells, figures in rendered:  # each cell is its file's figure with its interval, at the rounding shown
        assert cells[3].startswith(f"{figures['auc']:.3f}") and cells[5].startswith(f"{figures['specificity']:.3f}")


def test_the_readme_drift_power_table_is_its_result_file():
    import drift_power

    assert drift_power.readme_block() in documentation()


def test_the_readme_later_two_server_runs_are_their_result_files():
    """Issue 22: the prose on the three later two-server runs states what their files hold."""
    readme = documentation()
    runs = [json.loads((ROOT / "benchmarks" / "results" / f"concurrency_servers_2_run{i}.json").read_text())
            for i in (3, 4, 5)]
    assert all(run["errors"] == [] and run["cross_talk"] == [] and run["servers"] == 2 for run in runs)
    medians = [f"{run['actions']['X-ray study (upload to Grad-CAM)']['p50_s']:.1f}" for run in runs]
    server = [f"{run['server_ms_per_study']['p50'] / 1000:.1f}" for run in runs]
    assert f"medians {', '.join(medians[:2])} and {medians[2]} s" in readme
    assert f"server time per study {', '.join(server[:2])} and {server[2]} s" in readme


def test_the_benchmarks_readme_speed_sentence_is_its_result_file():
    """Issue 24: the ensemble against the distilled student, as benchmarks/README.md states it."""
    import re

    text = " ".join((ROOT / "benchmarks" / "README.md").read_text().split())
    models = json.loads((ROOT / "benchmarks" / "results" / "bench_xray_ensemble_vs_student.json").read_text())["models"]
    ensemble, student = models.values()
    densenet = ensemble["densenet121_predict_ms"]
    expected = (f"{ensemble['network_gradcam_ms']:.2f} ms against {student['network_gradcam_ms']:.2f} ms per study "
                f"({ensemble['network_gradcam_ms'] / densenet:.3f} and {student['network_gradcam_ms'] / densenet:.3f} "
                f"x DenseNet121's {densenet:.2f} ms")
    assert expected in text, expected
    assert re.search(rf"{ensemble['batch_images_per_s']:.0f} against {student['batch_images_per_s']:.0f} images/s", text)


def test_the_readme_heavier_two_server_runs_are_their_result_files():
    readme = " ".join(documentation().split())
    for sessions in (30, 40):
        run = json.loads((ROOT / "benchmarks" / "results" / f"concurrency_servers_2_sessions_{sessions}.json")
                         .read_text())
        assert run["sessions"] == sessions and run["errors"] == [] and run["cross_talk"] == []
        median = run["actions"]["X-ray study (upload to Grad-CAM)"]["p50_s"]
        assert f"{sessions} sessions (`concurrency_servers_2_sessions_{sessions}.json`, " in readme
        assert f"{median:.1f} s)" in readme


def test_the_readme_synthetic_mark_table_is_its_result_file():
    """Issue 32: the block is what its result file renders; every change people make to an image is there, each
    detected on every film of both sources, and no real film of the shared data is refused."""
    import synthetic_marks

    assert synthetic_marks.readme_block() in documentation()
    results = json.loads((ROOT / "benchmarks" / "results" / "synthetic_marks.json").read_text())
    for cases in results["synthetic"].values():
        for name in ("JPEG quality 70", "DICOM, 16-bit", "cropped 20 % off the top and left", "turned 3 degrees",
                     "turned -3 degrees", "corner painted over"):
            assert cases[name]["detected"] == cases[name]["films"] >= 200, name
    real = results["real"]
    assert real["train"]["films"] == 5232 and real["external_sample"]["films"] == 312
    assert real["train"]["refused"] == real["external_sample"]["refused"] == 0

def test_the_readme_gan_usefulness_table_is_its_result_file():
    """Mean ± SD over seeds, each cell its own column's figure (a swap of columns fails, not only a stale figure)."""
    summary = json.loads((ROOT / "benchmarks" / "results" / "gan_usefulness.json").read_text())["summary"]
    table = _table_after("| training films | AUC |")
    keys = ["real films", "real + synthetic", "paired difference (synthetic - real)"]
    assert len(table) == len(keys)
    for key, cells in zip(keys, table):
        sign = "+" if key.startswith("paired") else ""
        expected = [f"{summary[key][m]['mean']:{sign}.3f} ± {summary[key][m]['sd']:.3f}"
                    for m in ("auc", "sensitivity", "specificity", "ece")]
        assert cells[1:] == expected, (cells, expected)


def test_the_readme_federated_prose_is_its_result_files():
    """Issue 26: the sentences under the federated table quote this run and the run before the zoom recipe."""
    results = json.loads((ROOT / "benchmarks" / "results" / "federated_xray.json").read_text())["rows"]
    before = json.loads((ROOT / "benchmarks" / "results" / "federated_xray_before_zoom.json").read_text())["rows"]
    text = " ".join(documentation().split())
    central, fedavg, fedprox = (results[k] for k in ("central (pooled films)", "federated fedavg", "federated fedprox"))
    alone = {k: v for k, v in results.items() if k.endswith(" alone")}
    best = max(alone, key=lambda k: alone[k]["auc"])
    assert f"({best}: AUC {alone[best]['auc']:.3f}, against {fedavg['auc']:.3f} and {fedprox['auc']:.3f})" in text
    assert best == "hospital_b alone"  # "not the balanced one"
    assert max(fedavg["auc"], fedprox["auc"]) < alone[best]["auc"]
    assert sum(fedavg["auc"] > row["auc"] for row in alone.values()) == 2  # "beat two of the three"
    for row in (fedavg, fedprox):  # "below central by about 0.03 AUC, with paired intervals that exclude zero"
        assert f"{row['auc_vs_central']['difference']:.2f}" == "-0.03" and row["auc_vs_central"]["interval"][1] < 0
    assert f"({before['federated fedavg']['auc']:.3f} against {before['central (pooled films)']['auc']:.3f})" in text
    assert abs(before["federated fedavg"]["auc_vs_central"]["difference"]) < 0.01
    assert f"to {central['auc']:.3f} and federated training hardly at all" in text
    assert f"({central['ece']:.3f} for central, {fedavg['ece']:.3f} for FedAvg)" in text
    private = next(row for row in results.values() if row.get("privacy"))
    aucs = private["validation_auc_per_round"]
    assert f"between {min(aucs):.2f} and {max(aucs):.2f} in every round" in text
    assert private["sites_used_per_round"] == [3, 3, 3] + [0] * 7  # "from round 4 on every site's update was dropped"


def test_the_readme_earlier_recipes_table_is_the_shipped_models_ideas_record():
    """Each row is one comparison in release 1's meta.json["ideas"] (the external sample, before the lockbox)."""
    release_1 = ROOT / "assets" / "models" / "earlier" / "xray" / "xray-20261126-203636-176f"
    ideas = json.loads((release_1 / "meta.json").read_text())["ideas"]["rows"]
    sources = {"previous ensemble": ("previous shipped model", "threshold on their union"),
               "zoom in up to 30 %": ("ensemble of 3 (shipped)", "threshold on their union"),
               "shipped weights": ("ensemble of 3 (shipped)", "threshold held on each")}
    table = _table_after("| | AUC | accuracy |", after="How earlier recipes compared on those 312 films:")
    assert [row[0].split(" (")[0].split(",")[0] for row in table] == list(sources)  # no row without a source
    for cells, (start, phrase) in zip(table, sources.values()):
        found = [r for r in ideas if r["idea"].startswith(start) and phrase in r["idea"]]
        assert len(found) == 1, (start, phrase)
        figures = found[0]["external"]
        expected = [f"{figures[k]:.3f} ({figures['intervals'][k][0]:.3f}-{figures['intervals'][k][1]:.3f})"
                    for k in ("auc", "accuracy", "sensitivity", "specificity", "ece")]
        assert cells[1:] == expected, (cells[0], cells[1:], expected)


def test_the_readme_note_architecture_figures_are_their_result_files():
    """Macro-F1 mean ± SD over the folds for each architecture, as the prose under "Case notes" quotes them."""
    text = " ".join(documentation().split())
    names = {"linear": "linear", "mlp": "MLP", "transformer": "Transformer", "bigru": "BiGRU"}
    for task in ("symptom2disease", "medical_abstracts"):
        rows = json.loads((ROOT / "benchmarks" / "results" / f"notes_architectures_{task}.json").read_text())["rows"]
        quoted = ", ".join(f"{names[key]} {rows[key]['macro_f1']['mean']:.3f} ± {rows[key]['macro_f1']['sd']:.3f}"
                           for key in sorted(names, key=lambda k: -rows[k]["macro_f1"]["mean"]))
        assert f"{task}: {quoted}" in text or f"{task}, macro-F1 mean ± SD over folds: {quoted}" in text, quoted


def test_the_readme_local_validation_prose_is_its_result_files():
    """Issue 34: the local-recalibration figures in the prose are the files' medians, for both releases."""
    readme = " ".join(documentation().split())
    results = ROOT / "benchmarks" / "results"
    shipped = json.loads((results / "local_calibration.json").read_text())
    assert shipped["model_version"] == json.loads((ROOT / "assets" / "models" / "xray" / "meta.json").read_text())[
        "version"]
    before, after = shipped["before"], shipped["after"]
    moves = ", ".join(f"{name} {before[key]['median']:.3f} -> {after[key]['median']:.3f}" for key, name in
                      (("accuracy", "accuracy"), ("sensitivity", "sensitivity")))
    assert f"moves {moves}, specificity {before['specificity']['median']:.3f} -> " in readme
    assert f"and ECE {before['ece']['median']:.3f} -> {after['ece']['median']:.3f}, with AUC" in readme
    assert f"is {shipped['ece_floor']['median']:.3f} (a perfectly calibrated" in readme
    assert f"{round(shipped['after_targets_met'] * shipped['repeats'])} of {shipped['repeats']} splits met" in readme
    earlier = json.loads((results / "local_calibration_release1.json").read_text())
    b, a = earlier["before"], earlier["after"]
    assert (f"accuracy {b['accuracy']['median']:.3f} -> {a['accuracy']['median']:.3f}, specificity "
            f"{b['specificity']['median']:.3f} -> {a['specificity']['median']:.3f}, ECE {b['ece']['median']:.3f} -> "
            f"{a['ece']['median']:.3f}") in readme


def test_the_readme_release_2_adaptation_figures_are_its_result_file():
    readme = " ".join(documentation().split())
    adaptation = json.loads((ROOT / "benchmarks" / "results" / "xray_adaptation.json").read_text())
    reporting = adaptation["reporting_part_once"]["rows"]
    both, plain = reporting["AdaBN + prevalence"], reporting["production as it is"]
    choosing = adaptation["whole_choosing_part"]["AdaBN + prevalence"]
    assert (f"keeps the reporting part's sensitivity {both['sensitivity']:.3f} and specificity "
            f"{both['specificity']:.3f} (ECE {plain['ece']:.3f} -> {both['ece']:.3f})") in readme
    assert (f"specificity {choosing['specificity']:.3f} at sensitivity {choosing['sensitivity']:.3f}") in readme
    assert both["specificity"] == plain["specificity"] >= 0.88


def test_the_pacs_speed_block_is_the_one_its_result_file_renders():
    """The PACS figures (issue 32) are written from benchmarks/results/pacs.json by `benchmarks/pacs.py --write-readme`."""
    import pacs

    assert pacs.readme_block(json.loads(pacs.RESULTS.read_text())) in documentation()


def test_the_benchmarks_readme_release_2_speed_is_its_result_file():
    """Issue 32: real films end to end, median and 90th percentile, as ratios to DenseNet121, from the file."""
    text = " ".join((ROOT / "benchmarks" / "README.md").read_text().split())
    models = json.loads((ROOT / "benchmarks" / "results" / "bench_xray_release2.json").read_text())["models"]
    release_1, release_2 = models["xray-20261126-203636-176f"], models["xray-20261207-105743-7f8f"]
    assert release_2["real_films"] == 312
    assert (f"takes a median {release_2['real_study_median_ms']:.2f} ms and a 90th percentile "
            f"{release_2['real_study_p90_ms']:.2f} ms, {release_2['real_study_median_vs_densenet121_ratio']:.3f} and "
            f"{release_2['real_study_p90_vs_densenet121_ratio']:.3f} x DenseNet121's "
            f"{release_2['densenet121_predict_ms']:.2f} ms") in text
    assert (f"release 1: {release_1['real_study_median_vs_densenet121_ratio']:.3f} and "
            f"{release_1['real_study_p90_vs_densenet121_ratio']:.3f})") in text
    assert f"{release_2['real_batch_images_per_s']:.0f} images/s for real films end to end" in text
