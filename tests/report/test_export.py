"""export_study: every format at once, anonymised JSON/PNG, non-DICOM sources, atomic writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.imaging import load_image, to_display
from cxrviewer.report import export as export_module
from cxrviewer.report import json_report
from cxrviewer.report.errors import ExportError
from cxrviewer.report.export import applicable_formats, export_study, parse_formats
from cxrviewer.report.render import model_display_name, render


@pytest.fixture(scope="module")
def everything(tmp_path_factory, udacity, udacity_prediction, engine) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("all")
    return out, export_study(udacity, udacity_prediction, engine.card, out)


def _png_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return chunks


def test_all_formats_are_written_and_nothing_else(everything) -> None:
    out, paths = everything
    assert sorted(p.name for p in paths) == sorted(
        f"udacity_nih_test1.{ext}" for ext in ("cxr.png", "cxr.json", "cxr.pdf", "sr.dcm", "sc.dcm"))
    assert sorted(out.iterdir()) == sorted(paths)  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        assert p.stat().st_size > 0
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_is_the_contract_for_the_study(everything, udacity, udacity_prediction, engine) -> None:
    _, paths = everything
    doc = json.loads(next(p for p in paths if p.suffix == ".json").read_text(encoding="utf-8"))
    expected = json_report.contract(engine.card, [json_report.result_entry(udacity.path, udacity_prediction)])
    assert doc == expected


def test_png_is_the_rendered_annotated_image_without_text_chunks(everything, udacity, udacity_prediction,
                                                                 engine) -> None:
    _, paths = everything
    png = next(p for p in paths if p.suffix == ".png")
    expected = render(to_display(udacity), udacity_prediction, model_name=model_display_name(engine.card),
                      not_assessed=engine.not_covered)
    assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1], expected)
    assert not {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} & set(_png_chunks(png))


def test_window_and_selected_label_reach_the_png(tmp_path, udacity, udacity_prediction, engine) -> None:
    from cxrviewer.imaging import WindowPreset

    window = WindowPreset(center=80.0, width=60.0)
    second = [f.label for f in udacity_prediction.findings if f.positive][1]
    (png,) = export_study(udacity, udacity_prediction, engine.card, tmp_path, formats="png", window=window,
                          selected_label=second)
    expected = render(to_display(udacity, window), udacity_prediction, label=second,
                      model_name=model_display_name(engine.card), not_assessed=engine.not_covered)
    assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1], expected)


def test_anonymised_png_and_json_carry_no_identifier(tmp_path, rg1, rg1_prediction, engine,
                                                     rg1_identifiers) -> None:
    plain = export_study(rg1, rg1_prediction, engine.card, tmp_path / "plain", formats="png,json")
    anon = export_study(rg1, rg1_prediction, engine.card, tmp_path / "anon", formats="png,json",
                        anonymise=True)
    png_plain = next(p for p in plain if p.suffix == ".png")
    png_anon = next(p for p in anon if p.suffix == ".png")
    # The PNG never holds identifiers: anonymising changes nothing in it.
    assert png_plain.read_bytes() == png_anon.read_bytes()
    text = next(p for p in anon if p.suffix == ".json").read_text(encoding="utf-8")
    assert [k for k, v in rg1_identifiers.items() if v in text] == []
    assert "RG1" not in text and "pydicom" not in text
    doc = json.loads(text)
    assert doc["results"][0]["path"] == "image-1"
    assert doc["results"][0]["findings"]
    plain_json = next(p for p in plain if p.suffix == ".json").read_text(encoding="utf-8")
    assert "pydicom-data_RG1_J2KI" in plain_json


def test_dicom_export_of_a_png_study_is_refused_before_anything_is_written(tmp_path, shared_data,
                                                                           engine) -> None:
    png = next(iter(sorted((shared_data / "nih" / "images").glob("*.png"))))
    image = load_image(png)
    pred = engine.predict(image, force=True)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="no source DICOM identifiers") as info:
        export_study(image, pred, engine.card, out, formats="png,sr")
    assert png.name in str(info.value)
    assert not out.exists()
    assert applicable_formats(image, "png,sr,sc,json") == {"png", "json"}
    formats = applicable_formats(image, "png,sr,json,pdf")
    written = export_study(image, pred, engine.card, out, formats=formats)
    assert sorted(p.suffix for p in written) == [".json", ".pdf", ".png"]


def test_rejected_image_gets_no_sr(tmp_path, engine, dicom_dir) -> None:
    ct = load_image(dicom_dir / "edge_cases" / "udacity_nih_test5.dcm")
    written = export_study(ct, engine.predict(ct), engine.card, tmp_path, formats="sr,json")
    assert [p.suffix for p in written] == [".json"]
    assert json.loads(written[0].read_text())["results"][0]["status"] == "rejected"


def test_formats_are_validated() -> None:
    assert parse_formats("PNG, sr") == {"png", "sr"}
    with pytest.raises(ExportError, match="unknown export format"):
        parse_formats("png,tiff")
    with pytest.raises(ExportError, match="no export format"):
        parse_formats("")


def test_a_target_below_a_file_is_a_clear_error(tmp_path, udacity, udacity_prediction, engine) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create export folder"):
        export_study(udacity, udacity_prediction, engine.card, blocker / "out", formats="png")
    assert sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_folder_is_a_clear_error(tmp_path, udacity, udacity_prediction, engine) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="not writable"):
            export_study(udacity, udacity_prediction, engine.card, folder, formats="png,json")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_refused_write_leaves_nothing_behind(tmp_path, monkeypatch, udacity, udacity_prediction,
                                               engine) -> None:
    """The disk refuses the final rename (as a read-only or full target would): no file, no temporary."""
    calls = []

    def refuse(src, dst):
        calls.append(dst)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ExportError, match="permission denied"):
        export_study(udacity, udacity_prediction, engine.card, tmp_path, formats="png,json,sr")
    assert calls and list(tmp_path.iterdir()) == []


def test_a_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch, udacity, udacity_prediction,
                                                engine) -> None:
    existing = tmp_path / "udacity_nih_test1.cxr.png"
    existing.write_bytes(b"previous export")

    def broken(*args, **kwargs):
        raise RuntimeError("simulated encoder failure")

    monkeypatch.setattr(export_module, "build_sr", broken)
    with pytest.raises(ExportError, match="SR of udacity_nih_test1: export failed .RuntimeError.; nothing was"):
        export_study(udacity, udacity_prediction, engine.card, tmp_path, formats="png,json,sc,sr")
    assert list(tmp_path.iterdir()) == [existing]  # the PNG and SC staged before the failure are gone
    assert existing.read_bytes() == b"previous export"  # and the earlier file is untouched


def test_a_successful_export_replaces_an_earlier_one(tmp_path, udacity, udacity_prediction, engine) -> None:
    target = tmp_path / "udacity_nih_test1.cxr.json"
    target.write_text("old")
    export_study(udacity, udacity_prediction, engine.card, tmp_path, formats="json")
    assert json.loads(target.read_text())["results"][0]["status"] == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_mismatched_inputs_are_refused(tmp_path, udacity, udacity_prediction, engine) -> None:
    with pytest.raises(ExportError, match="1 images but 2 predictions"):
        export_study([udacity], [udacity_prediction, udacity_prediction], engine.card, tmp_path)


def test_the_export_layer_imports_no_qt() -> None:
    code = ("import sys, cxrviewer.report.export, cxrviewer.report.render, cxrviewer.report.json_report; "
            "sys.exit(any(m.split('.')[0] in ('PySide6', 'shiboken6') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_batch_adapter_skips_dicom_formats_for_png_inputs(tmp_path, shared_data, engine, udacity,
                                                          udacity_prediction) -> None:
    from cxrviewer.report import export_prediction

    written = export_prediction(udacity, udacity_prediction, engine, tmp_path / "d", ["png", "dcm"])
    assert sorted(p.name.split(".", 1)[1] for p in written) == ["cxr.png", "sc.dcm", "sr.dcm"]
    png = next(iter(sorted((shared_data / "nih" / "images").glob("*.png"))))
    image = load_image(png)
    written = export_prediction(image, engine.predict(image, force=True), engine, tmp_path / "p", "json,dcm")
    assert [p.suffix for p in written] == [".json"]
