"""Benchmark: one image through cxrviewer's inference path (ONNX Runtime and torch) vs torchxrayvision's, paired.

    nice -n 0 python tests/bench/bench_predict.py [--model CARD] [--repeat 10] [--threads 2] [--processes 3]
        [--txrv-path DIR ...]

Files: (a) RG1_UNCI.dcm from pydicom-data, an uncompressed 1841 x 1955 15-bit CR; (b) the JPEG 2000 CR
pydicom-data_RG1_J2KI.dcm in shared/data/dicom. For each, --repeat paired rounds (after one warm-up), each round
running ours on ONNX Runtime, ours on torch and torchxrayvision one after the other (so that a machine whose
load drifts slows all three alike); median and min of every stage, in wall-clock milliseconds:

  ours:  read+decode (`load_for_model`, as `cxrviewer-predict` reads without exports: a large JPEG 2000 film at a
         lower resolution level; `--full-decode`: `load_image`, the whole film as the viewer decodes it)
         | preprocess (`model_input` + letterbox/normalise) | gate (tags + image statistics + feature score)
         | forward (network + the maps of ALL labels on its grid, one pass) | CAMs (smoothing, peaks) | findings
         (total to the findings and every label's grid map: what the JSON needs) | full-res maps (every label's
         map resampled to the original pixels: what --cams writes; the viewer resamples only the map it draws)
         | total (both)
  torchxrayvision:  read+decode (`utils.read_xray_dcm`) | preprocess (`XRayCenterCrop` + `XRayResizer(224)`)
         | forward (`models.DenseNet(weights=None)`, 224 px) | total   -- no maps at all

plus each total's CPU milliseconds (process time) and the ratio torchxrayvision / ours taken pair by pair.

Whole processes (--processes runs each, ONNX and torch alternating): cold `cxrviewer-predict one.dcm` (the
uncompressed film) to the JSON, and `cxrviewer-predict` over the 33 demo films (shared/data/nih/demo), each
with its wall time and peak RSS (the largest single process, as the operating system accounts it).

Targets (issue 22, 2 cores): findings plus every label's map >= 3x faster than torchxrayvision for (a) and (b);
<= 100 ms warm for (a); cold `cxrviewer-predict one.dcm` <= 3 s; peak RSS <= 600 MB over the 33 demo films.

--gate instead prints the feature-gate scores (1 = warning, card's reject_score = rejection) of the model on
held-out-like chest films (every 8th NIH image, every 12th Kermany image, the shared DICOMs and demo PNGs)
and on non-chest images (tibia CR, CT/MR/US from pydicom-data, sklearn's two photographs in grey, noise,
inverted and rotated films): the numbers to judge the card's gate thresholds by.

Model: --model CARD, else the bundled model, else an untrained DenseNet-121 at 320 px as a stand-in (torch only).
torchxrayvision is not a dependency of cxrviewer: install it somewhere (`pip install --target DIR
torchxrayvision` and its dependencies pandas, requests, scikit-image, imageio in a second DIR) and name the
folders with --txrv-path (appended to sys.path, so that the venv's own numpy and torch win); without it only
ours are printed.
"""

from __future__ import annotations

import os

from cxrviewer.predict import process_settings

process_settings()  # as cxrviewer-predict does (idle OpenMP threads sleep, OpenJPEG on every core); before torch

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from cxrviewer.imaging import load_image  # noqa: E402
from cxrviewer.imaging.loader import load_for_model  # noqa: E402
from cxrviewer.labels import CHEXPERT_LABELS  # noqa: E402
from cxrviewer.model.inference import Engine  # noqa: E402
from cxrviewer.model.weights import ModelError, bundled_card_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CXR_SHARED_DATA", REPO.parent / "shared" / "data"))

Stages = dict[str, float]


def files() -> list[tuple[str, Path]]:
    import data_store  # pydicom-data (dev extra)

    return [("(a) RG1_UNCI uncompressed", Path(data_store.__file__).parent / "data" / "RG1_UNCI.dcm"),
            ("(b) RG1_J2KI JPEG 2000", SHARED / "dicom" / "pydicom-data_RG1_J2KI.dcm")]


def standin(tmp: Path, arch: str, size: int) -> Path:
    """An untrained bundle (same cost as a trained one of that architecture and input size)."""
    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record
    from cxrviewer.model.weights import save_bundle

    labels = list(CHEXPERT_LABELS)
    card = {"name": f"untrained-{arch}-{size}", "version": "0", "input_size": size,
            "preprocessing": preprocessing_record(size), "labels": labels, "thresholds": {lab: 0.5 for lab in labels}}
    return save_bundle(build_network(arch, len(labels)), card, tmp / f"{arch}-{size}.json")


def model_card(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    try:
        return bundled_card_path(), "bundled"
    except ModelError:
        return standin(tmp, "densenet121", 320), "untrained stand-in (no bundled model yet)"


def ours(engine: Engine, path: Path, full_decode: bool = False) -> Stages:
    c0, t0 = time.process_time(), time.perf_counter()
    image = load_image(path) if full_decode else load_for_model(path)
    t1 = time.perf_counter()
    pred = engine.predict(image, force=True)
    t2 = time.perf_counter()
    c2 = time.process_time()
    maps = [pred.cam(label, below_cutoff=True) for label in pred.labels]
    t3 = time.perf_counter()
    assert all(m is not None and m.shape == (image.height, image.width) for m in maps)
    tm = pred.timings
    return {"read+decode": t1 - t0, "preprocess": tm["model_input"] + tm["preprocess"], "gate": tm["gate"],
            "forward": tm["forward"], "CAMs": tm["cams"], "findings": t2 - t0, "findings cpu": c2 - c0,
            "full-res maps": t3 - t2, "total": t3 - t0, "total cpu": time.process_time() - c0}


def txrv_runner(paths: list[str]) -> Callable[[Path], Stages] | None:
    sys.path.extend(p for p in paths if p not in sys.path)  # after the venv: its numpy and torch win
    try:
        import torchvision
        import torchxrayvision as xrv
    except ImportError:
        return None
    model = xrv.models.DenseNet(weights=None).eval()
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])

    def run(path: Path) -> Stages:
        c0, t0 = time.process_time(), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONOCHROME1 conversion notice
            img = xrv.utils.read_xray_dcm(path)
        t1 = time.perf_counter()
        x = torch.from_numpy(transform(img[None]).astype("float32"))[None]
        t2 = time.perf_counter()
        with torch.inference_mode():
            model(x)
        t3 = time.perf_counter()
        return {"read+decode": t1 - t0, "preprocess": t2 - t1, "forward": t3 - t2, "total": t3 - t0,
                "total cpu": time.process_time() - c0}

    return run


def paired(runners: dict[str, Callable[[], Stages]], repeat: int) -> dict[str, list[Stages]]:
    """`repeat` rounds, each running every runner once in turn (after one warm-up round)."""
    for fn in runners.values():
        fn()
    runs: dict[str, list[Stages]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, fn in runners.items():
            runs[name].append(fn())
    return runs


def summary(runs: list[Stages]) -> str:
    """Median (min) of every stage in ms."""
    return "  ".join(f"{k} {1000 * statistics.median(r[k] for r in runs):.0f} ({1000 * min(r[k] for r in runs):.0f})"
                     for k in runs[0])


def pair_ratio(theirs: list[Stages], mine: list[Stages], key: str) -> float:
    """Median over rounds of torchxrayvision's total / ours (`key`): the paired speed-up."""
    return statistics.median(t["total"] / m[key] for t, m in zip(theirs, mine, strict=True))


def cold_load(card: Path, threads: int, backend: str) -> dict[str, float]:
    """Import, load and first predictions of an Engine in fresh interpreters (median of 3), ms."""
    code = ("import time; t0 = time.perf_counter(); "
            "from cxrviewer.model.inference import Engine; t1 = time.perf_counter(); "
            f"e = Engine.from_card({str(card)!r}, threads={threads}, backend={backend!r}); t2 = time.perf_counter(); "
            "import numpy as np; img = np.random.default_rng(0).random((1024, 1024), dtype=np.float32); "
            "t3 = time.perf_counter(); e.predict_array(img, force=True); t4 = time.perf_counter(); "
            "e.predict_array(img, force=True); t5 = time.perf_counter(); "
            "import sys; print(t1 - t0, t2 - t1, t4 - t3, t5 - t4, int('torch' in sys.modules))")
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        runs.append([float(v) for v in out.stdout.split()])
    keys = ("import cxrviewer.model.inference", "Engine.from_card (cold load)", "first prediction (1024 px array)",
            "second prediction")
    out = {k: statistics.median(r[i] for r in runs) * 1000 for i, k in enumerate(keys)}
    out["torch imported"] = runs[-1][-1]
    return out


#: Runs a command, then prints its wall seconds and the peak RSS (KiB) of the largest process it waited for.
WRAPPER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); w = time.perf_counter() - t; "
           "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


def process_runs(args: list[str], backends: list[str], runs: int) -> dict[str, list[tuple[float, float]]]:
    """`cxrviewer-predict ARGS` in fresh processes, the backends alternating: (wall s, peak RSS MB) per run."""
    out: dict[str, list[tuple[float, float]]] = {b: [] for b in backends}
    for _ in range(runs):
        for backend in backends:
            env = {**os.environ, "CXRVIEWER_BACKEND": backend}
            res = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "cxrviewer.predict", "-q",
                                  *args], capture_output=True, text=True, check=True, env=env)
            wall, rss, rc = res.stdout.split()
            if rc != "0":
                raise RuntimeError(f"cxrviewer-predict {' '.join(args)} ({backend}) exited {rc}")
            out[backend].append((float(wall), float(rss) / 1024))
    return out


def print_processes(title: str, runs: dict[str, list[tuple[float, float]]]) -> None:
    print(f"  {title}:")
    for backend, rows in runs.items():
        walls, rss = [r[0] for r in rows], [r[1] for r in rows]
        print(f"    {backend:>5}: wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max "
              f"{max(walls):.2f}); peak RSS median {statistics.median(rss):.0f} MB (max {max(rss):.0f})")


def gate_report(engine: Engine) -> None:
    """Feature-gate scores on chest films and on non-chest images (tags ignored: pixels only)."""
    import glob

    import cv2
    import data_store
    import numpy as np
    import sklearn.datasets

    from cxrviewer.imaging import model_input
    from cxrviewer.model.gate import network_features

    if engine.feature_gate is None:
        print("this model card has no feature-gate statistics")
        return
    fg, size = engine.feature_gate, engine.input_size

    def scores(images: list[np.ndarray]) -> np.ndarray:
        return fg.distance(network_features(engine.network, images, size)) / fg.threshold

    def load(path: str | Path) -> np.ndarray:
        return model_input(load_image(path))

    chest = {
        "NIH (every 8th)": sorted(glob.glob(str(SHARED / "nih" / "images" / "*.png")))[3::8],
        "Kermany (every 12th)": sorted(glob.glob(str(SHARED / "kermany" / "images" / "*")))[5::12],
        "shared DICOM + demo": sorted(glob.glob(str(SHARED / "dicom" / "*.dcm")))
        + sorted(glob.glob(str(SHARED / "nih" / "demo" / "*.png"))),
    }
    print(f"feature gate of {engine.name}: score 1 warns, {fg.reject_score:g} rejects "
          "(training images may be among the chest films)")
    for name, paths in chest.items():
        s = scores([load(p) for p in paths])
        worst = [Path(paths[i]).name for i in np.argsort(-s)[:3]]
        print(f"  {name:<22} n={len(s):4d}  median {np.median(s):.2f}  q99 {np.quantile(s, 0.99):.2f}  "
              f"max {s.max():.2f}  warned {(s > 1).sum()}  rejected {(s > fg.reject_score).sum()}  "
              f"highest: {', '.join(worst)}")
    corpus = Path(data_store.__file__).parent / "data"
    photos = Path(sklearn.datasets.__file__).parent / "images"
    rng = np.random.default_rng(0)
    film = load(chest["NIH (every 8th)"][0])
    others = {"tibia CR": load(SHARED / "dicom" / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm")}
    for name in ("CT_small.dcm", "liver.dcm", "eCT_Supplemental.dcm", "MR2_UNCI.dcm", "emri_small.dcm",
                 "US1_UNCI.dcm", "SC_rgb.dcm", "693_UNCI.dcm", "JPEG2000_UNC.dcm"):
        if (corpus / name).is_file():
            others[name] = load(corpus / name)
    for name in ("china.jpg", "flower.jpg"):
        others[f"{name} (grey)"] = cv2.imread(str(photos / name), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    others["uniform noise"] = rng.random((512, 512), dtype=np.float32)
    blurred = cv2.GaussianBlur(rng.random((512, 512), dtype=np.float32), (0, 0), 8)
    others["smooth noise"] = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    others["inverted film"] = 1 - film
    others["film rotated 90"] = np.ascontiguousarray(np.rot90(film))
    for name, s in zip(others, scores(list(others.values())), strict=True):
        verdict = "rejected" if s > fg.reject_score else "warned" if s > 1 else "passes"
        print(f"  {name:<22} {s:6.2f}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model card (default: bundled, else an untrained stand-in)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3, help="runs of each whole-process measurement (0: none)")
    parser.add_argument("--txrv-path", action="append", default=[], metavar="DIR",
                        help="folder holding torchxrayvision (or its dependencies); repeatable")
    parser.add_argument("--gate", action="store_true", help="print feature-gate scores instead of timings")
    parser.add_argument("--full-decode", action="store_true",
                        help="decode ours in full (`load_image`, as the viewer does), not as cxrviewer-predict does")
    parser.add_argument("--same-net", action="store_true",
                        help="also run our path with torchxrayvision's network and size (DenseNet-121 at 224 px)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        card, origin = model_card(args.model, Path(tmp))
        engines = {"onnx": Engine.from_card(card, threads=args.threads)}
        if args.gate:
            gate_report(engines["onnx"])
            return
        if engines["onnx"].backend != "onnxruntime":
            print(f"this model card has no usable ONNX export: torch only ({engines.pop('onnx').backend})")
        engines["torch"] = Engine.from_card(card, threads=args.threads, backend="torch")
        if args.same_net:
            engines["DenseNet-121 @ 224 (ours)"] = Engine.from_card(standin(Path(tmp), "densenet121", 224),
                                                                     threads=args.threads, backend="torch")
        first = next(iter(engines.values()))
        print(f"model: {first.name} ({first.card.architecture} @ {first.input_size} px, {len(first.labels)} labels, "
              f"{origin}); {args.threads} threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        txrv = txrv_runner(args.txrv_path)
        if txrv is None:
            print("torchxrayvision not importable: side-by-side numbers skipped (see --txrv-path)")
        for title, path in files():
            runners: dict[str, Callable[[], Stages]] = {
                name: (lambda e=engine, p=path: ours(e, p, args.full_decode)) for name, engine in engines.items()}
            if txrv is not None:
                runners["torchxrayvision"] = lambda p=path: txrv(p)
            runs = paired(runners, args.repeat)
            print(f"\n{title}: {path.name}, {args.repeat} paired rounds, ms: median (min)")
            for name, rows in runs.items():
                print(f"  {name + ':':<16} {summary(rows)}")
            for name in engines:
                if txrv is not None:
                    print(f"  ratio torchxrayvision / ours ({name}), paired median: findings + every grid map "
                          f"{pair_ratio(runs['torchxrayvision'], runs[name], 'findings'):.2f}x; with every map at "
                          f"full resolution {pair_ratio(runs['torchxrayvision'], runs[name], 'total'):.2f}x")
            if title.startswith("(a)"):
                best = min(statistics.median(r["findings"] for r in runs[n]) for n in engines) * 1000
                print(f"  goal <= 100 ms warm (findings + every grid map): {'met' if best <= 100 else 'NOT met'} "
                      f"({best:.0f} ms)")
        backends = [b for b in ("onnx", "torch") if b in engines]
        print("\ncold start in a fresh interpreter (median of 3), ms:")
        for backend in backends:
            cold = cold_load(card, args.threads, backend)
            print(f"  {backend}: " + "; ".join(f"{k} {v:.0f}" for k, v in cold.items()))
        if args.processes:
            threads = ["--threads", str(args.threads), "--model", str(card)]
            print(f"\nwhole processes, {args.processes} runs each (backends alternating):")
            print_processes(f"cold cxrviewer-predict {files()[0][1].name} to the JSON",
                            process_runs([*threads, str(files()[0][1])], backends, args.processes))
            demo = SHARED / "nih" / "demo"
            print_processes(f"cxrviewer-predict over the {len(list(demo.glob('*.png')))} demo films ({demo})",
                            process_runs([*threads, str(demo)], backends, args.processes))


if __name__ == "__main__":
    main()
