"""Static types: mypy over the packages configured in pyproject.toml ([tool.mypy] files) must pass.

A fresh run takes about 30 s (torch's annotations dominate); later runs reuse .mypy_cache.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (pip install -e '.[dev]')")
def test_mypy_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary"], cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
