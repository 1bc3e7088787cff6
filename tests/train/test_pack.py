"""`cxrviewer-train pack` and training from a pack: same pixels, labels and boxes as the sources, no source files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.train.cache import encode_square
from cxrviewer.train.cli import main as train_main
from cxrviewer.train.pack import read_pack


@pytest.fixture(scope="module")
def packed(tmp_path_factory, shared_data: Path) -> tuple[Path, Path]:
    """A lossless pack of 80 NIH images (some with radiologist boxes) and 40 Kermany images at 64 px."""
    import csv

    from cxrviewer.train.datasets import write_rows
    tmp = tmp_path_factory.mktemp("pack")
    with open(shared_data / "nih" / "bbox.csv", newline="") as fh:
        boxed = {Path(r["image"]).name for r in csv.DictReader(fh)}
    with open(shared_data / "nih" / "Data_Entry_2017_subset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pick = [r for r in rows if r["Image Index"] in boxed][:30] + [r for r in rows if r["Image Index"] not in boxed][:50]
    nih_csv = write_rows(tmp / "nih.csv", pick)
    with open(shared_data / "kermany" / "labels.csv", newline="") as fh:
        krows = list(csv.DictReader(fh))
    kcsv = write_rows(tmp / "k.csv", [r for r in krows if r["NORMAL"] == "1"][:20]
                      + [r for r in krows if r["PNEUMONIA"] == "1"][:20])
    out = tmp / "data.npz"
    args = ["pack", "--dataset", f"nih,csv={nih_csv},images={shared_data / 'nih' / 'images'}",
            "--dataset", f"plain,csv={kcsv},root={shared_data},mapping={shared_data / 'label_map_to_chexpert.csv'},"
            "name=kermany", "--bbox", str(shared_data / "nih" / "bbox.csv"), "--bbox-root", str(shared_data),
            "--input-size", "64", "--cache-dir", str(tmp / "cache"), "--quiet", "--out", str(out)]
    assert train_main(args) == 0
    return out, tmp


def test_pack_holds_the_apps_preprocessed_pixels_labels_and_boxes(packed, shared_data: Path) -> None:
    out, _ = packed
    pack = read_pack(out)
    assert len(pack.samples) == 120 and all(pack.ok)
    for i in (0, 45, 100):  # lossless: exactly the app's letterboxed square
        assert np.array_equal(pack.squares[i], encode_square(pack.samples[i].path, 64)[0])
    assert {s.dataset for s in pack.samples} == {"nih", "kermany"}
    assert len(pack.boxes) >= 30
    # boxes keep the CSV's original-pixel coordinates (NIH files are 256 px)
    import csv
    with open(shared_data / "nih" / "bbox.csv", newline="") as fh:
        first = {(Path(r["image"]).name, round(float(r["x"]), 3)) for r in csv.DictReader(fh)}
    names = {Path(str(s.path)).name for s in pack.samples}
    packed_boxes = {(Path(str(pack.samples[int(b[0])].path)).name, round(float(b[2]), 3)) for b in pack.boxes}
    assert packed_boxes == {b for b in first if b[0] in names}
    # training boxes land in model-input pixels (64 / 256 of the original)
    rows = np.arange(len(pack.samples))
    labels = [KNOWN_LABELS[int(b[1])] for b in pack.boxes]
    tb = pack.training_boxes(rows, sorted(set(labels)), 64)
    r, _, x, y, w, h = pack.boxes[0]
    assert np.allclose(tb[int(r)][0, 1:3], [x * 0.25, y * 0.25], atol=1e-4)


def test_fit_from_a_pack_needs_no_source_files(packed, tmp_path: Path) -> None:
    out, _ = packed
    run = tmp_path / "run"
    assert train_main(["fit", "--packed", str(out), "--out", str(run), "--input-size", "64", "--batch-size", "16",
                       "--epochs", "1", "--folds", "3", "--workers", "0", "--quiet", "--labels",
                       "No Finding,Pneumonia,Atelectasis", "--box-supervision", "--arch", "resnet18_os16"]) == 0
    card = json.loads((run / "model.json").read_text())
    assert card["operating_policy"]["specificity_target"] >= 0.8
    assert set(card["calibration"]) == {"No Finding", "Pneumonia", "Atelectasis"}
    assert card["training"]["learning_curve"][0]["epoch"] == 1
    assert card["validation"]["pointing_game"]["total"]["n"] > 0  # held-out boxes scored from the pack


def test_pack_refuses_another_vocabulary(packed, tmp_path: Path) -> None:
    out, _ = packed
    with np.load(out) as z:
        data = dict(z)
    data["labels"] = np.array(["A", "B"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    with pytest.raises(ValueError, match="label vocabulary"):
        read_pack(bad)


def test_thorax_pack_crops_like_the_app_and_moves_boxes_with_the_crop(packed, shared_data: Path,
                                                                      tmp_path: Path) -> None:
    """`pack --crop thorax`: the localiser's box per image, squares as the app makes them, a card that says so."""
    from cxrviewer.imaging import load_image, model_input
    from cxrviewer.imaging.anatomy import find_lung_fields
    _, src = packed
    out = tmp_path / "thorax.npz"
    assert train_main(["pack", "--dataset", f"nih,csv={src / 'nih.csv'},images={shared_data / 'nih' / 'images'}",
                       "--bbox", str(shared_data / "nih" / "bbox.csv"), "--bbox-root", str(shared_data),
                       "--input-size", "64", "--cache-dir", str(tmp_path / "cache"), "--quiet", "--crop", "thorax",
                       "--out", str(out)]) == 0
    pack = read_pack(out)
    assert pack.crop == "thorax"
    row = int(pack.boxes[0][0])
    x0, y0, x1, y1 = find_lung_fields(model_input(load_image(pack.samples[row].path))).box
    lb = pack.letterbox(row, 64)
    assert lb.region == (x0, y0, x1 - x0, y1 - y0) and lb.cropped
    assert np.array_equal(pack.squares[row], encode_square(pack.samples[row].path, 64, "thorax")[0])
    _, li, x, y, w, h = pack.boxes[0]
    tb = pack.training_boxes(np.array([row]), [KNOWN_LABELS[int(li)]], 64)
    assert np.allclose(tb[row][0, 1:3], [(x - x0) * lb.scale + lb.pad_x, (y - y0) * lb.scale + lb.pad_y], atol=1e-4)
    run = tmp_path / "run"
    assert train_main(["fit", "--packed", str(out), "--out", str(run), "--input-size", "64", "--batch-size", "16",
                       "--epochs", "1", "--folds", "1", "--workers", "0", "--quiet", "--labels",
                       "No Finding,Atelectasis", "--arch", "resnet18_os16"]) == 0
    card = json.loads((run / "model.json").read_text())
    assert card["preprocessing"]["crop"] == "thorax" and "thorax crop" in card["description"]


def test_cv_runs_only_the_folds_it_is_given(packed, tmp_path: Path) -> None:
    """`cv --only-folds`: folds can run in parallel processes; each process summarises what is finished."""
    out, _ = packed
    root = tmp_path / "cv"
    common = ["cv", "--packed", str(out), "--out", str(root), "--input-size", "64", "--batch-size", "16",
              "--epochs", "1", "--folds", "3", "--workers", "0", "--quiet", "--labels", "No Finding,Atelectasis",
              "--arch", "resnet18_os16"]
    assert train_main([*common, "--only-folds", "1"]) == 0
    assert (root / "fold1" / "done.json").is_file() and not (root / "fold0").exists()
    assert json.loads((root / "cv_summary.json").read_text())["folds"] == 1
    assert train_main([*common, "--only-folds", "0,2"]) == 0
    assert json.loads((root / "cv_summary.json").read_text())["folds"] == 3
    # Held-out maps saved per fold give the same pointing-game hits as the folds' own scoring, and a run
    # averaged with itself scores as itself (the ensemble's mean map).
    from cxrviewer.train.heldout import ensemble_pointing, write_heldout
    for k in range(3):
        write_heldout(root / f"fold{k}", out)
    labels = ["No Finding", "Atelectasis"]
    single = ensemble_pointing([root], labels)
    folds = [json.loads((root / f"fold{k}" / "done.json").read_text())["pointing_game"] for k in range(3)]
    assert single is not None and single["total"]["n"] == sum(f["total"]["n"] for f in folds if f) > 0
    assert single["total"]["cam"] == sum(f["total"]["cam"] for f in folds if f)
    assert ensemble_pointing([root, root], labels)["total"] == single["total"]
