"""M1 (issue 21): a federated round cannot be poisoned by another process or by a malformed update.

The attacks the review reproduced, each against the real server code (the client manager and the strategy), without
starting Flower processes: an unknown or duplicate site, a forged join answer, arrays of the wrong shape with a huge
example count (which set every global weight to 7.0), NaN, and a poisoned histogram (which moved the threshold from
0.416 to 0.993). tests/test_federated.py runs a rogue client process against a real run.
"""

from __future__ import annotations

import json
import stat
from types import SimpleNamespace

import numpy as np
import pytest

from medcore.federated import credentials, validation, wire
from medcore.federated.server import make_site_manager, make_strategy

WEIGHTS = [np.zeros((3, 3), np.float32), np.ones(4, np.float32)]
EXPECTED = validation.Expected(weights=WEIGHTS, declared_films={"site-1": 100, "site-2": 80}, thumb_dim=4,
                               feature_dim=3)


def test_keys_are_readable_by_their_owner_only_and_each_site_signs_its_own(tmp_path):
    keys = credentials.create(tmp_path / "keys", 2)
    assert stat.S_IMODE(keys.folder.stat().st_mode) == 0o700
    for private in (keys.server_key, keys.site_key("site-1"), keys.site_key("site-2")):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    public = credentials.load_public_keys(keys.folder, list(keys.site_ids))
    challenge = credentials.new_challenge()
    signature = credentials.sign_challenge(keys.site_key("site-1"), "site-1", challenge)
    assert credentials.verify_answer(public, challenge, "site-1", signature) is None
    assert "does not match" in credentials.verify_answer(public, challenge, "site-2", signature)  # another site's key
    assert "does not match" in credentials.verify_answer(public, credentials.new_challenge(), "site-1", signature)
    assert "unknown site" in credentials.verify_answer(public, challenge, "hospital_a", signature)


class FakeProxy:
    """A connected client as the server sees it: a connection id, an answer to the challenge, a bridge."""

    def __init__(self, cid: str, answer) -> None:
        self.cid, self.answer, self.closed = cid, answer, False
        self.bridge = SimpleNamespace(close=self._close)

    def _close(self) -> None:
        self.closed = True

    def get_properties(self, ins, timeout, group_id):
        return SimpleNamespace(properties=self.answer(ins.config["challenge"]))


def test_only_expected_sites_with_their_key_join_and_only_once(tmp_path):
    keys = credentials.create(tmp_path / "keys", 2)
    rogue = credentials.create(tmp_path / "rogue", 1)
    rows = []
    manager = make_site_manager(credentials.load_public_keys(keys.folder, ["site-1", "site-2"]), rows.append)

    def honest(site):
        return lambda c: {"site": site, "signature": credentials.sign_challenge(keys.site_key(site), site, c)}

    def join(proxy: FakeProxy) -> FakeProxy:
        manager._authenticate(proxy)  # what register() starts on its own thread
        return proxy

    forged = join(FakeProxy("a", lambda c: {"site": "site-1", "signature": credentials.sign_challenge(
        rogue.site_key("site-1"), "site-1", c)}))
    unknown = join(FakeProxy("b", lambda c: {"site": "hospital_a", "signature": b"x"}))
    first = join(FakeProxy("c", honest("site-1")))
    duplicate = join(FakeProxy("d", honest("site-1")))
    second = join(FakeProxy("e", honest("site-2")))
    assert set(manager.all()) == {"c", "e"} and manager.site_of == {"c": "site-1", "e": "site-2"}
    assert forged.closed and unknown.closed and duplicate.closed and not first.closed and not second.closed
    reasons = [r["reason"] for r in rows if r["kind"] == "refused"]
    assert ["does not match" in reasons[0], "unknown site" in reasons[1], "already connected" in reasons[2]] == [True] * 3
    manager.unregister(first)  # a site that disconnected may join again
    assert not join(FakeProxy("f", honest("site-1"))).closed


def _fit(arrays, n, metrics=None):
    from flwr.common import FitRes, Status, Code, ndarrays_to_parameters

    return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), n, metrics or {"loss": 0.5})


def _strategy(tmp_path, sites):
    return make_strategy("fedavg", 2, SimpleNamespace(site_of=sites), tmp_path, EXPECTED)


def test_a_wrong_shaped_update_with_a_huge_count_is_dropped_with_its_reason(tmp_path):
    from flwr.common import parameters_to_ndarrays

    strategy = _strategy(tmp_path, {"a": "site-1", "b": "site-2"})
    strategy.sent = WEIGHTS
    honest = [np.full((3, 3), 1.0, np.float32), np.full(4, 2.0, np.float32)]
    poisoned = [np.full((9,), 7.0, np.float32), np.full(4, 7.0, np.float32)]
    results = [(SimpleNamespace(cid="a"), _fit(honest, 90)), (SimpleNamespace(cid="b"), _fit(poisoned, 10**9))]
    parameters, _ = strategy.aggregate_fit(1, results, [])
    aggregated = parameters_to_ndarrays(parameters)
    assert np.allclose(aggregated[0], 1.0) and np.allclose(aggregated[1], 2.0)  # the honest site alone
    row = json.loads((tmp_path / "progress.jsonl").read_text().splitlines()[-1])
    assert set(row["sites"]) == {"site-1"} and "claims 1000000000 films; the site declared 80" in row["dropped"]["site-2"]


@pytest.mark.parametrize("arrays, n, metrics, reason", [
    ([np.zeros((3, 3), np.float32), np.ones(4, np.float32)], 100, {"loss": 0.1}, "declared 80"),
    ([np.full((9,), 7.0, np.float32), np.ones(4, np.float32)], 50, {"loss": 0.1}, "array 0 is float32[9]"),
    ([np.zeros((3, 3), np.float64), np.ones(4, np.float32)], 50, {"loss": 0.1}, "array 0 is float64"),
    ([np.zeros((3, 3), np.float32)], 50, {"loss": 0.1}, "1 arrays instead of 2"),
    ([np.full((3, 3), np.nan, np.float32), np.ones(4, np.float32)], 50, {"loss": 0.1}, "non-finite"),
    ([np.zeros((3, 3), np.float32), np.ones(4, np.float32)], 50, {"loss": float("inf")}, "loss is not a finite"),
    ([np.zeros((3, 3), np.float32), np.ones(4, np.float32)], 50, {"loss": 0.1, "site": "hospital_a"}, "unexpected"),
    ([np.zeros((3, 3), np.float32), np.ones(4, np.float32)], 0, {"loss": 0.1}, "claims 0 films"),
])
def test_every_kind_of_bad_update_is_named(arrays, n, metrics, reason):
    assert reason in validation.check_fit("site-2", arrays, n, metrics, EXPECTED)
    assert validation.check_fit("site-2", WEIGHTS, 80, {"loss": 0.2}, EXPECTED) is None


def _evaluation(histogram: np.ndarray, n: int, auc: float = 0.9):
    from flwr.common import Code, EvaluateRes, Status

    return EvaluateRes(Status(Code.OK, ""), 0.3, n, {"auc": auc, "histogram": wire.to_bytes(histogram)})


def test_a_poisoned_histogram_cannot_move_the_pooled_counts(tmp_path):
    strategy = _strategy(tmp_path, {"a": "site-1", "b": "site-2"})
    honest = wire.logit_histogram(np.array([-3.0, -2.5, 2.0, 3.0]), np.array([0, 0, 1, 1]))
    tilted = wire.logit_histogram(np.full(40, 8.0), np.zeros(40, int))  # 40 normals far to the right ...
    results = [(SimpleNamespace(cid="a"), _evaluation(honest, 4)),
               (SimpleNamespace(cid="b"), _evaluation(tilted, 4))]  # ... claiming to be only 4 films
    strategy.aggregate_evaluate(1, results, [])
    with np.load(tmp_path / "calibration.npz") as stored:
        assert np.array_equal(stored["histogram"], honest)
    rows = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert "more than the 4 the site reported" in rows[0]["dropped"]["site-2"]
    wrong_bins = np.zeros((2, 100), np.int64)
    assert "agreed" in validation.check_validation("site-1", 5, 0.1, {"auc": 0.5, "histogram": wire.to_bytes(
        wrong_bins)}, EXPECTED)
    negative = honest.copy()
    negative[0, 0], negative[0, 1] = -5, negative[0, 1] + 5
    assert "negative" in validation.check_validation("site-1", 4, 0.1, {"auc": 0.5, "histogram": wire.to_bytes(
        negative)}, EXPECTED)


def test_statistics_rounds_check_shapes_and_counts():
    good = {"thumb_sum": wire.to_bytes(np.zeros(4)), "thumb_scatter": wire.to_bytes(np.eye(4)),
            "feature_sum": wire.to_bytes(np.zeros(3)), "feature_scatter": wire.to_bytes(np.eye(3))}
    assert validation.check_moments("site-1", 50, good, EXPECTED) is None
    assert "shape [3, 3]" in validation.check_moments("site-1", 50, {**good, "feature_scatter": wire.to_bytes(
        np.eye(5))}, EXPECTED)
    assert "cannot be decoded" in validation.check_moments("site-1", 50, {**good, "thumb_sum": b"junk"}, EXPECTED)
    scores = {key: wire.to_bytes(wire.score_histogram(np.full(7, 0.5))) for key in validation.SCORE_KEYS}
    assert validation.check_scores("site-1", 7, scores, EXPECTED) is None
    assert "not the 9" in validation.check_scores("site-1", 9, scores, EXPECTED)


def test_counts_that_would_overflow_or_exceed_the_films_are_refused():
    """Four bins of 2^62 plus n sum to n in int64: every bin must itself lie within the films reported."""
    overflow = np.zeros(validation.SCORE_BINS, np.int64)
    overflow[-4:] = 2**62
    overflow[0] = 7
    scores = {key: wire.to_bytes(overflow) for key in validation.SCORE_KEYS}
    assert "more than the 7" in validation.check_scores("site-1", 7, scores, EXPECTED)
    complex_moments = {"thumb_sum": wire.to_bytes(np.zeros(4, complex)), "thumb_scatter": wire.to_bytes(np.eye(4)),
                       "feature_sum": wire.to_bytes(np.zeros(3)), "feature_scatter": wire.to_bytes(np.eye(3))}
    assert "real numbers" in validation.check_moments("site-1", 50, complex_moments, EXPECTED)
    strings = {**complex_moments, "thumb_sum": wire.to_bytes(np.array(["a", "b", "c", "d"]))}
    assert "real numbers" in validation.check_moments("site-1", 50, strings, EXPECTED)
    huge = [np.full((3, 3), 3e38, np.float32), np.ones(4, np.float32)]
    assert "beyond" in validation.check_fit("site-1", huge, 50, {"loss": 0.1}, EXPECTED)


def test_under_differential_privacy_every_site_counts_once(tmp_path):
    """The noise is sized for a plain average; FedAvg's weighting by film counts would break the stated epsilon."""
    from flwr.common import parameters_to_ndarrays

    private = make_strategy("fedavg", 2, SimpleNamespace(site_of={"a": "site-1", "b": "site-2"}), tmp_path, EXPECTED,
                            noise_multiplier=1e-9, clipping_norm=1e6)
    private.strategy.sent = private.current_round_params = WEIGHTS  # what configure_fit would have set
    big = [np.full((3, 3), 1.0, np.float32), np.full(4, 1.0, np.float32)]
    small = [np.full((3, 3), 3.0, np.float32), np.full(4, 1.0, np.float32)]
    state = np.random.get_state()
    np.random.seed(20261207)  # flwr draws the noise from numpy's global generator: the same draw on every run
    try:
        parameters, _ = private.aggregate_fit(1, [(SimpleNamespace(cid="a"), _fit(big, 100)),
                                                  (SimpleNamespace(cid="b"), _fit(small, 10))], [])
    finally:
        np.random.set_state(state)
    # The noise's standard deviation as the wrapper adds it (z * C / sites, 5e-4 here); six of them is far below the
    # 0.82 by which FedAvg's 100:10 weighting (1.18) would miss the equal-weight mean 2.0, so the check is not flaky
    # whatever the draw.
    sd = private.noise_multiplier * private.clipping_norm / private.num_sampled_clients
    assert np.allclose(parameters_to_ndarrays(parameters)[0], 2.0, rtol=0, atol=6 * sd)  # equal weights
