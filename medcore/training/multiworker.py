"""The X-ray recipe trained by several worker processes at once (TensorFlow's MultiWorkerMirroredStrategy).

    medcore train xray --data DIR --out DIR --workers 2      # workers on this machine (what the tests run)

On several machines, run the same `medcore train xray --data DIR --out DIR` on each, with TF_CONFIG naming every
worker and this one's index (worker 0 writes the model; the data folder must be at the same path everywhere):

    TF_CONFIG='{"cluster": {"worker": ["gpu-1:12345", "gpu-2:12345"]}, "task": {"type": "worker", "index": 0}}'

Every worker takes its share of each global batch; gradients are summed across workers, so the model is the one a
single process would train with the same global batch, up to the order of floating-point sums and the workers'
own augmentation draws. Only worker 0 reports progress and writes the model.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from medcore import config
from medcore.training.options import XrayTrainingOptions
from medcore.training.progress import ProgressFn


def _free_ports(n: int) -> list[int]:
    """Ports for the workers' own gRPC: TensorFlow needs them named before any worker starts (a short window in
    which another process could take one: the run then fails to start, it cannot be misled)."""
    sockets = [socket.socket() for _ in range(n)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def train_on_workers(data_dir: Path, out_dir: Path, options: XrayTrainingOptions, workers: int = 2,
                     progress: ProgressFn | None = None, timeout_s: float = 6 * 3600) -> dict:
    """Train with `workers` processes on this machine; worker 0's model lands in out_dir; return its metadata."""
    ports = _free_ports(workers)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="medcore-workers-"))
    processes = []
    for index in range(workers):
        env = {**config.child_environment(),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        out = out_dir if index == 0 else scratch / f"worker-{index}"
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "medcore.training.multiworker", "--data", str(data_dir), "--out", str(out),
             "--options", json.dumps(asdict(options))], env=env,
            stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL, stderr=open(scratch / f"{index}.log", "w"),
            text=True))
    try:
        for line in processes[0].stdout:  # worker 0's progress events, one JSON object a line
            if progress is not None and line.startswith("{"):
                progress(json.loads(line))
        for process in processes:
            process.wait(timeout=max(1.0, timeout_s - (time.time() - started)))
        failed = [i for i, p in enumerate(processes) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"Worker(s) {failed} failed: " + (scratch / f"{failed[0]}.log").read_text()[-3000:])
        return json.loads((Path(out_dir) / "meta.json").read_text())
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description="One worker of a multi-worker X-ray training (TF_CONFIG set).")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--options", default="{}")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from medcore.training import device

    device.training_strategy()  # first: the collective runtime must start before TensorFlow does anything else
    from medcore.training.train_xray import train_xray

    def report(event: dict) -> None:
        if device.is_chief():
            print(json.dumps(event, default=float), flush=True)

    train_xray(Path(args.data), Path(args.out), XrayTrainingOptions(**json.loads(args.options)), progress=report)


if __name__ == "__main__":
    main()
