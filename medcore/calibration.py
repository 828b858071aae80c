"""Calibration maps from a binary network's logit to a probability, and temperature scaling for many classes.

Class weights make a network's raw probabilities over-confident for the minority class; a map fitted on
held-out data puts them back on the observed scale. Three binary maps, all monotone (ranking kept):
- platt: p = sigmoid(a * logit + b), two parameters (the default after training);
- intercept: production's slope kept, only b refitted: one parameter, for small local sets where the
  ranking transfers and the prevalence or exposure shifts;
- isotonic: a free monotone step map (Zadrozny & Elkan 2002), for large local sets.
A map is stored as a dict with its "method", so a model's meta.json says how to apply it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def fit_platt(logits: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    logits = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(y_true, dtype=np.float64).ravel()

    def negative_log_likelihood(params: np.ndarray) -> float:
        z = params[0] * logits + params[1]
        # log(1 + e^z) - y z, written stably
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    # The slope is kept positive: a map that inverted the network's ranking (possible on a tiny or odd fitting
    # set) would turn its best evidence for pneumonia into evidence against it.
    result = minimize(negative_log_likelihood, x0=np.array([1.0, 0.0]), method="L-BFGS-B",
                      bounds=[(1e-3, None), (None, None)])
    return {"a": float(result.x[0]), "b": float(result.x[1])}


def apply_platt(logits: np.ndarray, params: dict[str, float]) -> np.ndarray:
    z = params["a"] * np.asarray(logits, dtype=np.float64) + params["b"]
    return 1.0 / (1.0 + np.exp(-z))


def fit_intercept(logits: np.ndarray, y_true: np.ndarray, slope: float) -> dict[str, float]:
    """Platt scaling with the slope fixed: only the offset b is fitted."""
    logits = slope * np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(y_true, dtype=np.float64).ravel()

    def negative_log_likelihood(b: np.ndarray) -> float:
        z = logits + b[0]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    result = minimize(negative_log_likelihood, x0=np.array([0.0]), method="L-BFGS-B")
    return {"a": float(slope), "b": float(result.x[0])}


ISOTONIC_FLOOR = 0.001  # an isotonic step may reach 0 or 1 on a small set; no film earns certainty


def fit_isotonic(logits: np.ndarray, y_true: np.ndarray) -> dict[str, list[float]]:
    """The monotone step map as its knots (x: logit, y: probability), applied by linear interpolation."""
    from sklearn.isotonic import IsotonicRegression

    logits = np.asarray(logits, dtype=np.float64).ravel()
    iso = IsotonicRegression(y_min=ISOTONIC_FLOOR, y_max=1 - ISOTONIC_FLOOR, out_of_bounds="clip")
    iso.fit(logits, np.asarray(y_true, dtype=np.float64).ravel())
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def fit(method: str, logits: np.ndarray, y_true: np.ndarray, base: dict | None = None) -> dict:
    """Fit one binary map by name; `base` is the current map (its slope is kept by "intercept")."""
    if method == "platt":
        return {"method": "platt", **fit_platt(logits, y_true)}
    if method == "intercept":
        return {"method": "intercept", **fit_intercept(logits, y_true, float((base or {}).get("a", 1.0)))}
    if method == "isotonic":
        return {"method": "isotonic", **fit_isotonic(logits, y_true)}
    raise ValueError(f"Unknown calibration method {method!r}.")


def apply(logits: np.ndarray, params: dict) -> np.ndarray:
    """A stored binary map applied to logits; then, after an adaptation to a hospital's prevalence
    (training.adaptation), Bayes' shift of the log-odds."""
    if params.get("method", "platt") in ("platt", "intercept"):
        probabilities = apply_platt(logits, params)
    elif params["method"] == "isotonic":
        probabilities = np.interp(np.asarray(logits, dtype=np.float64), params["x"], params["y"])
    else:
        raise ValueError(f"Unknown calibration method {params['method']!r}.")
    shift = params.get("prior_logit_shift") or 0.0
    if not shift:
        return probabilities
    p = np.clip(probabilities, 1e-9, 1 - 1e-9)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + shift)))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature scaling for a multi-class network (Guo et al. 2017): one scalar, ranking unchanged.

    Sharpening is bounded at 4x (T >= 0.25): on a validation set the network separates perfectly, likelihood
    drives T towards 0 and probabilities to 0 or 1, a certainty no finite set can show.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)

    def negative_log_likelihood(log_t: np.ndarray) -> float:
        p = softmax(logits, float(np.exp(log_t[0])))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    result = minimize(negative_log_likelihood, x0=np.array([0.0]), method="L-BFGS-B", bounds=[(np.log(0.25), 3)])
    return float(np.exp(result.x[0]))


def fit_vector_scaling(logits: np.ndarray, y_true: np.ndarray, l2: float = 1e-3) -> dict[str, list[float]]:
    """Vector scaling (Guo et al. 2017): one scale and one offset per class, z' = w * z + b, fitted by likelihood.

    Class-wise, so a class the network is over-confident about and one it is timid about are both fixed,
    which one temperature cannot do. A small L2 pull towards w = 1, b = 0 keeps rare classes from overfitting.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)
    k = logits.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:k], params[k:]
        z = logits * w + b
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        n = len(y)
        nll = -np.mean(np.log(p[np.arange(n), y] + 1e-12))
        residual = p.copy()
        residual[np.arange(n), y] -= 1.0
        grad_w = (residual * logits).mean(axis=0) + 2 * l2 * (w - 1.0)
        grad_b = residual.mean(axis=0) + 2 * l2 * b
        return nll + l2 * (np.sum((w - 1.0) ** 2) + np.sum(b ** 2)), np.concatenate([grad_w, grad_b])

    result = minimize(loss, x0=np.r_[np.ones(k), np.zeros(k)], jac=True, method="L-BFGS-B")
    return {"w": result.x[:k].tolist(), "b": result.x[k:].tolist()}


def apply_vector_scaling(logits: np.ndarray, params: dict[str, list[float]]) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) * np.asarray(params["w"]) + np.asarray(params["b"])
    return softmax(z)


def calibrate_logits(logits: np.ndarray, params: dict) -> np.ndarray:
    """A multi-class model's stored calibration applied: {"method": "vector", w, b} or {"temperature": T}."""
    if params.get("method") == "vector":
        return apply_vector_scaling(logits, params)
    if params.get("method") == "top_label":
        return apply_top_label(logits, params)
    return softmax(logits, float(params["temperature"]))


TOP_LABEL_MIN_NOTES = 30  # a predicted class needs this many validation notes for a map of its own


def fit_top_label(logits: np.ndarray, y_true: np.ndarray, min_per_class: int = TOP_LABEL_MIN_NOTES) -> dict:
    """Class-wise top-label calibration (Gupta & Ramdas 2022): the confidence in the predicted class is recalibrated
    by a Platt map of that class (a shared map for classes predicted too rarely), the rest rescaled.

    Unlike vector scaling it never changes which class is predicted: the decision stays the model's, and the
    probability shown beside it becomes honest. Fitted after a temperature, which settles the other classes.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)
    temperature = fit_temperature(logits, y)
    prob = softmax(logits, temperature)
    predicted, confidence = prob.argmax(axis=1), prob.max(axis=1)
    z, correct = _logit(confidence), (predicted == y).astype(float)
    # Every validation finding right (or every one wrong) leaves nothing to fit: the identity map, not an endless
    # sharpening towards certainty.
    maps = {"all": fit_platt(z, correct) if 0 < correct.mean() < 1 else {"a": 1.0, "b": 0.0}}
    for k in np.unique(predicted):
        chosen = predicted == k
        if chosen.sum() >= min_per_class and 0 < correct[chosen].mean() < 1:
            maps[str(int(k))] = fit_platt(z[chosen], correct[chosen])
    return {"method": "top_label", "temperature": temperature, "maps": maps}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def apply_top_label(logits: np.ndarray, params: dict) -> np.ndarray:
    prob = softmax(logits, float(params["temperature"]))
    rows = np.arange(len(prob))
    predicted, confidence = prob.argmax(axis=1), prob[rows, prob.argmax(axis=1)]
    maps = params["maps"]
    # Each row's map, as arrays: explanations pass ~1000 masked notes at once, so no per-row Python loop.
    slope = np.array([maps.get(str(k), maps["all"])["a"] for k in range(prob.shape[1])])
    offset = np.array([maps.get(str(k), maps["all"])["b"] for k in range(prob.shape[1])])
    new = apply_platt(_logit(confidence), {"a": slope[predicted], "b": offset[predicted]})
    others = prob.copy()
    others[rows, predicted] = 0.0
    runner_up = others.max(axis=1)
    new = np.maximum(new, runner_up / (1.0 - confidence + runner_up + 1e-12))  # the predicted class stays on top
    scale = (1.0 - new) / np.maximum(1.0 - confidence, 1e-12)
    result = others * scale[:, None]
    result[rows, predicted] = new
    return result
