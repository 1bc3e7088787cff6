"""Every file of the pydicom-data corpus either loads or raises ImageLoadError: nothing else, no hang."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import ImageLoadError, load_image, model_input, to_display

# pydicom warns (UserWarning) about the deliberately odd files used here; that is not our output.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def _corpus() -> list[Path]:
    try:
        import data_store  # the pydicom-data package
    except ImportError:
        return []
    return sorted((Path(data_store.__file__).parent / "data").glob("*.dcm"))


CORPUS = _corpus()

# Files that are damaged on purpose in pydicom-data; everything else must open.
EXPECTED_FAILURES = {"emri_small_jpeg_2k_lossless_too_short.dcm": "truncated pixel data"}


def test_corpus_is_installed() -> None:
    assert len(CORPUS) >= 60, "pydicom-data corpus missing (pip install -e '.[dev]')"


@pytest.mark.timeout(30, method="thread")
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_file_loads_or_raises_our_error(path) -> None:
    try:
        image = load_image(path)
    except ImageLoadError as exc:
        assert path.name in EXPECTED_FAILURES, f"unexpected failure: {exc}"
        assert EXPECTED_FAILURES[path.name] in str(exc)
        assert str(exc).startswith(path.name)
        return
    assert path.name not in EXPECTED_FAILURES
    assert image.pixels.ndim == 2 and image.pixels.size > 0
    display = to_display(image)
    assert display.dtype == np.uint8 and display.shape == image.pixels.shape
    unit = model_input(image)
    assert unit.dtype == np.float32 and unit.shape == image.pixels.shape
    assert np.isfinite(unit).all() and unit.min() >= 0.0 and unit.max() <= 1.0
    assert unit.max() > unit.min(), "the model input of a real image must not be flat"
