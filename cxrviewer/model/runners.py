"""Forward-pass runners: one letterboxed input -> logits, every label's map and the gate's features.

`OnnxRunner` runs the card's ONNX export (``cxrviewer-train export-onnx``) with ONNX Runtime on the CPU, from the
bytes that were checked against the card's SHA-256; `TorchRunner` runs the torch network (the fallback, and the
network training uses). Both return the same `Forward`: the logits averaged over the card's test-time views, the
class-activation maps of every label (logit units, identity view, before the card's smoothing) and the identity
view's pooled features (the feature gate's vector). On 42 films the bundled export matched torch within 3e-5 (logits)
and 4e-4 (maps) logit units (packaging/onnx_compare.py; tolerances in tests/model/test_onnx_runtime.py).

`open_runner` picks one. ``backend`` "auto" (the default) takes ONNX Runtime when the card names an ONNX file, the
file is there and ``onnxruntime`` imports, else torch; "onnx" insists on ONNX Runtime (ModelError otherwise);
"torch" never reads the ONNX file. The environment variable ``CXRVIEWER_BACKEND`` (auto, onnx or torch) stands in
for "auto". Under "auto" and "onnx" an ONNX file that is present but does not match the card's SHA-256 is refused
(ModelError), even where onnxruntime is missing: never skipped in silence. torch is imported only by `TorchRunner`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cxrviewer.model.card import ModelError
from cxrviewer.model.tta import tta_views
from cxrviewer.model.weights import ModelBundle, read_verified

if TYPE_CHECKING:
    from cxrviewer.model.network import CXRNet

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
BACKEND_ENV = "CXRVIEWER_BACKEND"
#: The ONNX graph's input and outputs (`cxrviewer.model.card.OnnxRef`).
ONNX_INPUT = "image"
ONNX_OUTPUTS = ("logits", "cams", "pooled")


@dataclass
class Forward:
    """One input's network outputs."""

    logits: np.ndarray  # (L,) float64, mean over the test-time views
    cams: np.ndarray  # (L, h, w) float32, logit units, identity view, unsmoothed
    pooled: np.ndarray  # (C,) float64, identity view


class Runner(Protocol):
    name: str  # "onnxruntime" or "torch"
    channels: int  # length of `Forward.pooled`

    def run(self, x: np.ndarray) -> Forward:
        """`x`: the (1, N, N) float32 normalised model input (`cxrviewer.model.preprocess.preprocess`)."""
        ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class TorchRunner:
    """The torch network (channels-last: oneDNN's faster CPU kernels, 1.3-1.8x, same results within 1e-5)."""

    name = "torch"

    def __init__(self, network: CXRNet, views: list[str], threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        elif torch.get_num_threads() > available_cores():
            torch.set_num_threads(available_cores())
        self.network = network.eval().to(memory_format=torch.channels_last)  # converted in place
        self.views = views
        self.channels = int(network.classifier.in_features)

    def run(self, x: np.ndarray) -> Forward:
        import torch

        from cxrviewer.model.gate import pooled_features
        from cxrviewer.model.tta import view_batch

        with torch.inference_mode():
            tensor = torch.from_numpy(x)[None]
            if len(self.views) > 1:  # the identity view first: its map gives the CAMs and the gate features
                tensor = view_batch(tensor, self.views)
            logits, fmap = self.network.forward_features(tensor.contiguous(memory_format=torch.channels_last))
            cams = self.network.cams(fmap[:1])[0].float().numpy()
            pooled = pooled_features(fmap[:1])[0]
        return Forward(logits.float().mean(0).numpy().astype(np.float64), cams, pooled)


class OnnxRunner:
    """An ONNX Runtime session (CPU) over an export's checked bytes; `where` names the file in messages."""

    name = "onnxruntime"

    def __init__(self, model: bytes, labels: int, threads: int | None = None, where: str = "ONNX file") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or available_cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle threads sleep instead of spinning (as OMP_WAIT_POLICY=PASSIVE does for torch): on cores shared with
        # other work, spinning made a forward pass 1.5-2x slower here.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{where}: ONNX Runtime cannot load it ({first})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if inputs != [ONNX_INPUT] or set(outputs) != set(ONNX_OUTPUTS):
            raise ModelError(f"{where}: not a cxrviewer export (input {inputs}, outputs {sorted(outputs)}; "
                             f"expected {ONNX_INPUT!r} -> {', '.join(ONNX_OUTPUTS)})")
        shapes = outputs["logits"], outputs["pooled"]
        if not all(len(s) == 2 and isinstance(s[1], int) for s in shapes) or shapes[0][1] != labels:
            raise ModelError(f"{where}: its outputs do not fit the card's {labels} labels")
        self.channels = int(outputs["pooled"][1])

    def run(self, x: np.ndarray) -> Forward:
        logits, cams, pooled = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: x[None]})
        return Forward(logits[0].astype(np.float64), cams[0], pooled[0].astype(np.float64))


def _backend(backend: str) -> str:
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
        if backend not in BACKENDS:
            raise ModelError(f"{BACKEND_ENV}={backend!r}: expected one of {', '.join(BACKENDS)}")
    elif backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    return backend


def _onnx_runner(bundle: ModelBundle, threads: int | None, required: bool) -> OnnxRunner | None:
    """The ONNX runner when the card has an export and ONNX Runtime imports; None (torch runs) otherwise."""
    ref, where = bundle.card.onnx, bundle.card_path
    if ref is None:
        if required:
            raise ModelError(f"{where}: the model card names no ONNX export (cxrviewer-train export-onnx)")
        return None
    path = bundle.card_path.parent / ref.file
    if not path.is_file():
        if required:
            raise ModelError(f"{where}: ONNX file {ref.file} is missing")
        log.warning("%s: ONNX file %s is missing; the torch network runs instead", where.name, ref.file)
        return None
    model = read_verified(path, ref.sha256)  # altered: refused whatever the backend
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if required:
            raise ModelError(f"{path.name}: onnxruntime is not installed") from None
        log.info("onnxruntime is not installed; the torch network runs")
        return None
    return OnnxRunner(model, len(bundle.card.labels), threads, path.name)


def open_runner(bundle: ModelBundle, backend: str = "auto", threads: int | None = None) -> Runner:
    """The runner for `bundle` (see the module docstring); ModelError names the file when it is unusable."""
    chosen = _backend(backend)
    if chosen != "torch":
        runner = _onnx_runner(bundle, threads, required=chosen == "onnx")
        if runner is not None:
            return runner
    return TorchRunner(bundle.network, tta_views(bundle.card.tta), threads)
