"""The Flower server of a federated X-ray run: aggregates weights (FedAvg or FedProx), records every round.

    python -m medcore.federated.server --credentials KEYS --rounds 10 --strategy fedavg --out DIR

It binds a free port on 127.0.0.1 with TLS first and only then announces it (DIR/port), so there is no window in
which another process could take the port. Only clients that prove an expected site's key join
(medcore.federated.credentials), one connection per site; every update is checked (medcore.federated.validation)
and an invalid one is dropped from its round, with the reason in the round's row of progress.jsonl.

Rounds 1..N train (fit) and then score the global model on each site's validation films (binned logits:
pooled AUC and, after the last round, calibration). Two more rounds train nothing: round N+1 gathers the
sufficient statistics of the quality gate's reference, round N+2 the binned quality scores that set its
thresholds. Writes to DIR: `progress.jsonl` (one line per round and stage), `weights.npz` (the latest global
weights), `calibration.npz` (pooled validation-logit counts) and `quality.npz`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from medcore.federated import credentials, validation, wire  # noqa: E402
from medcore.federated.client import QUALITY_KEYS  # noqa: E402
from medcore.imaging import quality  # noqa: E402

STRATEGIES = ("fedavg", "fedprox")
QUALITY_MARGIN = 1.25  # as central training: each threshold = margin x the 99.5th percentile on validation


def _nbytes(parameters) -> int:
    return int(sum(len(t) for t in parameters.tensors))


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def make_site_manager(public_keys: dict, record: Callable[[dict], None], timeout_s: float = 120.0):
    """A Flower client manager that offers the strategy only clients which proved an expected site's key."""
    from flwr.common import GetPropertiesIns
    from flwr.server.client_manager import SimpleClientManager

    class AuthenticatedSites(SimpleClientManager):
        def __init__(self) -> None:
            super().__init__()
            self.site_of: dict[str, str] = {}  # Flower's connection id -> the site it proved to be
            self._joining = threading.Lock()

        def register(self, client) -> bool:
            # Called on the connection's own thread before its message loop runs: the challenge must wait for it.
            threading.Thread(target=self._authenticate, args=(client,), daemon=True).start()
            return True

        def _authenticate(self, client) -> None:
            challenge = credentials.new_challenge()
            try:
                answer = client.get_properties(GetPropertiesIns({"challenge": challenge}), timeout=timeout_s,
                                               group_id=None).properties
            except Exception as exc:  # noqa: BLE001 - a client that cannot answer is refused, the run goes on
                site, reason = None, f"no answer to the join challenge ({type(exc).__name__})"
            else:
                site = answer.get("site")
                reason = credentials.verify_answer(public_keys, challenge, site, answer.get("signature"))
            with self._joining:
                if reason is None and site in self.site_of.values():
                    reason = f"{site} is already connected"
                if reason is None:
                    self.site_of[client.cid] = site
                    SimpleClientManager.register(self, client)
                    record({"kind": "joined", "site": site})
                    return
            record({"kind": "refused", "reason": reason})
            client.bridge.close()  # ends the connection: nothing is ever sent to it

        def unregister(self, client) -> None:
            with self._joining:
                self.site_of.pop(client.cid, None)
            super().unregister(client)

    return AuthenticatedSites()


def make_strategy(name: str, rounds: int, sites, out: Path, expected: validation.Expected, local_epochs: int = 1,
                  proximal_mu: float = 0.01, noise_multiplier: float = 0.0, clipping_norm: float = 1.0,
                  variance_indices: tuple[int, ...] = ()):
    """A FedAvg or FedProx strategy that also runs the statistics rounds and writes what it learns to `out`;
    with noise_multiplier > 0, wrapped in Flower's server-side fixed-clipping differential privacy.

    sites: the client manager (whose `site_of` names each authenticated connection); expected: what every update
    is checked against. A site's update that fails a check is left out of that round's aggregate.
    """
    import flwr
    from flwr.common import EvaluateIns, ndarrays_to_parameters, parameters_to_ndarrays
    from sklearn.metrics import roc_auc_score

    base = {"fedavg": flwr.server.strategy.FedAvg, "fedprox": flwr.server.strategy.FedProx}[name]
    extra = {"proximal_mu": proximal_mu} if name == "fedprox" else {}
    progress = out / "progress.jsonl"
    n_sites = len(expected.declared_films)

    def arrays_of(parameters) -> tuple[list[np.ndarray] | None, str | None]:
        try:
            return parameters_to_ndarrays(parameters), None
        except Exception:  # noqa: BLE001 - undecodable tensors are the sender's fault
            return None, "the weights cannot be decoded"

    class RecordingStrategy(base):
        started = time.time()
        reference: dict[str, np.ndarray] = {}
        dropped: dict[int, dict[str, str]] = {}

        def site(self, client) -> str:
            return sites.site_of.get(client.cid, "unknown")

        def valid_fit_results(self, server_round, results):
            """The round's usable updates; each dropped one is remembered with its reason for the round's row."""
            kept = []
            for client, fit in results:
                arrays, problem = arrays_of(fit.parameters)
                problem = problem or validation.check_fit(self.site(client), arrays, fit.num_examples, fit.metrics,
                                                          expected)
                if problem:
                    self.dropped.setdefault(server_round, {})[self.site(client)] = problem
                else:
                    kept.append((client, fit))
            return kept

        def configure_fit(self, server_round, parameters, client_manager):
            if server_round > rounds:  # the statistics rounds train nothing
                return []
            self.sent = parameters_to_ndarrays(parameters)
            return super().configure_fit(server_round, parameters, client_manager)

        def _update_norm(self, parameters) -> float:
            """How far a site moved the weights this round: what a privacy clipping norm must be set against."""
            return float(np.sqrt(sum(np.sum((new - old) ** 2) for new, old in
                                     zip(parameters_to_ndarrays(parameters), self.sent))))

        def aggregate_fit(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"Round {server_round}: {len(failures)} site(s) failed to train; run stopped.")
            results = self.valid_fit_results(server_round, results)
            if results:
                parameters, metrics = super().aggregate_fit(server_round, results, failures)
                if not all(np.isfinite(w).all() for w in parameters_to_ndarrays(parameters)):
                    self.dropped.setdefault(server_round, {})["aggregate"] = "not finite: the round is skipped"
                    parameters, metrics = ndarrays_to_parameters(self.sent), {}
            else:  # every update was dropped: the global model stays as it was
                parameters, metrics = ndarrays_to_parameters(self.sent), {}
            _append(progress, {"round": server_round, "kind": "fit", "seconds": round(time.time() - self.started, 1),
                               "sites": {self.site(c): {"loss": r.metrics["loss"], "n": r.num_examples,
                                                        "update_norm": self._update_norm(r.parameters)}
                                         for c, r in results},
                               "dropped": self.dropped.get(server_round, {}),
                               "bytes_up": sum(_nbytes(r.parameters) for _, r in results),
                               "bytes_down": _nbytes(parameters) * n_sites})
            return parameters, metrics

        def configure_evaluate(self, server_round, parameters, client_manager):
            if server_round <= rounds:  # the global weights after this round (after the privacy noise, if any)
                np.savez(out / "weights.tmp.npz", *parameters_to_ndarrays(parameters))
                os.replace(out / "weights.tmp.npz", out / "weights.npz")
            stage = "validation" if server_round <= rounds else "moments" if server_round == rounds + 1 else "scores"
            # After the last round, sites also score perturbed copies of their validation films (shift calibration).
            config = {"stage": stage, "last": server_round == rounds}
            if stage == "scores":
                config.update({key: wire.to_bytes(self.reference[key]) for key in QUALITY_KEYS})
            clients = client_manager.sample(num_clients=n_sites, min_num_clients=n_sites)
            return [(client, EvaluateIns(parameters, config)) for client in clients]

        def _valid_evaluations(self, server_round, stage, results):
            kept, dropped = [], {}
            for client, res in results:
                site = self.site(client)
                if stage == "validation":
                    problem = validation.check_validation(site, res.num_examples, res.loss, res.metrics, expected)
                elif stage == "moments":
                    problem = validation.check_moments(site, res.num_examples, res.metrics, expected)
                else:
                    problem = validation.check_scores(site, res.num_examples, res.metrics, expected)
                if problem:
                    dropped[site] = problem
                else:
                    kept.append((client, res))
            if dropped:
                _append(progress, {"round": server_round, "kind": f"{stage} dropped", "dropped": dropped})
            if not kept:
                raise RuntimeError(f"Round {server_round}: no site sent a usable {stage} answer ({dropped}); "
                                   "run stopped.")
            return kept

        def aggregate_evaluate(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"Round {server_round}: {len(failures)} site(s) failed to evaluate; run stopped.")
            stage = "validation" if server_round <= rounds else "moments" if server_round == rounds + 1 else "scores"
            results = self._valid_evaluations(server_round, stage, results)
            metrics = [r.metrics for _, r in results]
            if stage == "validation":
                pooled = sum(wire.from_bytes(m["histogram"]) for m in metrics)
                logits, labels = wire.histogram_samples(pooled)
                shifted = [wire.from_bytes(m["shift_histogram"]) for m in metrics if "shift_histogram" in m]
                np.savez(out / "calibration.npz", histogram=pooled,
                         **({"shift_histogram": sum(shifted)} if len(shifted) == len(metrics) else {}))
                _append(progress, {"round": server_round, "kind": "validation",
                                   "seconds": round(time.time() - self.started, 1),
                                   "global_auc": float(roc_auc_score(labels, logits)),
                                   "sites": {self.site(c): {"auc": r.metrics["auc"], "n": r.num_examples}
                                             for c, r in results}})
                return float(np.average([r.loss for _, r in results], weights=[r.num_examples for _, r in results])), {}
            if stage == "moments":
                self.reference = _pooled_reference(metrics, [r.num_examples for _, r in results])
                return 0.0, {}
            reference = dict(self.reference)
            for key, name in (("threshold", "reconstruction"), ("feature_threshold", "distance")):
                pooled = sum(wire.from_bytes(m[name]) for m in metrics)
                reference[key] = np.float32(QUALITY_MARGIN * wire.score_quantile(pooled, 0.995))
            peaks = sum(wire.from_bytes(m["gradcam_peak"]) for m in metrics)
            reference["gradcam_scale"] = np.float32(wire.score_quantile(peaks, 0.95))
            np.savez(out / "quality.npz", **reference)
            _append(progress, {"round": server_round, "kind": "quality", "seconds": round(time.time() - self.started, 1)})
            return 0.0, {}

    strategy = RecordingStrategy(fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=n_sites,
                                 min_evaluate_clients=n_sites, min_available_clients=n_sites, accept_failures=False,
                                 initial_parameters=ndarrays_to_parameters(expected.weights),
                                 on_fit_config_fn=lambda r: {"local_epochs": local_epochs, "rounds": rounds}, **extra)
    if noise_multiplier <= 0:
        return strategy

    class PrivateStrategy(flwr.server.strategy.DifferentialPrivacyServerSideFixedClipping):
        def aggregate_fit(self, server_round, results, failures):
            results = strategy.valid_fit_results(server_round, results)  # before clipping: it assumes sane arrays
            # The noise is sized for a plain average of the clipped updates (sensitivity C / sites): weighting sites
            # by their film counts, as FedAvg does, would let the largest site move the average further and make the
            # stated epsilon a promise the noise does not keep. Under privacy every site counts once.
            results = [(client, replace(fit, num_examples=1)) for client, fit in results]
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            if parameters is None:  # the wrapper returns nothing on a failure: stop, as without privacy
                raise RuntimeError(f"Round {server_round}: a site failed to train; run stopped.")
            # Noise also lands on batch-norm running variances, which must stay positive to be used.
            weights = parameters_to_ndarrays(parameters)
            for i in variance_indices:
                weights[i] = np.maximum(weights[i], 1e-3)
            return ndarrays_to_parameters(weights), metrics

    return PrivateStrategy(strategy, noise_multiplier, clipping_norm, n_sites)


def _pooled_reference(metrics: list[dict], counts: list[int]) -> dict[str, np.ndarray]:
    """The quality reference from the sites' sums and scatter matrices, as if their films had been pooled."""
    n = float(sum(counts))
    reference = {}
    for prefix in ("thumb", "feature"):
        total = sum(wire.from_bytes(m[f"{prefix}_sum"]) for m in metrics)
        scatter = sum(wire.from_bytes(m[f"{prefix}_scatter"]) for m in metrics)
        mean = total / n
        covariance = (scatter - n * np.outer(mean, mean)) / (n - 1)
        if prefix == "thumb":
            _, vectors = np.linalg.eigh(covariance)  # principal directions = the SVD's right singular vectors
            reference["mean"] = mean.astype(np.float32)
            reference["components"] = vectors[:, ::-1][:, :quality.N_COMPONENTS].T.astype(np.float32)
        else:
            covariance += np.eye(len(covariance)) * 1e-3 * np.trace(covariance) / len(covariance)  # shrinkage
            reference["feature_mean"] = mean.astype(np.float32)
            reference["feature_precision"] = np.linalg.inv(covariance).astype(np.float32)
    return reference


def serve(strategy, manager, keys: credentials.RunCredentials, total_rounds: int, port_file: Path) -> None:
    """Bind 127.0.0.1 on a port the system picks, with TLS, then write the port: whoever reads it reaches us."""
    import flwr
    from flwr.server.server import init_defaults, run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    server, config = init_defaults(server=None, config=flwr.server.ServerConfig(num_rounds=total_rounds),
                                   strategy=strategy, client_manager=manager)
    grpc_server = start_grpc_server(client_manager=server.client_manager(),
                                    server_address=f"{credentials.SERVER_HOST}:0",
                                    certificates=(keys.ca_certificate.read_bytes(), keys.server_certificate.read_bytes(),
                                                  keys.server_key.read_bytes()))
    port_file.with_suffix(".tmp").write_text(grpc_server.bound_address.rsplit(":", 1)[1])
    os.replace(port_file.with_suffix(".tmp"), port_file)
    try:
        run_fl(server, config)
    finally:
        grpc_server.stop(grace=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower server of a federated X-ray run.")
    parser.add_argument("--credentials", required=True, help="the run's key folder (medcore.federated.credentials)")
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--strategy", choices=STRATEGIES, default="fedavg")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--proximal-mu", type=float, default=0.01)
    parser.add_argument("--noise-multiplier", type=float, default=0.0, help="differential privacy (0: off)")
    parser.add_argument("--clipping-norm", type=float, default=1.0)
    parser.add_argument("--options", default="{}", help="XrayTrainingOptions fields as JSON (network shape, seed)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import keras

    from medcore.imaging.gradcam import GradCam
    from medcore.imaging.model import build_xray_ensemble
    from medcore.training.options import XrayTrainingOptions

    options = XrayTrainingOptions(**json.loads(args.options))
    keras.utils.set_random_seed(options.seed)
    network, _ = build_xray_ensemble(options.image_size, options.width, options.members)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    declared = {site: int(n) for site, n in json.loads((Path(args.credentials) / "sites.json").read_text()).items()}
    keys = credentials.RunCredentials(Path(args.credentials), tuple(declared))
    probe = np.zeros((1, options.image_size, options.image_size, 1), np.float32)
    expected = validation.Expected(weights=network.get_weights(), declared_films=declared,
                                   thumb_dim=quality.THUMB ** 2, feature_dim=int(GradCam(network)(probe)[2].shape[1]))
    manager = make_site_manager(credentials.load_public_keys(keys.folder, list(declared)),
                                lambda row: _append(out / "progress.jsonl", {**row, "at": round(time.time(), 1)}))
    variance = tuple(i for i, w in enumerate(network.weights) if "moving_variance" in w.path)
    strategy = make_strategy(args.strategy, args.rounds, manager, out, expected, args.local_epochs,
                             args.proximal_mu, args.noise_multiplier, args.clipping_norm, variance)
    serve(strategy, manager, keys, args.rounds + 2, out / "port")


if __name__ == "__main__":
    main()
