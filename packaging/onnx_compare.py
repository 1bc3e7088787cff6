"""Measure ONNX Runtime against torch on the app's own runners (run by hand; prints numbers, changes nothing).

    python packaging/onnx_compare.py [--card CARD] [--threads N] [--repeat R] [--save FILE.npz] [IMAGE ...]

Runs the same preprocessed inputs through `cxrviewer.model.runners.OnnxRunner` (the card's ONNX export, checked
against the card's SHA-256; a card without one is exported to a temporary file with
`cxrviewer.train.onnx_export.export_graph`, which needs the ``onnx`` package) and `TorchRunner`, and reports the
largest differences in logits, class-activation maps (logit units and the [0, 1] display scale) and pooled
features, plus forward-pass latency at the same thread count. The app's tests hold the same comparison to its
tolerances (tests/model/test_onnx_runtime.py). Default inputs: the shared DICOMs and every 60th NIH image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.runners import OnnxRunner, TorchRunner
from cxrviewer.model.tta import tta_views
from cxrviewer.model.weights import bundled_card_path, load_bundle, read_verified

SHARED = Path(os.environ.get("CXR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def default_images() -> list[Path]:
    dicoms = sorted((SHARED / "dicom").glob("*.dcm"))
    nih = sorted((SHARED / "nih" / "images").glob("*.png"))[::60]
    return dicoms + nih


def sigmoid(v: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-v)))


def main(argv: list[str] | None = None) -> int:
    import onnxruntime
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--card", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--save", type=Path, help="also write torch's logits and CAMs here (.npz), to compare two "
                        "torch builds")
    args = parser.parse_args(argv)

    card_path = args.card or bundled_card_path()
    bundle = load_bundle(card_path)
    card, size, views = bundle.card, bundle.input_size, tta_views(bundle.card.tta)
    if card.onnx is not None:
        model, origin = read_verified(card_path.parent / card.onnx.file, card.onnx.sha256), card.onnx.file
    else:
        from cxrviewer.train.onnx_export import export_graph

        t0 = time.perf_counter()
        model, origin = export_graph(bundle.network, views, size), "exported now"
        print(f"export: {time.perf_counter() - t0:.1f} s")
    print(f"model {card.name}: {card.architecture} at {size} px, {len(card.labels)} labels; ONNX {origin} "
          f"({len(model) / 1e6:.1f} MB); torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} threads")
    t0 = time.perf_counter()
    ort_runner = OnnxRunner(model, len(card.labels), args.threads, origin)
    print(f"onnxruntime session: {1000 * (time.perf_counter() - t0):.0f} ms")
    torch_runner = TorchRunner(bundle.network, views, args.threads)

    d_logit = d_cam = d_cam01 = d_pool = 0.0
    t_torch: list[float] = []
    t_ort: list[float] = []
    saved: dict[str, np.ndarray] = {}
    images = args.images or default_images()
    for path in images:
        x, _ = preprocess(model_input(load_image(path)), size)
        a, b = ort_runner.run(x), torch_runner.run(x)
        saved[f"logit:{path.name}"], saved[f"cam:{path.name}"] = b.logits, b.cams
        d_logit = max(d_logit, float(np.abs(a.logits - b.logits).max()))
        d_cam = max(d_cam, float(np.abs(a.cams - b.cams).max()))
        d_cam01 = max(d_cam01, float(np.abs(sigmoid(a.cams) - sigmoid(b.cams)).max()))
        d_pool = max(d_pool, float(np.abs(a.pooled - b.pooled).max()))
        for _ in range(args.repeat):
            t1 = time.perf_counter()
            torch_runner.run(x)
            t2 = time.perf_counter()
            ort_runner.run(x)
            t3 = time.perf_counter()
            t_torch.append(t2 - t1)
            t_ort.append(t3 - t2)
    print(f"{len(images)} images: max |dlogit| {d_logit:.2e}, max |dCAM| {d_cam:.2e} logit "
          f"({d_cam01:.2e} on the [0, 1] display scale), max |dpooled| {d_pool:.2e}")
    mt, mo = statistics.median(t_torch), statistics.median(t_ort)
    print(f"forward (network + every map) median over {len(t_torch)} runs: torch {1000 * mt:.1f} ms, onnxruntime "
          f"{1000 * mo:.1f} ms (x{mt / mo:.2f})")
    if args.save:
        np.savez(args.save, **saved)
    print(f"logits within 1e-4: {'yes' if d_logit <= 1e-4 else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
