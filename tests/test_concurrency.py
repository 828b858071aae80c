"""Several browser sessions at once (benchmarks/concurrency.py with a few sessions): no errors, no cross-talk.

The 20-session run with its timings is a benchmark (README, "Reliability"); here only correctness is
checked, so the test stays short on a 2-core CI machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium is not installed")]


def test_concurrent_sessions_see_only_their_own_results():
    from benchmarks.concurrency import measure

    result = measure(sessions=4, admin_rounds=2)
    assert result["errors"] == [] and result["cross_talk"] == [], result
    assert result["actions"]["X-ray study (upload to Grad-CAM)"]["n"] == 4
    assert result["actions"]["case note (analyse to SHAP)"]["n"] == 4
