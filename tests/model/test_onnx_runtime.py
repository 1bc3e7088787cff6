"""The ONNX export runs the model: it matches torch on real films, is checked against the sealed card, and the
exporter re-seals the card (issue 22).

Tolerances (logit units unless said): probabilities 1e-4 absolute, maps on the network's grid 1e-3, maps over the
original pixels 1e-3 on the [0, 1] display scale, peaks 1 pixel. Measured on the bundled model
(packaging/onnx_compare.py, 42 films): at most 2.7e-5 (logits) and 3.7e-4 (maps, 2.3e-5 on the display scale).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.model.card import ModelCard, canonical_card_json
from cxrviewer.model.inference import Engine, Prediction
from cxrviewer.model.weights import ModelError, bundled_card_path, save_bundle

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"


def films(shared_data: Path) -> list[Path]:
    """The shared chest DICOMs (one JPEG 2000 CR) and the demo films shipped in resources/demo."""
    dicoms = sorted((shared_data / "dicom").glob("*.dcm"))
    demo = sorted(p for p in DEMO.iterdir() if p.suffix in (".png", ".dcm"))
    assert len(dicoms) >= 4 and len(demo) >= 4
    return dicoms + demo


def copy_bundle(card: Path, folder: Path, *, onnx: bool = True) -> Path:
    """The card, its weights and (unless `onnx` is False) its ONNX file copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = json.loads(card.read_text(encoding="utf-8"))
    names = [doc["weights"]["file"], card.name] + ([doc["onnx"]["file"]] if onnx and doc.get("onnx") else [])
    for name in names:
        shutil.copy2(card.parent / name, folder / name)
    return folder / card.name


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    """The bundled model through ONNX Runtime and through torch (one thread each)."""
    return Engine.bundled(threads=1), Engine.bundled(threads=1, backend="torch")


def test_bundled_model_ships_a_sealed_onnx_export() -> None:
    card = ModelCard.read(bundled_card_path())
    assert card.onnx is not None and card.card_status == "sealed"
    path = bundled_card_path().parent / card.onnx.file
    assert path.is_file() and path.stat().st_size <= 30_000_000  # the bundled files' size limit
    assert card.onnx.parity is not None and card.onnx.parity["max_abs_logit"] <= 1e-3


def test_onnx_runtime_matches_torch_on_real_films(engines: tuple[Engine, Engine], shared_data: Path) -> None:
    ort, ref = engines
    assert (ort.backend, ref.backend) == ("onnxruntime", "torch")
    for path in films(shared_data):
        image = load_image(path)
        a, b = ort.predict(image, force=True), ref.predict(image, force=True)
        assert a.findings and sorted(f.label for f in a.findings) == sorted(f.label for f in b.findings)
        assert a.gate.feature_score is not None and b.gate.feature_score is not None
        assert abs(a.gate.feature_score - b.gate.feature_score) <= 1e-3 * max(1.0, b.gate.feature_score)
        assert (a.gate.status, a.gate.reasons, a.gate.warnings) == (b.gate.status, b.gate.reasons, b.gate.warnings)
        np.testing.assert_allclose(a.cams_logit, b.cams_logit, atol=1e-3, err_msg=path.name)
        for fa in a.findings:
            fb = b.finding(fa.label)
            assert fb is not None
            assert abs(fa.probability - fb.probability) <= 1e-4, (path.name, fa.label)
            assert (fa.positive, fa.triage) == (fb.positive, fb.triage), (path.name, fa.label)
            if fa.cam_peak is not None:
                assert fb.cam_peak is not None
                assert np.hypot(fa.cam_peak[0] - fb.cam_peak[0], fa.cam_peak[1] - fb.cam_peak[1]) <= 1.0
        label = a.findings[0].label  # a full-resolution map, as the viewer and --cams draw it
        heat_a, heat_b = a.cam(label, below_cutoff=True), b.cam(label, below_cutoff=True)
        assert heat_a is not None and heat_b is not None and heat_a.shape == (image.height, image.width)
        assert float(np.abs(heat_a - heat_b).max()) <= 1e-3


def test_full_resolution_maps_are_made_only_when_asked_for(engines: tuple[Engine, Engine],
                                                           shared_data: Path) -> None:
    """Findings and peaks come from the grid; a map over the original pixels is built on `cam` (then cached)."""
    prediction: Prediction = engines[0].predict(load_image(shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm"),
                                                force=True)
    assert prediction.cams_logit.shape[1:] == (16, 16) and not prediction._cache
    label = prediction.labels[0]
    first = prediction.cam(label, below_cutoff=True)
    assert first is not None and list(prediction._cache) == [label]
    assert prediction.cam(label, below_cutoff=True) is first


def test_a_flipped_byte_in_the_onnx_file_is_refused(tmp_path: Path, shared_data: Path) -> None:
    card = copy_bundle(bundled_card_path(), tmp_path)
    onnx = card.parent / ModelCard.read(card).onnx.file  # type: ignore[union-attr]
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    for backend in ("auto", "onnx"):
        with pytest.raises(ModelError) as info:
            Engine.from_card(card, backend=backend)
        message = str(info.value)
        assert onnx.name in message and "SHA-256 does not match" in message and "Traceback" not in message
    # the command line says so in one line and exits 2
    dcm = shared_data / "dicom" / "udacity_nih_test1.dcm"
    run = subprocess.run([sys.executable, "-m", "cxrviewer.predict", "--model", str(card), "-q", str(dcm)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and not run.stdout
    assert onnx.name in run.stderr and "SHA-256" in run.stderr and "Traceback" not in run.stderr
    # torch alone never reads the ONNX file
    assert Engine.from_card(card, backend="torch").backend == "torch"


def test_a_missing_onnx_file_falls_back_to_torch_unless_onnx_is_required(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    card = copy_bundle(bundled_card_path(), tmp_path, onnx=False)
    with caplog.at_level(logging.WARNING):
        engine = Engine.from_card(card, threads=1)
    assert engine.backend == "torch" and "is missing" in caplog.text
    with pytest.raises(ModelError, match="ONNX file .* is missing"):
        Engine.from_card(card, backend="onnx")


# --- the exporter -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained EfficientNet-Lite0 (output stride 16: TensorFlow "same" padding, dilated stages) at 128 px with
    two test-time views (the views go into the graph)."""
    import torch

    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record

    torch.manual_seed(0)
    labels = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
    doc = {"name": "onnx-test", "version": "0", "input_size": 128, "preprocessing": preprocessing_record(128),
           "labels": labels, "thresholds": {lab: 0.5 for lab in labels}, "tta": ["zoom_in", "shift_left"]}
    return save_bundle(build_network("efficientnet_lite0_os16", len(labels)).eval(), doc,
                       tmp_path_factory.mktemp("onnx_model") / "small.json")


def test_export_writes_the_onnx_file_and_reseals_the_card(small_bundle: Path, shared_data: Path) -> None:
    pytest.importorskip("onnx")  # the train extra (dev installs it)
    from cxrviewer.train.onnx_export import export_onnx

    before = ModelCard.read(small_bundle).to_json()
    dcms = sorted((shared_data / "dicom").glob("*.dcm"))[:2]
    path = export_onnx(small_bundle, dcms, threads=1)
    card = ModelCard.read(small_bundle)
    assert card.card_status == "sealed" and card.onnx is not None and path.name == card.onnx.file
    import hashlib

    import onnx

    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.onnx.sha256
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "GridSample" in ops and "Pad" not in ops  # the views in the graph; "same" padding inside the convolutions
    after = card.to_json()
    del after["onnx"], after["seal"], before["seal"]
    assert canonical_card_json(after) == canonical_card_json(before)  # nothing else changed
    ort = Engine.from_card(small_bundle, threads=1)
    ref = Engine.from_card(small_bundle, threads=1, backend="torch")
    assert ort.backend == "onnxruntime"
    image = load_image(shared_data / "dicom" / "udacity_nih_test2.dcm")
    a, b = ort.predict(image, force=True), ref.predict(image, force=True)
    np.testing.assert_allclose([f.probability for f in a.findings],
                               [b.finding(f.label).probability for f in a.findings], atol=1e-4)  # type: ignore[union-attr]
    np.testing.assert_allclose(a.cams_logit, b.cams_logit, atol=1e-3)
    # the model README's integrity lines follow the re-sealed card (export-onnx --readme)
    from cxrviewer.train.model_readme import refresh_integrity_lines

    readme = "# model\n- Weights: `small.safetensors`\n- Card: sealed; SHA-256 `0123` of its canonical content\n"
    refreshed = refresh_integrity_lines(readme, json.loads(small_bundle.read_text(encoding="utf-8")))
    assert f"- ONNX export: `{path.name}`, SHA-256 `{card.onnx.sha256}`" in refreshed
    assert card.card_sha256 in refreshed and "`0123`" not in refreshed
    assert refresh_integrity_lines(refreshed, json.loads(small_bundle.read_text(encoding="utf-8"))) == refreshed
    # writing the bundle again (new weights) drops the export that described the old ones
    save_bundle(ref.network, card, small_bundle)
    assert ModelCard.read(small_bundle).onnx is None
    assert Engine.from_card(small_bundle, threads=1).backend == "torch"


def test_export_refuses_a_modified_card(small_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from cxrviewer.train.onnx_export import export_onnx

    card = copy_bundle(small_bundle, tmp_path)
    doc = json.loads(card.read_text(encoding="utf-8"))
    doc["thresholds"]["Pneumothorax"] = 0.999
    card.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    with pytest.raises(ModelError, match="modified model card"):
        export_onnx(card, [DEMO / "00000032_001.png"], threads=1)
    assert not card.with_suffix(".onnx").exists()
