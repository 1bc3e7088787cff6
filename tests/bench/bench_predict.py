"""Benchmark: one image through cxrviewer's inference path vs torchxrayvision's, side by side (run by hand).

    python tests/bench/bench_predict.py [--model CARD] [--repeat 10] [--threads 2]

Files: (a) RG1_UNCI.dcm from pydicom-data, an uncompressed 1841 x 1955 15-bit CR; (b) the JPEG 2000 CR
pydicom-data_RG1_J2KI.dcm in shared/data/dicom. For each, the median over --repeat runs (after one
warm-up) of every stage, in wall-clock milliseconds:

  ours:  read+decode (`load_image`) | preprocess (`model_input` + letterbox/normalise) | gate (tags +
         image statistics + feature score) | forward | CAMs (maps of ALL labels from the same pass, their
         peaks, and every label's map resampled to the original 1841 x 1955 pixels) | total
  torchxrayvision:  read+decode (`utils.read_xray_dcm`) | preprocess (`XRayCenterCrop` + `XRayResizer(224)`)
         | forward (`models.DenseNet(weights=None)`, 224 px) | total   -- no CAMs at all

plus the CPU milliseconds of each total (process time; on a machine shared with other jobs the wall time
is inflated), the ratio torchxrayvision / ours, and the cold load of an Engine in a fresh interpreter.
Goals on 2 CPU cores: (a) total <= 300 ms including all CAMs, and >= 2x faster than torchxrayvision.

--gate instead prints the feature-gate scores (1 = warning, card's reject_score = rejection) of the model on
held-out-like chest films (every 8th NIH image, every 12th Kermany image, the shared DICOMs and demo PNGs)
and on non-chest images (tibia CR, CT/MR/US from pydicom-data, sklearn's two photographs in grey, noise,
inverted and rotated films): the numbers to judge the card's gate thresholds by.

Model: --model CARD, else the bundled model, else an untrained DenseNet-121 at 320 px as a stand-in.
torchxrayvision is not a dependency of cxrviewer: `pip install torchxrayvision` (or put an installation on
PYTHONPATH) to get the side-by-side numbers; without it only ours are printed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as cxrviewer-predict does; before torch is imported

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


def ours(engine: Engine, path: Path) -> Stages:
    c0, t0 = time.process_time(), time.perf_counter()
    image = load_image(path)
    t1 = time.perf_counter()
    pred = engine.predict(image, force=True)
    t2 = time.perf_counter()
    maps = [pred.cam(label, below_cutoff=True) for label in pred.labels]
    t3 = time.perf_counter()
    assert all(m is not None and m.shape == (image.height, image.width) for m in maps)
    tm = pred.timings
    return {"read+decode": t1 - t0, "preprocess": tm["model_input"] + tm["preprocess"], "gate": tm["gate"],
            "forward": tm["forward"], "CAMs": tm["cams"] + (t3 - t2), "(of which full-res maps)": t3 - t2,
            "total": t3 - t0, "total cpu": time.process_time() - c0}


def txrv_runner() -> Callable[[Path], Stages] | None:
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


def median_ms(fn: Callable[[], Stages], repeat: int) -> Stages:
    fn()  # warm-up
    runs = [fn() for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) * 1000 for k in runs[0]}


def cold_load(card: Path, threads: int) -> dict[str, float]:
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "from cxrviewer.model.inference import Engine; t2 = time.perf_counter(); "
            f"e = Engine.from_card({str(card)!r}, threads={threads}); t3 = time.perf_counter(); "
            "import numpy as np; img = np.random.default_rng(0).random((1024, 1024), dtype=np.float32); "
            "t4 = time.perf_counter(); e.predict_array(img, force=True); t5 = time.perf_counter(); "
            "e.predict_array(img, force=True); t6 = time.perf_counter(); "
            "print(t1 - t0, t2 - t1, t3 - t2, t5 - t4, t6 - t5)")
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        runs.append([float(v) for v in out.stdout.split()])
    keys = ("import torch", "import cxrviewer.model", "Engine.from_card (cold load)",
            "first prediction (1024 px array)", "second prediction")
    return {k: statistics.median(r[i] for r in runs) * 1000 for i, k in enumerate(keys)}


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
    parser.add_argument("--gate", action="store_true", help="print feature-gate scores instead of timings")
    parser.add_argument("--same-net", action="store_true",
                        help="also run our path with torchxrayvision's network and size (DenseNet-121 at 224 px)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        card, origin = model_card(args.model, Path(tmp))
        engine = Engine.from_card(card, threads=args.threads)
        if args.gate:
            gate_report(engine)
            return
        same = Engine.from_card(standin(Path(tmp), "densenet121", 224), threads=args.threads) \
            if args.same_net else None
        print(f"model: {engine.name} ({engine.card.architecture} @ {engine.input_size} px, "
              f"{len(engine.labels)} labels, {origin}); torch threads {torch.get_num_threads()}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        txrv = txrv_runner()
        if txrv is None:
            print("torchxrayvision not installed: side-by-side numbers skipped (pip install torchxrayvision)")
        for title, path in files():
            print(f"\n{title}: {path.name}, median of {args.repeat} runs, ms")
            mine = median_ms(lambda p=path: ours(engine, p), args.repeat)
            print("  ours:            " + "  ".join(f"{k} {v:.1f}" for k, v in mine.items()))
            if same is not None:
                alike = median_ms(lambda p=path: ours(same, p), args.repeat)
                print("  ours, DenseNet-121 @ 224: " + "  ".join(f"{k} {v:.1f}" for k, v in alike.items()))
            if txrv is not None:
                theirs = median_ms(lambda p=path: txrv(p), args.repeat)
                print("  torchxrayvision: " + "  ".join(f"{k} {v:.1f}" for k, v in theirs.items()))
                print(f"  ratio torchxrayvision / ours (total wall): {theirs['total'] / mine['total']:.2f}x; "
                      f"(cpu): {theirs['total cpu'] / mine['total cpu']:.2f}x")
                if same is not None:
                    print(f"  ratio torchxrayvision / ours with the same network: "
                          f"{theirs['total'] / alike['total']:.2f}x (wall), "
                          f"{theirs['total cpu'] / alike['total cpu']:.2f}x (cpu)")
            if title.startswith("(a)"):
                verdict = "met" if mine["total"] <= 300 else "NOT met"
                print(f"  goal total <= 300 ms incl. all CAMs: {verdict} ({mine['total']:.0f} ms)")
        print("\ncold start in a fresh interpreter (median of 3), ms:")
        for k, v in cold_load(card, args.threads).items():
            print(f"  {k}: {v:.0f}")


if __name__ == "__main__":
    main()
