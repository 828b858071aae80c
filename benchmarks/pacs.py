"""The PACS path's speed (issue 32): per-stage costs, backlog throughput with 1 and 2 processes, arrival-to-result.

    eval "$(.ci/orthanc start)"
    python benchmarks/pacs.py [--studies 200] [--size 2000] [--stage-studies 10] [--processes 1 2] [--workers 2]
                              [--arrivals 30] [--interval 2] [--write-readme]

Films are SIZE x SIZE 12-bit DX studies (one film each) stored in a real Orthanc.
(a) Stages: `--stage-studies` studies, one at a time through analysis.analyse_study, each stage timed (median ms):
    fetch (QIDO for the film + WADO-RS + parse), decode (pixels from the dataset), reduce, synthetic-mark check,
    network + Grad-CAM, quality check, SR, overlay blend, Secondary Capture, STOW-RS, and the whole study.
(b) Backlog: `--studies` studies preloaded on a past day of their own; P processes (each having loaded the model,
    then started together) run the backfill over that day, `--workers` studies at a time each; studies per second =
    studies / time from the start to the last result stored.
(c) Arrivals: one watcher process (polling every second); a study arrives every `--interval` s; each delay is from
    the PACS acknowledging the study to MedCore's SR being found in it (p50, p95).
Writes benchmarks/results/pacs.json; --write-readme renders the PACS speed block (docs/deployment.md) from that file.

    python benchmarks/pacs.py --check-reduction [--data ../shared/data/chest_xray/external_sample]

checks that reducing the film changes no decision: every real film, as it is (224 px) and as a 2,000 px 12-bit DICOM
copy, analysed full size and reduced (-> benchmarks/results/pacs_reduction.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "pacs.json"
REDUCTION = ROOT / "benchmarks" / "results" / "pacs_reduction.json"
STAGES = ("fetch", "decode", "reduce", "synthetic_check", "network_gradcam", "quality", "sr", "overlay", "capture",
          "stow")


def _settings() -> None:
    for key in ("URL", "USER", "PASSWORD"):
        value = os.environ.get(f"MEDCORE_TEST_PACS_{key}")
        if not value:
            raise SystemExit("Start a PACS first: eval \"$(.ci/orthanc start)\"")
        os.environ[f"MEDCORE_PACS_{key}"] = value
    os.environ.setdefault("MEDCORE_STORE_DIR", tempfile.mkdtemp(prefix="medcore-pacs-bench-"))


def _model():
    from medcore import registry
    from medcore.imaging.service import load_xray_model

    registry.ensure_defaults()
    return load_xray_model(registry.production("xray").path)


def _films(model, size: int, count: int = 8) -> list:
    from tests.synthetic import chest_like

    return [chest_like(model.artifact.quality_reference, size, size, seed=500 + i) for i in range(count)]


def _load(client, films, n: int, day: datetime.date, tag: str) -> list[str]:
    from medcore.pacs.demo import chest_study

    studies = [chest_study(films[i % len(films)], f"Bench^{tag}{i}", f"{tag}-{i}", f"{tag}{i:05d}", study_date=day)
               for i in range(n)]
    for start in range(0, n, 10):
        client.store(studies[start:start + 10])
    return [s.StudyInstanceUID for s in studies]


def _bench_day(tag: str) -> datetime.date:
    """A past day of this run's own, outside the watcher's look-back: the backlog never mixes with other studies."""
    return datetime.date(2000, 1, 1) + datetime.timedelta(days=int(tag) % 7000)


def stage_costs(model, client, films, n: int) -> dict:
    """(a) Each stage of one study at a time, through the real path, timed by wrapping the functions it calls."""
    from medcore.imaging import io as imaging_io
    from medcore.imaging import quality
    from medcore.pacs import analysis, results
    from medcore.pacs.client import PacsClient

    stages: dict[str, list[float]] = {name: [] for name in (*STAGES, "study")}
    wrapped = [(analysis, "fetch", "fetch"), (imaging_io, "_radiograph_from_dataset", "decode"),
               (imaging_io, "reduce_film", "reduce"), (imaging_io, "is_marked", "synthetic_check"),
               (type(model), "predict_inputs", "network_gradcam"), (quality, "check", "quality"),
               (results, "structured_report", "sr"), (analysis, "overlay", "overlay"),
               (results, "overlay_capture", "capture"), (PacsClient, "store", "stow")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]

    def timed(stage, function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[stage].append(time.perf_counter() - started)
        return run

    uids = _load(client, films, n + 1, datetime.date.today() - datetime.timedelta(days=400), "S" + _tag())
    analysis.analyse_study(client, model, uids[0])  # warm: the first study pays for lazy imports
    for owner, name, stage in wrapped:
        setattr(owner, name, timed(stage, getattr(owner, name)))
    try:
        for uid in uids[1:]:
            started = time.perf_counter()
            analysis.analyse_study(client, model, uid)
            stages["study"].append(time.perf_counter() - started)
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
    return {"n": n, "median_ms": {name: _ms(values) for name, values in stages.items()}}


def _ms(values: list[float]) -> float | None:
    return round(1000 * statistics.median(values), 1) if values else None


def _tag() -> str:
    return time.strftime("%H%M%S")


def _backfill_worker(day: str, workers: int, ready, go, out) -> None:
    """One backfill process: load the model, say ready, wait for the start, run the day, report when it ended."""
    _quiet()
    from medcore.pacs import backfill
    from medcore.pacs.client import PacsClient

    model, client = _model(), PacsClient()
    ready.put(os.getpid())
    go.wait()
    cpu = time.process_time()
    summary = backfill.backfill(client, model, datetime.date.fromisoformat(day), datetime.date.fromisoformat(day),
                                workers=workers)
    out.put({"ended": time.time(), "analysed": summary.analysed, "skipped": summary.skipped,
             "errors": summary.errors, "held": summary.held, "cpu_s": time.process_time() - cpu})


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def backlog(model, client, films, n: int, processes: int, workers: int) -> dict:
    """(b) n studies preloaded on a day of their own, then `processes` backfills started together."""
    from medcore.pacs import analysis

    tag = _tag()
    day = _bench_day(f"{processes}{tag}")
    uids = _load(client, films, n, day, f"B{processes}x{tag}")
    context = multiprocessing.get_context("spawn")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    procs = [context.Process(target=_backfill_worker, args=(day.isoformat(), workers, ready, go, out))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    orthanc = _orthanc_cpu()
    started = time.time()
    go.set()
    reports = [out.get(timeout=3600) for _ in procs]
    orthanc = _orthanc_cpu() - orthanc if orthanc is not None else None
    for proc in procs:
        proc.join(timeout=60)
    seconds = max(r["ended"] for r in reports) - started
    records = [analysis.record(uid, model.version) or {} for uid in uids]
    analysed = sum(r["analysed"] for r in reports)
    return {"processes": processes, "workers_per_process": workers, "studies": n, "analysed": analysed,
            "repeats": analysed - len({uid for uid, r in zip(uids, records) if r.get("status")}),
            "not_done": sum(r.get("status") != "done" for r in records), "errors": sum(r["errors"] for r in reports),
            "seconds": round(seconds, 2), "studies_per_second": round(n / seconds, 2),
            **_cpu_figures([r["cpu_s"] for r in reports], orthanc, n)}


def _cpu_figures(workers_cpu: list[float], orthanc_cpu: float | None, n: int) -> dict:
    """CPU seconds per study (MedCore's processes, and Orthanc's when its pid is known): what other work on a shared
    machine does not change, and the studies per second two free cores would give."""
    figures = {"medcore_cpu_ms_per_study": round(1000 * sum(workers_cpu) / n, 1)}
    if orthanc_cpu is not None:
        total = (sum(workers_cpu) + orthanc_cpu) / n
        figures.update({"orthanc_cpu_ms_per_study": round(1000 * orthanc_cpu / n, 1),
                        "two_free_cores_studies_per_second": round(2 / total, 2)})
    return figures


def _orthanc_cpu() -> float | None:
    """Orthanc's CPU seconds so far (user + system), from .ci/orthanc's pid file; None when it is elsewhere."""
    try:
        pid = (Path(os.environ.get("MEDCORE_ORTHANC_STATE", "/tmp/medcore-orthanc")) / "pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _watch_worker(stop) -> None:
    _quiet()
    from medcore.pacs import watcher

    watcher.watch(should_stop=stop.is_set, poll_seconds=1.0)


def arrivals(model, client, films, count: int, interval: float) -> dict:
    """(c) A watcher process polling every second; a study arrives every `interval` s; delay to its SR stored.
    Whatever else is in the watcher's look-back is settled first, so that each delay is one arrival's own."""
    from medcore import config
    from medcore.pacs import backfill

    today = datetime.date.today()
    backfill.backfill(client, model, today - datetime.timedelta(days=config.pacs_lookback_days()), today)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    proc = context.Process(target=_watch_worker, args=(stop,))
    proc.start()
    warm = _load(client, films, 1, datetime.date.today(), "W" + _tag())[0]  # the watcher is up when this is done
    _wait_for_result(client, warm, 300)
    delays = []
    tag = _tag()
    for i in range(count):
        next_at = time.perf_counter() + interval
        uid = _load(client, films, 1, datetime.date.today(), f"A{tag}x{i}")[0]
        arrived = time.perf_counter()
        delays.append(_wait_for_result(client, uid, 60) - arrived)
        time.sleep(max(0.0, next_at - time.perf_counter()))
    stop.set()
    proc.join(timeout=60)
    ordered = sorted(delays)
    return {"n": count, "interval_s": interval, "watcher_poll_s": 1.0, "p50_s": round(statistics.median(delays), 2),
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_s": round(max(delays), 2), "all": [round(d, 2) for d in delays]}


def _wait_for_result(client, uid: str, limit: float) -> float:
    started = time.perf_counter()
    while not client.medcore_series(uid) and time.perf_counter() - started < limit:
        time.sleep(0.05)
    return time.perf_counter()


def check_reduction(model, data_dir: Path) -> dict:
    """Full-size and reduced analyses of every film of a labelled folder, and of its 2,000 px DICOM copy."""
    import io

    import pydicom

    from medcore.imaging.folders import list_image_folder
    from medcore.imaging.io import read_radiograph
    from medcore.imaging.service import analyse_dicom, analyse_file
    from tests.test_film_reduction import upscaled_dicom

    rows = {"as_is": [], "upscaled_2000": []}
    for path in list_image_folder(data_dir).files:
        data = path.read_bytes()
        rows["as_is"].append((analyse_file(model, data, path.name, max_side=None),
                              analyse_file(model, data, path.name)))
        dicom = upscaled_dicom(read_radiograph(data, path.name).pixels)
        rows["upscaled_2000"].append((analyse_file(model, dicom, "film.dcm", max_side=None),
                                      analyse_dicom(model, pydicom.dcmread(io.BytesIO(dicom)), "film.dcm")))

    def summary(pairs) -> dict:
        scored = [abs(a.probability - b.probability) for a, b in pairs
                  if a.probability is not None and b.probability is not None]
        return {"films": len(pairs), "same_decision": sum(a.decision == b.decision for a, b in pairs),
                "same_refusal": sum(a.refusal_reasons == b.refusal_reasons and (a.error is None) == (b.error is None)
                                    for a, b in pairs),
                "refused_full": sum(a.error is not None for a, _ in pairs),
                "max_abs_probability_difference": round(max(scored), 5) if scored else None,
                "median_abs_probability_difference": round(statistics.median(scored), 5) if scored else None}

    return {"data": str(data_dir), "model_version": model.version, **{k: summary(v) for k, v in rows.items()}}


def readme_block(results: dict) -> str:
    """The PACS speed block (docs/deployment.md), rendered from the result file (tests/test_figures.py checks it)."""
    stages = results["stages"]["median_ms"]
    names = {"fetch": "fetch (QIDO for the film, WADO-RS, parse)", "decode": "decode the pixels",
             "reduce": "reduce to 1,024 px (area average)", "synthetic_check": "synthetic-mark check",
             "network_gradcam": "network + Grad-CAM (128 px)", "quality": "quality check",
             "sr": "SR (TID 1500, signed)", "overlay": "Grad-CAM overlay (blend)",
             "capture": "overlay as a Secondary Capture",
             "stow": "STOW-RS (SR + overlay)", "study": "whole study, one at a time"}
    lines = ["<!-- pacs-speed:start -->", f"Per-stage cost of one {results['film']} study, one at a time (median of "
             f"{results['stages']['n']}, ms):", "", "| stage | ms |", "|---|---|"]
    lines += [f"| {names[name]} | {value} |" for name, value in stages.items()]
    lines += ["", "| backlog | studies | seconds | studies per second | repeats | CPU ms per study: MedCore + "
              "Orthanc | studies per second that 2 free cores give |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {b['processes']} process{'es' if b['processes'] > 1 else ''} x {b['workers_per_process']} "
              f"at a time | {b['studies']} | {b['seconds']} | **{b['studies_per_second']}** | {b['repeats']} | "
              f"{b.get('medcore_cpu_ms_per_study', '–')} + {b.get('orthanc_cpu_ms_per_study', '–')} | "
              f"{b.get('two_free_cores_studies_per_second', '–')} |" for b in results["backlog"]]
    a = results["arrivals"]
    lines += ["", f"Arrival to result stored, a study every {a['interval_s']} s, one watcher polling every "
              f"{a['watcher_poll_s']} s: median {a['p50_s']} s, 95th percentile **{a['p95_s']} s**, at most "
              f"{a['max_s']} s (n = {a['n']}). {results['cpu_threads']} CPU threads, Orthanc on the same machine.",
              "<!-- pacs-speed:end -->"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--stage-studies", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arrivals", type=int, default=30)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--write-readme", action="store_true", help="only render the README block from the file")
    parser.add_argument("--check-reduction", action="store_true", help="only check full vs reduced decisions")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results (a rerun beside them)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "chest_xray" / "external_sample")
    args = parser.parse_args()
    if args.write_readme:
        from readme_blocks import replace_block

        replace_block(readme_block(json.loads(RESULTS.read_text())))
        return
    if args.check_reduction:
        os.environ.setdefault("MEDCORE_STORE_DIR", tempfile.mkdtemp(prefix="medcore-pacs-bench-"))
        checked = check_reduction(_model(), args.data)
        REDUCTION.write_text(json.dumps(checked, indent=2) + "\n")
        print(json.dumps(checked, indent=2))
        return
    _settings()
    _quiet()
    from medcore.pacs.client import PacsClient

    model, client = _model(), PacsClient()
    films = _films(model, args.size)
    results = {"command": "python " + " ".join(sys.argv), "film": f"{args.size} x {args.size}, 12-bit DX",
               "cpu_threads": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    results["stages"] = stage_costs(model, client, films, args.stage_studies)
    print(json.dumps(results["stages"]), file=sys.stderr, flush=True)
    results["backlog"] = []
    for processes in args.processes:
        results["backlog"].append(backlog(model, client, films, args.studies, processes, args.workers))
        print(json.dumps(results["backlog"][-1]), file=sys.stderr, flush=True)
    results["arrivals"] = arrivals(model, client, films, args.arrivals, args.interval)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
