"""JPEG 2000 read at a lower resolution level for the model (`cxrviewer-predict` without exports), on real films."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.imaging.j2k_reduced import MODEL_SIDE, decode_reduced, level_for
from cxrviewer.imaging.loader import load_for_model


def _small(pixels: np.ndarray) -> np.ndarray:
    """The film at about the model's scale (256 px on the long side), as float."""
    h, w = pixels.shape
    return cv2.resize(pixels.astype(np.float32), (round(w * 256 / max(h, w)), round(h * 256 / max(h, w))),
                      interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm"])  # lossless and lossy 2k CR, 15 bits
def test_reduced_decode_is_the_film_at_model_scale(pydicom_data: Path, name: str) -> None:
    ds = pydicom.dcmread(pydicom_data / name)
    full = ds.pixel_array
    reduced = decode_reduced(ds)
    assert reduced is not None and reduced.shape == full.shape and reduced.dtype == full.dtype
    assert level_for(ds.Columns, ds.Rows, 5) == 1  # 1955 px -> 978 px, still >= MODEL_SIDE
    a, b = _small(full), _small(reduced)
    span = float(np.ptp(full))
    # same grey levels (Pillow's scaling to 16 bits undone): a fraction of a percent at the model's scale
    assert abs(float(a.mean()) - float(b.mean())) < 0.002 * span
    assert float(np.percentile(np.abs(a - b), 95)) < 0.005 * span


def test_openjpeg_threads_give_the_same_pixels(pydicom_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cxrviewer-predict decodes with OPJ_NUM_THREADS set to every core: the same film, only sooner."""
    ds = pydicom.dcmread(pydicom_data / "RG1_J2KI.dcm")
    monkeypatch.setenv("OPJ_NUM_THREADS", "1")
    one = decode_reduced(ds)
    monkeypatch.setenv("OPJ_NUM_THREADS", "2")
    two = decode_reduced(ds)
    assert one is not None and two is not None and np.array_equal(one, two)
    from cxrviewer.predict import process_settings

    monkeypatch.delenv("OPJ_NUM_THREADS")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    process_settings()  # what cxrviewer-predict's main does first
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert os.environ["OPJ_NUM_THREADS"] == str(cores)


def test_level_keeps_the_model_side_and_pillows_sizes() -> None:
    assert level_for(1841, 1955, 5) == 1
    assert level_for(3200, 3200, 5) == 2  # 800 px; level 3's 400 px would be below MODEL_SIDE
    assert level_for(3000, 3000, 5) == 1  # level 2's 750 px would be
    assert level_for(3200, 3200, 1) == 1  # no more levels than the codestream has
    assert level_for(1024, 1024, 5) == 0  # a 1k film at 512 px moved probabilities by up to 0.07: not reduced
    assert MODEL_SIDE >= 3 * 256
    # Pillow sizes level 2 of a 1841 px side as 460 where OpenJPEG gives 461: stop at level 1 rather than fail
    assert level_for(1841, 4000, 5) == 1


def test_what_is_not_reduced_loads_as_before(pydicom_data: Path, shared_dicom: Path) -> None:
    for path in (pydicom_data / "RG1_UNCI.dcm",  # uncompressed
                 pydicom_data / "MR2_J2KR.dcm",  # 1024 px JPEG 2000: below the reduction's size
                 shared_dicom / "udacity_nih_test1.dcm"):
        ds = pydicom.dcmread(path)
        assert decode_reduced(ds) is None
        a, b = load_image(path), load_for_model(path)
        assert np.array_equal(a.pixels, b.pixels) and a.meta.notes == b.meta.notes


def test_load_for_model_keeps_the_films_geometry(pydicom_data: Path) -> None:
    path = pydicom_data / "RG1_J2KR.dcm"
    full, reduced = load_image(path), load_for_model(path)
    assert reduced.pixels.shape == full.pixels.shape and reduced.pixels.dtype == full.pixels.dtype
    assert reduced.meta.pixel_spacing == full.meta.pixel_spacing
    assert any("lower resolution" in n for n in reduced.meta.notes)
    assert not any("lower resolution" in n for n in full.meta.notes)


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201
    from cxrviewer.model.inference import Engine
    from cxrviewer.model.weights import bundled_card_path

    return Engine.from_card(bundled_card_path(), threads=1)


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm"])
def test_the_bundled_model_reads_the_reduced_film_alike(pydicom_data: Path, engine, name: str) -> None:  # noqa: ANN001
    path = pydicom_data / name
    a, b = engine.predict(load_image(path)), engine.predict(load_for_model(path))
    assert a.gate.status == b.gate.status and a.image_size == b.image_size
    pa = {f.label: f.probability for f in a.findings}
    pb = {f.label: f.probability for f in b.findings}
    assert pa.keys() == pb.keys() and pa
    assert max(abs(pa[k] - pb[k]) for k in pa) < 0.02  # measured: at most 0.012 on these films
    assert {f.label for f in a.findings if f.positive} == {f.label for f in b.findings if f.positive}
    peaks_a = {f.label: f.cam_peak for f in a.findings if f.cam_peak is not None}
    peaks_b = {f.label: f.cam_peak for f in b.findings if f.cam_peak is not None}
    assert peaks_a.keys() == peaks_b.keys()
    w, h = a.image_size
    for label, (x, y) in peaks_a.items():  # the same place on the film, in the film's own pixels
        assert abs(x - peaks_b[label][0]) <= 0.05 * w and abs(y - peaks_b[label][1]) <= 0.05 * h


def test_a_level_pillow_cannot_read_falls_back_to_the_whole_film(pydicom_data: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile or component with fewer levels than the main header says makes the reduced read fail: the film is
    then decoded in full, not reported as damaged."""
    from cxrviewer.imaging import j2k_reduced

    path = pydicom_data / "RG1_J2KR.dcm"
    monkeypatch.setattr(j2k_reduced, "level_for", lambda width, height, levels: levels + 2)
    assert decode_reduced(pydicom.dcmread(path)) is None
    a, b = load_image(path), load_for_model(path)
    assert np.array_equal(a.pixels, b.pixels) and a.meta.notes == b.meta.notes
