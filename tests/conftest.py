"""Shared test configuration: headless Qt, paths to the real shared data and the pydicom-data corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    """The read-only shared data: $CXR_SHARED_DATA, else ../shared/data beside the checkout, else /work/shared."""
    candidates = [os.environ.get("CXR_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


def _pydicom_data_dir() -> Path | None:
    try:
        import data_store  # the pydicom-data package (files ship inside the wheel)
    except ImportError:
        return None
    path = Path(data_store.__file__).parent / "data"
    return path if path.is_dir() else None


PYDICOM_DATA = _pydicom_data_dir()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module's tests: on a machine whose cores are shared with other jobs,
    OpenMP threads spinning on a busy core make a 30 ms forward pass take over a second."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pydicom_data() -> Path:
    if PYDICOM_DATA is None:
        pytest.fail("pydicom-data is not installed (pip install -e '.[dev]')")
    return PYDICOM_DATA
