"""Studies per second from arrival in the PACS to MedCore's report stored, and the delay of a new study's result.

    eval "$(.ci/orthanc start)"
    python benchmarks/pacs.py [--studies 40] [--size 2000] [--arrivals 10]

Throughput: `--studies` one-film studies of SIZE x SIZE 12-bit films are stored in Orthanc, then one watcher pass
analyses them all (two at a time, as `medcore pacs watch` does) and writes an SR and an overlay back into each;
studies per second = studies / time from the pass's start to the last result stored (goal: >= 10 on 2 cores).
Delay: with the watcher running (polling every second), `--arrivals` studies arrive one at a time; each delay is
from the moment the PACS acknowledged the study to the moment MedCore's SR is found in it (goal: within 5 s).
Writes benchmarks/results/pacs.json with the stage times of the pass (fetch, analysis, report, store).
"""

from __future__ import annotations

import argparse
import json
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


def _settings() -> None:
    for key in ("URL", "USER", "PASSWORD"):
        value = os.environ.get(f"MEDCORE_TEST_PACS_{key}")
        if not value:
            raise SystemExit("Start a PACS first: eval \"$(.ci/orthanc start)\"")
        os.environ[f"MEDCORE_PACS_{key}"] = value
    os.environ.setdefault("MEDCORE_STORE_DIR", tempfile.mkdtemp(prefix="medcore-pacs-bench-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--arrivals", type=int, default=10)
    args = parser.parse_args()
    _settings()
    import datetime

    from medcore import registry
    from medcore.imaging.service import load_xray_model
    from medcore.pacs import analysis, watcher
    from medcore.pacs.client import PacsClient
    from medcore.pacs.demo import chest_study
    from tests.synthetic import chest_like

    registry.ensure_defaults()
    model = load_xray_model(registry.production("xray").path)
    client = PacsClient()
    reference = model.artifact.quality_reference
    stamp = time.strftime("%H%M%S")
    films = [chest_like(reference, args.size, args.size, seed=500 + i) for i in range(8)]
    studies = [chest_study(films[i % len(films)], f"Bench{stamp}^{i}", f"B{stamp}-{i}", f"B{stamp}{i:04d}")
               for i in range(args.studies)]
    for start in range(0, len(studies), 10):
        client.store(studies[start:start + 10])

    stages: dict[str, list[float]] = {"fetch": [], "analysis": [], "report": [], "store": []}
    originals = {"fetch": analysis.fetch, "analyse_dataset": analysis.analyse_dataset,
                 "result_objects": analysis.result_objects, "store": PacsClient.store}

    def timed(name, function):
        def run(*a, **k):
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                stages[name].append(time.perf_counter() - started)
        return run

    analysis.fetch = timed("fetch", originals["fetch"])
    analysis.analyse_dataset = timed("analysis", originals["analyse_dataset"])
    analysis.result_objects = timed("report", originals["result_objects"])
    PacsClient.store = timed("store", originals["store"])
    watcher.set_cursor(datetime.date.today())
    started = time.perf_counter()
    outcome = watcher.poll_once(client, model)
    pass_seconds = time.perf_counter() - started
    analysis.fetch, analysis.analyse_dataset = originals["fetch"], originals["analyse_dataset"]
    analysis.result_objects, PacsClient.store = originals["result_objects"], originals["store"]
    ours = [s for s in studies if analysis.record(s.StudyInstanceUID, model.version)]
    throughput = len(ours) / pass_seconds

    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, kwargs={"should_stop": stop.is_set, "poll_seconds": 1.0},
                              daemon=True)
    thread.start()
    delays = []
    for i in range(args.arrivals):
        study = chest_study(films[i % len(films)], f"Arrive{stamp}^{i}", f"A{stamp}-{i}", f"A{stamp}{i:04d}")
        client.store([study])
        arrived = time.perf_counter()
        while not client.medcore_series(study.StudyInstanceUID):
            if time.perf_counter() - arrived > 120:
                break
            time.sleep(0.1)
        delays.append(time.perf_counter() - arrived)
        time.sleep(1.0)
    stop.set()
    thread.join(timeout=30)

    def median_ms(values):
        return round(1000 * statistics.median(values), 1) if values else None

    results = {"command": "python " + " ".join(sys.argv), "film": f"{args.size} x {args.size}, 12-bit DX",
               "cpu_threads": os.cpu_count(), "studies": args.studies, "analysed": len(ours),
               "pass": outcome, "pass_seconds": round(pass_seconds, 2),
               "studies_per_second": round(throughput, 2),
               "stage_ms_median": {name: median_ms(values) for name, values in stages.items()},
               "arrival_to_result_s": {"n": len(delays), "median": round(statistics.median(delays), 2),
                                       "max": round(max(delays), 2), "all": [round(d, 2) for d in delays]}}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
