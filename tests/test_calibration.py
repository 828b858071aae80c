"""Calibration, metrics and threshold choice on synthetic scores with known answers."""

import numpy as np
from sklearn.metrics import roc_auc_score

from medcore.calibration import apply_platt, fit_platt
from medcore.metrics import (
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
)


def _overconfident(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return 3.0 * z + 1.0, y  # logits three times too large and shifted: badly calibrated


def test_platt_scaling_reduces_ece_and_keeps_ranking():
    logits, y = _overconfident()
    raw = 1 / (1 + np.exp(-logits))
    params = fit_platt(logits, y)
    calibrated = apply_platt(logits, params)
    assert expected_calibration_error(y, raw) > 0.08
    assert expected_calibration_error(y, calibrated) < 0.03
    assert abs(params["a"] - 1 / 3) < 0.05
    assert roc_auc_score(y, calibrated) == roc_auc_score(y, raw)


def test_ece_is_zero_for_perfect_calibration_and_large_for_wrong_confidence():
    prob = np.repeat([0.2, 0.8], 1000)
    y = np.concatenate([np.r_[np.ones(200), np.zeros(800)], np.r_[np.ones(800), np.zeros(200)]])
    assert expected_calibration_error(y, prob) < 1e-9
    assert abs(expected_calibration_error(1 - y, prob) - 0.6) < 1e-9


def test_binary_metrics_on_a_known_confusion_matrix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([.9, .8, .7, .2, .6, .1, .1, .1, .1, .1])
    m = binary_metrics(y, p, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 5)
    assert m["sensitivity"] == 0.75 and abs(m["specificity"] - 5 / 6) < 1e-12
    assert m["accuracy"] == 0.8 and abs(m["f1"] - 0.75) < 1e-12 and m["n"] == 10


def test_threshold_reaches_the_sensitivity_target_with_best_specificity():
    logits, y = _overconfident(seed=1)
    prob = apply_platt(logits, fit_platt(logits, y))
    chosen = binary_metrics(y, prob, choose_threshold(y, prob, 0.95))
    assert chosen["sensitivity"] >= 0.95
    for t in np.unique(prob):  # no threshold meeting the target is more specific, or as specific and more sensitive
        m = binary_metrics(y, prob, t)
        if m["sensitivity"] >= 0.95:
            assert m["specificity"] <= chosen["specificity"]
            if m["specificity"] == chosen["specificity"]:
                assert m["sensitivity"] <= chosen["sensitivity"]


def test_every_binary_map_recovers_a_known_miscalibration_and_keeps_the_ranking():
    from medcore import calibration

    logits, y = _overconfident()
    raw = 1 / (1 + np.exp(-logits))
    for method in ("platt", "intercept", "isotonic"):
        params = calibration.fit(method, logits, y, base={"a": 1 / 3})
        prob = calibration.apply(logits, params)
        assert params["method"] == method
        assert expected_calibration_error(y, prob) < 0.03, method
        assert roc_auc_score(y, prob) > roc_auc_score(y, raw) - 0.005, method  # isotonic ties cost a hair
        assert prob.min() > 0 and prob.max() < 1, method


def test_intercept_map_keeps_the_slope_it_is_given():
    from medcore import calibration

    logits, y = _overconfident()
    params = calibration.fit("intercept", logits, y, base={"a": 0.5})
    assert params["a"] == 0.5 and params["b"] != 0.0


def test_a_confidence_margin_raises_the_sensitivity_the_threshold_keeps():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    prob = np.clip(np.r_[rng.beta(2, 5, 100), rng.beta(5, 2, 100)], 0, 1)
    plain = choose_threshold(y, prob, 0.95)
    cautious = choose_threshold(y, prob, 0.95, confidence_z=0.84)
    assert cautious < plain
    kept = ((prob >= cautious) & (y == 1)).sum()
    from medcore.metrics import proportion_interval
    assert proportion_interval(int(kept), 100, 0.84)[0] >= 0.95


def test_a_threshold_held_on_each_domain_keeps_the_target_where_the_union_lets_one_fall_short():
    """Clean films and perturbed copies: on their union the copies' margin hides the clean films' shortfall."""
    from medcore.metrics import choose_threshold_for_each, proportion_interval

    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(300), np.ones(300)].astype(int)
    clean = np.r_[rng.normal(-3, 1, 300), rng.normal(2, 1.5, 300)]  # some positives score low
    copies = np.r_[rng.normal(0, 1.5, 300), rng.normal(5, 1, 300)]  # everything pushed up
    domains = [(y, 1 / (1 + np.exp(-clean))), (y, 1 / (1 + np.exp(-copies)))]
    union = choose_threshold(np.r_[y, y], np.r_[domains[0][1], domains[1][1]], 0.95)
    clean_sensitivity = ((domains[0][1] >= union) & (y == 1)).sum() / 300
    assert clean_sensitivity < 0.95  # the union's rule fails the clean films
    each = choose_threshold_for_each(domains, 0.95)
    for labels, prob in domains:
        kept = int(((prob >= each) & (labels == 1)).sum())
        assert proportion_interval(kept, 300, 0.84)[0] >= 0.95
    assert each == min(choose_threshold(labels, prob, 0.95, 0.84) for labels, prob in domains)


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_more_data():
    from medcore.metrics import bootstrap_interval, intervals

    rng = np.random.default_rng(0)
    widths = []
    for n in (150, 2400):
        p = rng.random(n)
        y = (rng.random(n) < p).astype(int)
        ece = expected_calibration_error(y, p)
        low, high = bootstrap_interval(y, p, expected_calibration_error, 300)
        assert low <= ece <= high  # ECE is biased upwards under resampling; the interval still brackets it
        metrics = binary_metrics(y, p, 0.5)
        bounds = intervals(metrics, y, p, 300)
        for key in ("auc", "accuracy", "sensitivity", "specificity"):
            assert bounds[key][0] <= metrics[key] <= bounds[key][1], key
        widths.append(bounds["auc"][1] - bounds["auc"][0])
    assert widths[1] < widths[0] / 2


def test_vector_scaling_fixes_classes_that_a_single_temperature_cannot():
    """Class 0 is over-confident, class 2 timid: vector scaling brings the top-label ECE down further than a
    temperature, and keeps the argmax of a well-separated problem."""
    from medcore.calibration import apply_vector_scaling, fit_temperature, fit_vector_scaling, softmax

    rng = np.random.default_rng(1)
    n, k = 6000, 3
    true_logits = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(true_logits)])
    distorted = true_logits * np.array([3.0, 1.0, 0.4]) + np.array([0.5, 0.0, -0.5])
    temperature = softmax(distorted, fit_temperature(distorted, y))
    vector = apply_vector_scaling(distorted, fit_vector_scaling(distorted, y))

    def top_ece(p):
        return expected_calibration_error((p.argmax(1) == y).astype(int), p.max(1))

    assert top_ece(vector) < 0.02 and top_ece(vector) < top_ece(temperature)


def test_confidence_threshold_keeps_the_precision_it_promises():
    from medcore.metrics import confidence_threshold

    rng = np.random.default_rng(2)
    n = 2000
    confidence = rng.uniform(0.2, 1.0, n)
    y = np.zeros(n, dtype=int)
    correct = rng.random(n) < confidence  # a calibrated model: right as often as it is sure
    prob = np.stack([confidence, 1 - confidence], axis=1)
    y[~correct] = 1
    chosen = confidence_threshold(y, prob, 0.9)
    shown = confidence >= chosen["threshold"]
    assert (prob.argmax(1)[shown] == y[shown]).mean() >= 0.9
    assert chosen["coverage"] == shown.mean() and 0.1 < chosen["coverage"] < 0.6


def test_platt_never_inverts_the_ranking():
    """On labels that run against the logits, an unconstrained fit would take a negative slope and turn the best
    evidence for the positive class into evidence against it."""
    logits = np.linspace(-3, 3, 40)
    y = (logits < 0).astype(int)
    params = fit_platt(logits, y)
    assert params["a"] > 0
    prob = apply_platt(logits, params)
    assert np.all(np.diff(prob) >= 0)
