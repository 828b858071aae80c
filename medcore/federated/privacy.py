"""Differential privacy of a federated run: Flower's server-side fixed clipping, and the guarantee it gives.

Each round, every hospital's update (its new weights minus the global ones) is clipped to norm C and Gaussian
noise of standard deviation z * C / n is added to the average of the n updates (flwr's
DifferentialPrivacyServerSideFixedClipping). With every hospital taking part in every round this is the
Gaussian mechanism on the sum, with noise multiplier z, repeated T times; its Renyi-DP is T * a / (2 z^2) at
order a, converted to (epsilon, delta) by the standard bound (Mironov 2017). The unit protected is a whole
hospital's contribution (client-level DP), which also covers each of its patients.
"""

from __future__ import annotations

import numpy as np


def client_level_epsilon(noise_multiplier: float, rounds: int, delta: float = 1e-5) -> float:
    """epsilon of (epsilon, delta)-DP after `rounds` full-participation Gaussian rounds (inf without noise)."""
    if noise_multiplier <= 0:
        return float("inf")
    orders = np.concatenate([np.linspace(1.01, 10, 200), np.linspace(10, 1000, 400)])
    rdp = rounds * orders / (2 * noise_multiplier ** 2)
    return float(np.min(rdp + np.log(1 / delta) / (orders - 1)))
