"""Helpers for the imaging tests: real files and modified copies of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest


@pytest.fixture(scope="session")
def shared_dicom(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture
def dicom_variant(tmp_path: Path) -> Callable[..., Path]:
    """Write a copy of a real DICOM file with some elements changed (value None deletes the element)."""

    def make(src: Path, name: str | None = None, **changes: object) -> Path:
        ds = pydicom.dcmread(src)
        for keyword, value in changes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        out = tmp_path / (name or f"variant_{len(list(tmp_path.iterdir()))}.dcm")
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out)
        return out

    return make
