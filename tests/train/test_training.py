"""Training end to end on real shared images: learning, masking, splits, resume, export, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrviewer.model.weights import load_bundle
from cxrviewer.train.cli import main as train_main
from cxrviewer.train.datasets import load_spec
from cxrviewer.train.loop import masked_bce
from cxrviewer.train.splits import patient_folds


def _fit_args(spec: str, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["fit", "--dataset", spec, "--out", str(out), "--cache-dir", str(cache), "--input-size", "64",
            "--batch-size", "32", "--workers", "0", "--folds", "4", "--quiet", "--lr", "2e-3", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data: Path) -> Path:
    """A small model trained on 320 Kermany images (64 px, 4 epochs)."""
    import csv
    tmp = tmp_path_factory.mktemp("fit")
    with open(shared_data / "kermany" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = [r for r in rows if r["NORMAL"] == "1"][:160] + [r for r in rows if r["PNEUMONIA"] == "1"][:160]
    from cxrviewer.train.datasets import write_rows
    csv_path = write_rows(tmp / "kermany.csv", subset)
    spec = f"plain,csv={csv_path},root={shared_data},mapping={shared_data / 'label_map_to_chexpert.csv'},name=kermany"
    assert train_main(_fit_args(spec, tmp / "run", tmp / "cache", "--epochs", "4", "--labels",
                                "No Finding,Pneumonia")) == 0
    (tmp / "spec.txt").write_text(spec)
    return tmp


def test_model_learns_pneumonia_vs_normal(trained: Path) -> None:
    """Validation AUROC (patient-disjoint) clearly above chance: fails if labels carried no signal."""
    card = json.loads((trained / "run" / "model.json").read_text())
    auroc = card["validation"]["per_label"]["Pneumonia"]["auroc"]
    assert auroc is not None and auroc > 0.8, auroc
    log = [json.loads(line) for line in (trained / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all("val_auroc" in r for r in log)


def test_export_round_trip(trained: Path) -> None:
    bundle = load_bundle(trained / "run" / "model.json")
    ck = torch.load(trained / "run" / "best.pt", weights_only=True)
    assert bundle.labels == ck["labels"] == ["No Finding", "Pneumonia"]
    card = bundle.card
    assert card.preprocessing.size == 64 and card.preprocessing.method == "letterbox"
    assert set(card.thresholds) == set(bundle.labels)
    assert "Fracture" in card.not_covered and "Cardiomegaly" in card.not_covered
    assert card.datasets[0].license == "CC BY 4.0"
    from cxrviewer.model.network import build_network
    ref = build_network(ck["arch"], 2)
    ref.load_state_dict(ck["model"])
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(torch.sigmoid(bundle.network(x)).numpy(), torch.sigmoid(ref.eval()(x)).numpy(),
                                   atol=5e-3)


def test_resume_continues_from_checkpoint(trained: Path, shared_data: Path) -> None:
    spec = (trained / "spec.txt").read_text()
    out = trained / "resume"
    args = _fit_args(spec, out, trained / "cache", "--labels", "No Finding,Pneumonia")
    assert train_main([*args, "--epochs", "1"]) == 0
    first = torch.load(out / "checkpoint.pt", weights_only=True)
    assert first["epoch"] == 1
    assert train_main([*args, "--epochs", "2", "--resume"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # epoch 1 was not trained again
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_patient_split_disjoint(shared_data: Path) -> None:
    nih = shared_data / "nih"
    rep = load_spec(f"nih,csv={nih / 'Data_Entry_2017_subset.csv'},images={nih / 'images'}")
    folds = patient_folds(rep.samples, 5, seed=3)
    by_patient: dict[str, set[int]] = {}
    for s, f in zip(rep.samples, folds, strict=True):
        by_patient.setdefault(s.patient_id, set()).add(int(f))
    assert all(len(v) == 1 for v in by_patient.values())
    sizes = np.bincount(folds)
    assert sizes.min() > 0.8 * sizes.max()
    assert np.array_equal(folds, patient_folds(rep.samples, 5, seed=3))
    assert not np.array_equal(folds, patient_folds(rep.samples, 5, seed=4))


def test_masked_labels_do_not_contribute() -> None:
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    pw = torch.ones(2)
    full = masked_bce(logits, target, torch.ones(2, 2), pw)
    only_row2 = masked_bce(logits, target, torch.tensor([[0.0, 0.0], [1.0, 1.0]]), pw)
    assert only_row2 == pytest.approx(float(np.log(2)), rel=1e-5)  # the two wrong confident logits are ignored
    assert full > only_row2


@pytest.mark.timeout(300)
def test_ddp_two_processes_gloo(trained: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): trains and exports exactly once."""
    spec = (trained / "spec.txt").read_text()
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cxrviewer.train.cli", *_fit_args(spec, out, trained / "cache", "--epochs", "1", "--labels",
                                                  "No Finding,Pneumonia", "--device", "cpu")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "model.json").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1
    load_bundle(out / "model.json")


def test_cross_validation_and_bundles(trained: Path, tmp_path: Path) -> None:
    """`cv` runs every patient-level fold; `bundle` exports a fold model or an all-data model with the spread."""
    spec = (trained / "spec.txt").read_text()
    cv = tmp_path / "cv"
    args = ["cv", "--dataset", spec, "--out", str(cv), "--cache-dir", str(trained / "cache"), "--input-size", "64",
            "--batch-size", "32", "--workers", "0", "--folds", "2", "--epochs", "1", "--quiet",
            "--labels", "No Finding,Pneumonia"]
    assert train_main(args) == 0
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary["folds"] == 2 and summary["per_label"]["Pneumonia"]["auroc"]["folds"] == 2
    vals = [set(json.loads((cv / f"fold{k}" / "split.json").read_text())["val"]) for k in range(2)]
    assert not vals[0] & vals[1]  # every image is validated once, by the model that did not train on it

    readme = tmp_path / "README.md"
    assert train_main(["bundle", "--cv", str(cv), "--fold", "1", "--out", str(tmp_path / "f" / "m.json"),
                       "--readme", str(readme)]) == 0
    card = load_bundle(tmp_path / "f" / "m.json").card
    assert card.training is not None and card.validation is not None and card.validation.cross_validation
    assert card.training["fold"] == 1 and card.validation.cross_validation["folds"] == 2
    assert "Not for diagnostic use" in readme.read_text() and "Pneumonia" in readme.read_text()

    assert train_main(["bundle", "--cv", str(cv), "--run", str(trained / "run"),
                       "--out", str(tmp_path / "a" / "m.json")]) == 0
    card = load_bundle(tmp_path / "a" / "m.json").card
    assert card.training is not None and card.training["all_data"] is True
    assert card.validation is not None
    n_val = card.validation.per_label["Pneumonia"]
    assert n_val.n_pos is not None and n_val.n_neg is not None
    assert n_val.n_pos + n_val.n_neg == sum(len(v) for v in vals)  # out-of-fold: both folds pooled


def test_ensemble_bundle_is_the_mean_of_its_members(trained: Path, tmp_path: Path) -> None:
    """Two seeds bundled as one network: logits and CAMs are the members' mean; validation on mean OOF logits."""
    from cxrviewer.model.network import split_ensemble
    from cxrviewer.train.bundle_writer import load_best

    spec = (trained / "spec.txt").read_text()
    common = ["--dataset", spec, "--cache-dir", str(trained / "cache"), "--input-size", "64", "--batch-size", "32",
              "--workers", "0", "--epochs", "1", "--quiet", "--labels", "No Finding,Pneumonia"]
    for seed in ("0", "1"):
        assert train_main(["cv", *common, "--folds", "2", "--seed", seed, "--out", str(tmp_path / f"cv{seed}")]) == 0
        assert train_main(["fit", *common, "--folds", "1", "--seed", seed, "--out", str(tmp_path / f"all{seed}")]) == 0
    out = tmp_path / "e" / "m.json"
    assert train_main(["bundle", "--cv", str(tmp_path / "cv0"), "--cv", str(tmp_path / "cv1"), "--run",
                       str(tmp_path / "all0"), "--run", str(tmp_path / "all1"), "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert split_ensemble(bundle.card.architecture)[1] == 2 and len(bundle.card.ensemble_of) == 2
    members = [load_best(tmp_path / f"all{seed}")[0] for seed in ("0", "1")]
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        logits, cams = bundle.network(x, with_cams=True)
        parts = [m(x, with_cams=True) for m in members]
    assert torch.allclose(logits, (parts[0][0] + parts[1][0]) / 2, atol=2e-2)  # fp16 weights in the bundle
    assert torch.allclose(cams, (parts[0][1] + parts[1][1]) / 2, atol=5e-2)
    rep = bundle.card.validation.per_label["Pneumonia"]
    assert rep.n_pos + rep.n_neg == 320  # every image is out-of-fold in both cross-validation runs


def test_evaluate_reports_metrics_and_plots(trained: Path, tmp_path: Path) -> None:
    spec = (trained / "spec.txt").read_text()
    out = tmp_path / "eval"
    assert train_main(["evaluate", "--model", str(trained / "run" / "model.json"), "--dataset", spec,
                       "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())
    pn = rep["per_label"]["Pneumonia"]
    assert pn["n_pos"] == 160 and pn["n_neg"] == 160 and pn["auroc"] > 0.8
    assert 0.0 <= pn["ece"] <= 1.0 and pn["sensitivity"] is not None and pn["misclassification"] is not None
    assert (out / "roc_Pneumonia.png").stat().st_size > 1000
    assert (out / "reliability_Pneumonia.png").stat().st_size > 1000


def test_single_class_label_reports_na() -> None:
    from cxrviewer.train.metrics import fmt, label_report
    y, p, m = np.zeros(10), np.linspace(0, 1, 10), np.ones(10)
    rep = label_report(y, p, m)
    assert rep["auroc"] is None and fmt(rep["auroc"]) == "n/a" and rep["n_neg"] == 10


def test_ensemble_averages_checkpoints(trained: Path, tmp_path: Path) -> None:
    a = torch.load(trained / "run" / "best.pt", weights_only=True)
    b = dict(a, model={k: (v * 3 if v.is_floating_point() else v) for k, v in a["model"].items()})
    torch.save(b, tmp_path / "b.pt")
    assert train_main(["ensemble", str(trained / "run" / "best.pt"), str(tmp_path / "b.pt"),
                       "--out", str(tmp_path / "ens")]) == 0
    avg = torch.load(tmp_path / "ens" / "best.pt", weights_only=True)
    key = "classifier.weight"
    torch.testing.assert_close(avg["model"][key], 2 * a["model"][key])
    other = dict(a, labels=["Pneumonia"])
    torch.save(other, tmp_path / "c.pt")
    assert train_main(["ensemble", str(trained / "run" / "best.pt"), str(tmp_path / "c.pt"),
                       "--out", str(tmp_path / "bad")]) == 2
