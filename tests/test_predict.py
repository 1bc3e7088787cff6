"""`cxrviewer-predict` end to end on real files: the JSON contract, CSV, heat-map files, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cxrviewer.imaging import load_image
from cxrviewer.imaging.loader import load_for_model
from cxrviewer.model.cam import heatmap_uint8
from cxrviewer.model.inference import Engine
from cxrviewer.model.network import build_network
from cxrviewer.model.preprocess import preprocessing_record
from cxrviewer.model.weights import save_bundle
from cxrviewer.predict import main

LABELS = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
RESULT_KEYS = {"path", "status", "message", "image_size", "view", "findings"}
FINDING_KEYS = {"label", "probability", "threshold", "positive", "cam_peak"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_network("resnet18", len(LABELS)).eval()
    doc = {"name": "cli-test", "version": "0", "input_size": 128, "preprocessing": preprocessing_record(128),
           "labels": LABELS, "thresholds": {"Cardiomegaly": 0.0, "Pleural Effusion": 0.5, "Pneumothorax": 1.0}}
    return save_bundle(net, doc, tmp_path_factory.mktemp("cli_model") / "cli.json")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A folder with good films (one in a sub-folder), a rejected film and broken files."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "sub").mkdir()
    shutil.copy(shared_data / "nih" / "images" / "00000001_000.png", root / "sub" / "a.png")
    shutil.copy(shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm", root / "cr.dcm")
    shutil.copy(shared_data / "dicom" / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm", root / "tibia.dcm")
    (root / "broken.dcm").write_bytes(b"not a dicom file at all")
    png = (shared_data / "nih" / "images" / "00000002_000.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 3])
    (root / "notes.txt").write_text("not an image: skipped silently")
    return root


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_contract(card: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.json"
    missing = tmp_path / "missing.png"
    rc, _, err = run_main([str(inputs), str(missing), "--model", str(card), "--output", str(output)], capsys)
    assert rc == 0 and "Traceback" not in err
    assert "%|" in err  # progress bar on stderr for more than a few files
    doc = json.loads(output.read_text())
    assert set(doc) == {"model", "operating_points", "results"}
    assert doc["operating_points"]["source"] == "model card"  # no site profile (tests/test_predict_site.py)
    engine = Engine.from_card(card)
    assert doc["model"] == {"name": "cli-test", "sha256": engine.sha256, "labels": LABELS,
                            "card_sha256": engine.card_sha256, "card": "sealed"}
    by_name = {Path(r["path"]).name: r for r in doc["results"]}
    assert set(by_name) == {"a.png", "cr.dcm", "tibia.dcm", "broken.dcm", "truncated.png", "missing.png"}
    assert [Path(r["path"]).name for r in doc["results"]][-1] == "missing.png"  # argument order kept
    for r in doc["results"]:
        assert set(r) == RESULT_KEYS
        assert r["status"] in {"ok", "rejected", "error"} and r["view"] in {"frontal", "lateral", "unknown"}

    for name, size, view in [("a.png", [256, 256], "unknown"), ("cr.dcm", [1841, 1955], "frontal")]:
        r = by_name[name]
        assert r["status"] == "ok" and r["image_size"] == size and r["view"] == view
        assert [f["label"] for f in r["findings"]] != [] and {f["label"] for f in r["findings"]} == set(LABELS)
        probs = [f["probability"] for f in r["findings"]]
        assert probs == sorted(probs, reverse=True)
        # Same numbers as the engine on the same file read as the CLI reads it without exports (the JPEG 2000 CR
        # at a lower resolution level: tests/imaging/test_j2k_reduced.py)
        pred = engine.predict(load_for_model(inputs / ("sub" if name == "a.png" else "") / name))
        for f in r["findings"]:
            assert set(f) == FINDING_KEYS
            assert f["probability"] == pytest.approx(pred.finding(f["label"]).probability, abs=1e-6)
            assert f["positive"] == (f["probability"] >= f["threshold"])
            if f["positive"]:
                x, y = f["cam_peak"]
                assert 0 <= x <= size[0] - 1 and 0 <= y <= size[1] - 1
            else:
                assert f["cam_peak"] is None
        assert by_name[name]["findings"][0]["probability"] > 0

    tibia = by_name["tibia.dcm"]
    assert tibia["status"] == "rejected" and tibia["findings"] == [] and tibia["image_size"] == [1760, 1760]
    assert tibia["message"].startswith("not a chest radiograph")
    assert by_name["broken.dcm"]["status"] == "error" and by_name["broken.dcm"]["message"] == "not a DICOM file"
    assert by_name["truncated.png"]["status"] == "error" and "truncated" in by_name["truncated.png"]["message"]
    assert by_name["missing.png"]["status"] == "error" and "not found" in by_name["missing.png"]["message"]
    for name in ("broken.dcm", "truncated.png", "missing.png"):
        assert by_name[name]["findings"] == [] and by_name[name]["image_size"] is None


def test_exports_read_the_whole_film(card: Path, inputs: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With --export the film itself goes into the reports, so it is decoded in full, and the JSON's numbers are
    the full film's; without, the model-only read's (which differ slightly for a large JPEG 2000 film)."""
    film = inputs / "cr.dcm"
    engine = Engine.from_card(card)
    full, reduced = engine.predict(load_image(film)), engine.predict(load_for_model(film))
    differs = [f.label for f in full.findings if abs(f.probability - reduced.finding(f.label).probability) > 2e-6]
    assert differs  # otherwise this test could not tell the two reads apart
    for extra, expected in (([], reduced), (["--export", str(tmp_path / "reports"), "--formats", "json"], full)):
        rc, out, err = run_main([str(film), "--model", str(card), *extra], capsys)
        assert rc == 0 and "Traceback" not in err
        (result,) = json.loads(out)["results"]
        for f in result["findings"]:
            assert f["probability"] == pytest.approx(expected.finding(f["label"]).probability, abs=1e-6)


def test_output_is_deterministic(card: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(inputs / "sub"), str(inputs / "cr.dcm"), "--model", str(card)]
    first = run_main(args, capsys)
    second = run_main(args, capsys)
    assert first[0] == second[0] == 0 and first[1] == second[1]
    assert "%|" not in first[2]  # no progress bar for two files


def test_force_runs_rejected_image(card: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main([str(inputs / "tibia.dcm"), "--model", str(card), "--force"], capsys)
    (r,) = json.loads(out)["results"]
    assert rc == 0 and r["status"] == "ok" and len(r["findings"]) == len(LABELS)
    assert r["message"].startswith("gate overridden: not a chest radiograph")


def test_csv(card: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main([str(inputs), "--model", str(card), "--format", "csv", "-q"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0
    assert list(rows[0]) == ["path", "status", "message", "width", "height", "view", "label", "probability",
                             "threshold", "positive", "cam_x", "cam_y"]
    ok = [r for r in rows if Path(r["path"]).name == "a.png"]
    assert sorted(r["label"] for r in ok) == sorted(LABELS) and all(r["width"] == "256" for r in ok)
    assert all((r["cam_x"] == "") == (r["positive"] == "0") for r in ok)
    (tibia,) = [r for r in rows if Path(r["path"]).name == "tibia.dcm"]
    assert tibia["status"] == "rejected" and tibia["label"] == ""
    assert len(rows) == 2 * len(LABELS) + 3  # two ok images + tibia + two broken files


def test_cam_files(card: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cams = tmp_path / "cams"
    rc, _, _ = run_main([str(inputs), "--model", str(card), "--cams", str(cams), "-q"], capsys)
    assert rc == 0
    assert sorted(p.name for p in cams.iterdir()) == ["cr", "sub__a"]  # ok images only
    engine = Engine.from_card(card)
    pred = engine.predict(load_image(inputs / "sub" / "a.png"))
    for label in LABELS:
        png = cv2.imread(str(cams / "sub__a" / f"{label.replace(' ', '_')}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == (256, 256)
        np.testing.assert_array_equal(png, heatmap_uint8(pred.cam(label, below_cutoff=True)))
    cr = cv2.imread(str(cams / "cr" / "Cardiomegaly.png"), cv2.IMREAD_UNCHANGED)
    assert cr.shape == (1955, 1841)


def test_usage_errors(card: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    good = str(inputs / "sub")
    rc, out, err = run_main([good, "--model", str(tmp_path / "nope.json")], capsys)
    assert rc == 2 and out == "" and "model card not found" in err and "Traceback" not in err
    rc, _, err = run_main([good, "--model", str(card), "--output", str(tmp_path / "no" / "dir" / "x.json")],
                          capsys)
    assert rc == 2 and "does not exist" in err
    rc, _, err = run_main([good, "--model", str(card), "--export", str(tmp_path / "r"), "--formats", "gif"],
                          capsys)
    assert rc == 2 and "gif" in err
    with pytest.raises(SystemExit) as exc:  # argparse: no path given
        main(["--model", str(card)])
    assert exc.value.code == 2
    capsys.readouterr()

    import cxrviewer.model.inference as inference
    from cxrviewer.model.weights import ModelError

    def no_model() -> Path:
        raise ModelError("no bundled model found in the installation (models/*.json)")

    monkeypatch.setattr(inference, "bundled_card_path", no_model)
    rc, _, err = run_main([good], capsys)
    assert rc == 2 and "no bundled model" in err and "--model" in err


def test_tampered_model_exit_code(card: Path, inputs: Path, tmp_path: Path) -> None:
    """Through the real console entry: a modified weights file is refused with status 2, no traceback."""
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(card, bad / card.name)
    weights = card.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    (bad / weights.name).write_bytes(bytes(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cxrviewer.predict", str(inputs / "sub" / "a.png"), "--threads", "1"]
    proc = subprocess.run([*cmd, "--model", str(bad / card.name)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and "SHA-256" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
