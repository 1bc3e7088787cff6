"""Measure ONNX Runtime against the app's torch inference (run by hand; prints numbers, changes nothing).

    python packaging/onnx_compare.py [--card CARD] [--threads N] [--repeat R] [IMAGE ...]

Exports the model (logits + last feature map as outputs, as the viewer needs both: CAMs and the
feature gate) to a temporary ONNX file, runs the same preprocessed inputs through
`cxrviewer.model.inference.Engine` (torch, the app's own path) and through onnxruntime, and reports
the largest differences in probabilities, CAMs (logit units and the [0, 1] display scale) and pooled
features, plus forward-pass latency at the same thread count. Needs `onnx` and `onnxruntime`
importable (e.g. PYTHONPATH=DIR after `pip install --target DIR onnx onnxruntime onnxscript`).
Default inputs: the shared DICOMs and every 60th NIH image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.inference import Engine
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.weights import bundled_card_path

SHARED = Path(os.environ.get("CXR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


class _Features(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.forward_features(x)


def export(network: torch.nn.Module, size: int, path: Path) -> float:
    t0 = time.perf_counter()
    dummy = torch.zeros(1, 1, size, size)
    kwargs = {"input_names": ["image"], "output_names": ["logits", "fmap"], "opset_version": 17}
    try:
        torch.onnx.export(_Features(network).eval(), (dummy,), str(path), dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(_Features(network).eval(), (dummy,), str(path), **kwargs)
    return time.perf_counter() - t0


def default_images() -> list[Path]:
    dicoms = sorted((SHARED / "dicom").glob("*.dcm"))
    nih = sorted((SHARED / "nih" / "images").glob("*.png"))[::60]
    return dicoms + nih


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--card", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--save", type=Path, help="also write torch's probabilities and CAMs here (.npz), "
                        "to compare two torch builds")
    args = parser.parse_args(argv)

    card = args.card or bundled_card_path()
    engine = Engine.from_card(card, threads=args.threads)
    net, size = engine.bundle.network, engine.input_size
    w = net.classifier.weight.detach().numpy().astype(np.float32)
    b = net.classifier.bias.detach().numpy().astype(np.float32)
    print(f"model {engine.name}: {engine.bundle.card['architecture']} at {size} px, {len(engine.labels)} labels; "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        seconds = export(net, size, onnx_path)
        weights = card.parent / engine.bundle.card["weights"]["file"]
        print(f"export: {seconds:.1f} s, {onnx_path.stat().st_size / 1e6:.1f} MB "
              f"(safetensors: {weights.stat().st_size / 1e6:.1f} MB)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        t0 = time.perf_counter()
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        print(f"onnxruntime session: {1000 * (time.perf_counter() - t0):.0f} ms")

        d_prob = d_cam = d_cam01 = d_pool = 0.0
        t_torch: list[float] = []
        t_ort: list[float] = []
        images = args.images or default_images()
        saved: dict[str, np.ndarray] = {}
        for path in images:
            image = load_image(path)
            pred = engine.predict(image, force=True)
            order = [pred.labels.index(lab) for lab in engine.labels]
            p_torch = np.array([pred.finding(lab).probability for lab in engine.labels])
            cams_torch = pred.cams_logit[order]
            saved[f"prob:{path.name}"], saved[f"cam:{path.name}"] = p_torch, cams_torch
            x, _ = preprocess(model_input(image), size)
            logits, fmap = session.run(None, {"image": x[None]})
            p_ort = 1.0 / (1.0 + np.exp(-logits[0].astype(np.float64)))
            cams_ort = np.einsum("lc,chw->lhw", w, fmap[0]) + b[:, None, None]
            d_prob = max(d_prob, float(np.abs(p_ort - p_torch).max()))
            d_cam = max(d_cam, float(np.abs(cams_ort - cams_torch).max()))
            sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
            d_cam01 = max(d_cam01, float(np.abs(sig(cams_ort) - sig(cams_torch)).max()))
            tensor = torch.from_numpy(x)[None].contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                _, fmap_t = net.forward_features(tensor)
            d_pool = max(d_pool, float(np.abs(fmap[0].mean(axis=(1, 2)) - fmap_t[0].mean(dim=(1, 2)).numpy()).max()))
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    net.forward_features(tensor)
                t1 = time.perf_counter()
                session.run(None, {"image": x[None]})
                t2 = time.perf_counter()
                t_torch.append(t1 - t0)
                t_ort.append(t2 - t1)
        print(f"{len(images)} images: max |dprob| {d_prob:.2e}, max |dCAM| {d_cam:.2e} logit "
              f"({d_cam01:.2e} on the [0, 1] display scale), max |dpooled| {d_pool:.2e}")
        mt, mo = statistics.median(t_torch), statistics.median(t_ort)
        print(f"forward median over {len(t_torch)} runs: torch {1000 * mt:.1f} ms, onnxruntime {1000 * mo:.1f} ms "
              f"(x{mt / mo:.2f})")
        if args.save:
            np.savez(args.save, **saved)
        ok = d_prob <= 1e-4
        print(f"probabilities within 1e-4: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
