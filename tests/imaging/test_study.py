"""Folder scanning and grouping into Study -> Series -> images, on real files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from cxrviewer.imaging import Flag, ImageLoadError
from cxrviewer.imaging import dicom as dicom_module
from cxrviewer.imaging import raster as raster_module
from cxrviewer.imaging.study import scan_paths

# pydicom warns (UserWarning) about the deliberately odd files used here; that is not our output.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

NIH_PNGS = ["nih/images/00000001_000.png", "nih/images/00000002_000.png"]


@pytest.fixture
def mixed_folder(tmp_path: Path, shared_data: Path, pydicom_data: Path) -> Path:
    """Two DICOM studies (one with two series, one file without extension), PNGs, junk and a broken file."""
    root = tmp_path / "drop"
    (root / "sub" / "deeper").mkdir(parents=True)
    src = pydicom.dcmread(shared_data / "dicom" / "udacity_nih_test1.dcm")
    study_uid, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    for i, (series, number, name) in enumerate(
        [(series_a, 1, "a1.dcm"), (series_a, 1, "sub/a2"), (series_b, 2, "sub/deeper/b1.dcm")]
    ):
        src.StudyInstanceUID, src.SeriesInstanceUID, src.SeriesNumber = study_uid, series, number
        src.SOPInstanceUID, src.InstanceNumber = generate_uid(), i + 1
        src.save_as(root / name)
    shutil.copy(pydicom_data / "RG1_J2KI.dcm", root / "sub" / "rg1.dcm")
    for png in NIH_PNGS:
        shutil.copy(shared_data / png, root / Path(png).name)
    (root / "readme.txt").write_text("a text file, to be skipped silently\n")
    (root / "sub" / "data.bin").write_bytes(bytes(range(7, 256)) * 2)
    (root / "DICOMDIR").write_bytes((shared_data / "dicom" / "udacity_nih_test2.dcm").read_bytes())
    (root / ".hidden.dcm").write_bytes(b"junk")
    (root / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    (root / "sub" / "cut_header").write_bytes((root / "a1.dcm").read_bytes()[:700])
    os.symlink(root, root / "sub" / "loop")  # a symlink loop must not be followed forever
    return root


def test_mixed_folder_groups_and_reports(mixed_folder: Path) -> None:
    result = scan_paths([mixed_folder])
    assert sorted(Path(e.path).name for e in result.errors) == ["broken.dcm", "cut_header"]
    assert all(isinstance(e, ImageLoadError) and e.reason for e in result.errors)
    assert result.image_count == 6  # 3 + 1 DICOM, 2 PNG

    dicom_studies = [s for s in result.studies if not s.is_raster]
    raster_studies = [s for s in result.studies if s.is_raster]
    assert sorted(s.display_key for s in raster_studies) == sorted(Path(p).name for p in NIH_PNGS)
    assert all(len(s.series) == 1 and len(s.images) == 1 for s in raster_studies)

    assert len(dicom_studies) == 2
    udacity = next(s for s in dicom_studies if len(s.images) == 3)
    assert [s.number for s in udacity.series] == [1, 2]
    assert [r.path.name for r in udacity.series[0].images] == ["a1.dcm", "a2"]
    assert [r.path.name for r in udacity.series[1].images] == ["b1.dcm"]
    assert udacity.modality == "DX" and udacity.description == "No Finding"
    assert udacity.uid and udacity.key == udacity.uid
    assert all(r.meta.view_position == "PA" and r.view == "frontal" for r in udacity.images)

    rg1 = next(s for s in dicom_studies if s is not udacity)
    ref = rg1.images[0]
    assert (ref.width, ref.height) == (1841, 1955)
    assert rg1.study_date == "20040826" and rg1.display_key.startswith("2004-08-26 · CR")
    assert ref.load().pixels.shape == (1955, 1841)


def test_scan_decodes_no_pixels(mixed_folder: Path, monkeypatch) -> None:
    monkeypatch.setattr(dicom_module, "pixel_array", lambda *a, **k: pytest.fail("scan decoded DICOM pixels"))
    monkeypatch.setattr(raster_module.cv2, "imdecode", lambda *a: pytest.fail("scan decoded raster pixels"))
    assert scan_paths([mixed_folder]).image_count == 6


def test_scan_carries_header_flags(shared_data: Path) -> None:
    result = scan_paths([shared_data / "dicom"])
    assert result.errors == []
    flags = {ref.path.name: {f.kind for f in ref.flags} for s in result.studies for ref in s.images}
    assert flags["udacity_nih_test4.dcm"] == {Flag.BODY_PART}
    assert flags["udacity_nih_test5.dcm"] == {Flag.MODALITY}
    assert flags["udacity_nih_test6.dcm"] == {Flag.CONTRADICTORY}
    assert flags["pydicom-data_RG3_J2KI_tibia.dcm"] == {Flag.BODY_PART}
    assert flags["udacity_nih_test1.dcm"] == set()
    assert len(flags) == 9


def test_explicit_paths(tmp_path: Path, shared_data: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("x")
    png = shared_data / NIH_PNGS[0]
    result = scan_paths([png, text, tmp_path / "gone.dcm", png])
    assert result.image_count == 1  # the same file named twice is listed once
    assert sorted(Path(e.path).name for e in result.errors) == ["gone.dcm", "notes.txt"]
