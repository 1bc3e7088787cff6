"""The recipe search behind the bundled model, as run on one GPU machine (H200, 16 cores) from a pack file.

    python models/search/gpu_search.py PACK OUT_DIR [--budget SECONDS]

Runs patient-level 3-fold cross-validation of the recipes in parallel (`cxrviewer-train cv --packed`) beside
the all-data fit of the first, then, for every fold model, held-out predictions under each test-time-augmentation
view and the CAMs of the held-out images with radiologist boxes. Everything a later CPU step needs (calibration,
operating points, ensembles, TTA, pointing game with anatomy weighting) is written under OUT_DIR; the all-data
weights are saved as float16 safetensors.

As run for the bundled model (stop 13, one H200, 16 cores): PACK = `cxrviewer-train pack ... --input-size 256
--quality 72 --max-images kermany=1400`; the ImageNet weights travelled as a float16 copy of the package's file
(INIT below) because the machine receives at most 64 MiB and has no registry access; `--budget 320` stopped
fold 2 of both CV runs after epoch 16 and 18 of 20. The from-scratch comparison ("scratch" in the first call)
used RECIPES_SCRATCH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

LABELS = ("No Finding,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,"
          "Pneumothorax,Pleural Effusion,Pleural Other")
COMMON = ["--input-size", "256", "--batch-size", "32", "--labels", LABELS, "--box-supervision", "--box-loss",
          "cells", "--box-weight", "0.3", "--quiet", "--workers", "4"]
#: name -> extra arguments. "scratch" repeats the previous release's recipe (from scratch) at 256 px.
INIT = ".gpu/lite0_imagenet_fp16.safetensors"
RECIPES_SCRATCH = {"scratch": ["--arch", "resnet18_os16", "--init", "scratch", "--lr", "1e-3", "--epochs", "20",
                               "--patience", "6"]}
RECIPES = {
    "lite0": ["--arch", "efficientnet_lite0_os16", "--init", INIT, "--lr", "5e-4", "--epochs", "20",
              "--patience", "6"],
    "lite0s1": ["--arch", "efficientnet_lite0_os16", "--init", INIT, "--lr", "5e-4", "--epochs", "20",
                "--patience", "6", "--seed", "1"],
}
FINAL = {"lite0": 20, "lite0s1": 20}  # all-data fits: epochs set from the CV best epochs


def _run(cmd: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by the OS when the child ends
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


def _best_epochs(cv_dir: Path) -> list[int]:
    return [json.loads((cv_dir / f"fold{k}" / "done.json").read_text()).get("best_epoch") or 0
            for k in range(3) if (cv_dir / f"fold{k}" / "done.json").is_file()]


@torch.inference_mode()
def held_out_outputs(run: Path, pack_path: Path, out: Path) -> None:
    """TTA probabilities of the held-out images and CAMs of those with boxes, for one fold model."""
    from cxrviewer.model.preprocess import normalize
    from cxrviewer.model.tta import VIEWS, view_batch
    from cxrviewer.train.export import load_best
    from cxrviewer.train.pack import read_pack

    net, ck = load_best(run)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(dev).eval()
    pack = read_pack(pack_path)
    rows = {str(s.path): i for i, s in enumerate(pack.samples)}
    val = [rows[p] for p in json.loads((run / "split.json").read_text())["val"]]
    squares = pack.squares_at(ck["input_size"])
    views = list(VIEWS)
    probs = np.zeros((len(views), len(val), len(ck["labels"])), np.float32)
    boxed = sorted({int(r) for r in pack.boxes[:, 0]} & set(val))
    cams = {}
    for start in range(0, len(val), 128):
        idx = val[start:start + 128]
        x = torch.from_numpy(np.stack([normalize(squares[i].astype(np.float32) / 255.0)[None] for i in idx])).to(dev)
        logits = net(view_batch(x, views)).float().view(len(views), len(idx), -1)
        probs[:, start:start + len(idx)] = torch.sigmoid(logits).cpu().numpy()
        _, fmap = net.forward_features(x)
        maps = net.cams(fmap).float().cpu().numpy()
        for j, i in enumerate(idx):
            if i in boxed:
                cams[i] = maps[j].astype(np.float16)
    np.savez_compressed(out, views=np.array(views), val_rows=np.array(val), probs=probs,
                        cam_rows=np.array(sorted(cams)), cams=np.stack([cams[i] for i in sorted(cams)]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pack")
    ap.add_argument("out")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; later stages are skipped past it")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    a = ap.parse_args()
    t0 = time.time()
    out = Path(a.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "cxrviewer.train.cli"]
    names = a.recipes.split(",")
    procs = {n: _run([*base, "cv", "--packed", a.pack, *COMMON, "--folds", "3", *RECIPES[n], "--max-train",
                      "kermany=1000", "--out", str(runs / f"cv_{n}")], out / f"cv_{n}.log") for n in names}
    finals: dict[str, subprocess.Popen] = {}
    for n in names[:1]:  # the all-data fit of the main recipe only
        args = RECIPES[n]
        args = [*args[: args.index("--epochs")], *args[args.index("--epochs") + 2:]]
        finals[n] = _run([*base, "fit", "--packed", a.pack, *COMMON, "--folds", "1", *args, "--epochs",
                          str(FINAL[n]), "--out", str(runs / f"all_{n}")], out / f"all_{n}.log")
    while procs or finals:
        time.sleep(2)
        for n, p in list(procs.items()):
            if p.poll() is not None:
                print(f"[{time.time() - t0:.0f}s] cv {n} exit {p.returncode}", flush=True)
                del procs[n]
                if False:
                    best = _best_epochs(runs / f"cv_{n}")
                    epochs = max(6, int(round(np.mean(best) * 1.1))) if best else FINAL[n]
                    args = RECIPES[n]
                    args = [*args[: args.index("--epochs")], *args[args.index("--epochs") + 2:]]
                    cmd = [*base, "fit", "--packed", a.pack, *COMMON, "--folds", "1", *args, "--epochs", str(epochs),
                           "--out", str(runs / f"all_{n}")]
                    finals[n] = _run(cmd, out / f"all_{n}.log")
        for n, p in list(finals.items()):
            if p.poll() is not None:
                print(f"[{time.time() - t0:.0f}s] all-data {n} exit {p.returncode}", flush=True)
                del finals[n]
        if time.time() - t0 > a.budget:
            for p in [*procs.values(), *finals.values()]:
                p.kill()
            print("budget reached: remaining runs stopped", flush=True)
            break
    for n in names:
        for k in range(3):
            run = runs / f"cv_{n}" / f"fold{k}"
            if (run / "best.pt").is_file():
                try:
                    held_out_outputs(run, Path(a.pack), run / "heldout.npz")
                except Exception as exc:  # noqa: BLE001 - keep what the other folds produced
                    print(f"held-out outputs {run}: {exc}", flush=True)
        final = runs / f"all_{n}" / "best.pt"
        if final.is_file():
            ck = torch.load(final, map_location="cpu", weights_only=True)
            save_file({k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()},
                      str(out / f"all_{n}.safetensors"),
                      metadata={"arch": ck["arch"], "labels": json.dumps(ck["labels"]),
                                "input_size": str(ck["input_size"]), "epoch": str(ck["epoch"])})
    print(f"done in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
