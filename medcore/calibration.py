"""Platt scaling: p = sigmoid(a * logit + b), fitted on validation logits by maximum likelihood.

Class weights make a network's raw probabilities over-confident for the minority class; two
parameters fitted on held-out data put them back on the observed scale without changing the
ranking (AUC is unchanged).
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

    result = minimize(negative_log_likelihood, x0=np.array([1.0, 0.0]), method="L-BFGS-B")
    return {"a": float(result.x[0]), "b": float(result.x[1])}


def apply_platt(logits: np.ndarray, params: dict[str, float]) -> np.ndarray:
    z = params["a"] * np.asarray(logits, dtype=np.float64) + params["b"]
    return 1.0 / (1.0 + np.exp(-z))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature scaling for a multi-class network (Guo et al. 2017): one scalar, ranking unchanged."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)

    def negative_log_likelihood(log_t: np.ndarray) -> float:
        p = softmax(logits, float(np.exp(log_t[0])))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    result = minimize(negative_log_likelihood, x0=np.array([0.0]), method="L-BFGS-B", bounds=[(-3, 3)])
    return float(np.exp(result.x[0]))
