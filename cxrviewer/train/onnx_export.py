"""Export a bundle's network to ONNX for inference: ``cxrviewer-train export-onnx --model CARD``.

The graph (`cxrviewer.model.card.OnnxRef`): ``image`` (1, 1, N, N), the normalised letterbox -> ``logits`` (1, L:
the mean over the card's test-time views, whose sampling grid is a constant of the graph), ``cams`` (1, L, h, w:
every label's class-activation map in logit units, identity view) and ``pooled`` (1, C: the feature gate's vector).
One graph, so the app never needs torch to give findings and maps.

Written with torch's TorchScript-based exporter (opset 17) in "preserve" mode, so that batch norms stay separate
nodes holding the card's float16 values (the exporter's eval mode would fold them into the convolutions); every
float32 constant that float16 holds exactly is then stored as float16 behind a Cast node, which ONNX Runtime folds
when it loads the file: the same float32 arithmetic as torch from a file half the size (20.9 MB for the bundled
three-network ensemble instead of 42 MB). TensorFlow "same" padding is fixed for the card's input size and folded
into the convolutions (`static_padding`, `fuse_pads`): as separate Pad nodes with their layout conversions it took a
third of ONNX Runtime's time, and a forward pass of the bundled model took 179 ms on one thread instead of 80.

Before anything is written, ONNX Runtime's outputs are compared with torch's on real films (default: the demo
films shipped in resources/demo); the export is refused when logits or maps differ by more than `TOLERANCE`
logit units. The file goes beside the card (``<card stem>.onnx``) and the card is re-sealed with its SHA-256 and
the measured differences (`cxrviewer.model.weights.save_onnx`); a modified card is refused. Needs the ``onnx``
package (``pip install -e ".[train]"``), which the app itself never imports.

A separate step rather than part of `save_bundle`: it needs ``onnx`` and tens of seconds, and runs on the final
card (calibration, gate and pointing game written), once; every bundle the trainer or the tests write stays a
plain safetensors bundle that torch runs.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.efficientnet_lite import SameConv2d
from cxrviewer.model.network import CXRNet
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.runners import ONNX_INPUT, ONNX_OUTPUTS, OnnxRunner, TorchRunner
from cxrviewer.model.tta import sample_views, tta_views, view_grid
from cxrviewer.model.weights import ModelError, load_bundle, save_onnx

OPSET = 17
#: Largest difference (logit units) between ONNX Runtime and torch accepted for logits and maps.
TOLERANCE = 1e-3
#: Film types the default check reads from resources/demo.
FILM_SUFFIXES = (".png", ".dcm")


class InferenceGraph(nn.Module):
    """What the app runs: the test-time views, the network, every label's map and the pooled features."""

    def __init__(self, network: CXRNet, views: list[str], size: int) -> None:
        super().__init__()
        self.network = network
        self.grid: torch.Tensor | None
        self.register_buffer("grid", view_grid(views, torch.zeros(1, 1, size, size)) if len(views) > 1 else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = sample_views(x, self.grid) if self.grid is not None else x
        logits, fmap = self.network.forward_features(batch)
        first = fmap[:1]  # the identity view: its maps and features
        return logits.mean(0, keepdim=True), self.network.cams(first), first.mean(dim=(2, 3))


def _static_same_conv(conv: SameConv2d, pads: tuple[int, int, int, int], x: torch.Tensor) -> torch.Tensor:
    """`SameConv2d.forward` with the padding (left, right, top, bottom) measured for the export's input size."""
    left, right, top, bottom = pads
    if left == right and top == bottom:  # symmetric: the convolution's own padding
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, (top, left), conv.dilation, conv.groups)
    return F.conv2d(F.pad(x, [left, right, top, bottom]), conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                    conv.groups)


@contextlib.contextmanager
def static_padding(network: nn.Module, size: int) -> Iterator[None]:
    """TensorFlow "same" padding (`SameConv2d`) fixed for inputs of `size` while the network is exported.

    Computed from the input shape, the padding becomes a chain of shape arithmetic and a separate Pad node before
    each convolution in the graph (a third of ONNX Runtime's time on the bundled model: the Pad and its layout
    conversions); fixed, it is the convolution's own padding, or a constant Pad that `fuse_pads` folds into it.
    The network's own `forward` is restored on exit."""
    convs = [m for m in network.modules() if isinstance(m, SameConv2d)]
    seen: dict[SameConv2d, tuple[int, int, int, int]] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, SameConv2d)
        pads = []
        for n, k, s, d in zip(inputs[0].shape[-2:], module.kernel_size, module.stride, module.dilation,
                              strict=True):
            total = max((-(-int(n) // s) - 1) * s + (k - 1) * d + 1 - int(n), 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        seen[module] = (left, right, top, bottom)

    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            network(torch.zeros(1, 1, size, size))
    finally:
        for h in hooks:
            h.remove()
    for m in convs:
        m.forward = functools.partial(_static_same_conv, m, seen[m])  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in convs:
            del m.forward  # the class's own again


def fuse_pads(model: bytes) -> bytes:
    """Zero Pad nodes folded into the convolution they feed (ONNX Conv takes asymmetric padding); dead nodes dropped.

    The pads are computed by small constant subgraphs; ONNX Runtime evaluates them once here."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    def plain_conv(node: onnx.NodeProto) -> bool:
        return node.op_type == "Conv" and all(a.name != "auto_pad" or a.s in (b"", b"NOTSET") for a in node.attribute)

    pads = [n for n in graph.node if n.op_type == "Pad" and consumers.get(n.output[0])
            and all(plain_conv(c) for c in consumers[n.output[0]])
            and all(a.name != "mode" or a.s in (b"", b"constant") for a in n.attribute)]
    if not pads:
        return model
    types = {n.input[1]: onnx.TensorProto.INT64 for n in pads}  # pads; the optional value: the data's type
    types.update({n.input[2]: onnx.TensorProto.FLOAT for n in pads if len(n.input) > 2 and n.input[2]})
    wanted = sorted(types)
    probe = onnx.load_from_string(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, types[name], None) for name in wanted)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    values = dict(zip(wanted, session.run(wanted, {graph.input[0].name: np.zeros(shape, np.float32)}), strict=True))
    for pad in pads:
        amounts = values[pad.input[1]].astype(int).tolist()
        value = values[pad.input[2]] if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        if len(amounts) != 8 or any(amounts[i] for i in (0, 1, 4, 5)) or np.any(value != 0) or len(pad.input) > 3:
            continue
        for conv in consumers[pad.output[0]]:  # one padded input may feed several members' stems
            attrs = {a.name: a for a in conv.attribute}
            old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
            new = [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]
            kept = [a for a in conv.attribute if a.name != "pads"]
            del conv.attribute[:]
            conv.attribute.extend([*kept, helper.make_attribute("pads", new)])
            conv.input[0] = pad.input[0]
    used = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    for node in reversed(graph.node):  # the graph is in topological order: keep what the outputs need
        if any(out in used for out in node.output):
            live.append(node)
            used.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def half_initializers(model: bytes) -> bytes:
    """Float32 constants that float16 holds exactly (a float16 bundle's weights) stored as float16 + Cast."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    kept, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 16 and np.array_equal(arr.astype(np.float16).astype(np.float32),
                                                                         arr):
            half = numpy_helper.from_array(arr.astype(np.float16), f"{init.name}__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=f"{init.name}__cast"))
        else:
            kept.append(init)
    nodes = list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def export_graph(network: CXRNet, views: list[str], size: int) -> bytes:
    """The ONNX file's bytes for `network` at input size `size` (see the module docstring)."""
    graph = InferenceGraph(network, views, size).eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad(), \
            static_padding(network, size):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        path = Path(tmp) / "graph.onnx"
        torch.onnx.export(graph, (torch.zeros(1, 1, size, size),), str(path), dynamo=False,
                          input_names=[ONNX_INPUT], output_names=list(ONNX_OUTPUTS), opset_version=OPSET,
                          do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE)
        return half_initializers(fuse_pads(path.read_bytes()))


def default_films() -> list[Path]:
    """The demo films shipped with the app (resources/demo)."""
    from importlib import resources

    folder = Path(str(resources.files("cxrviewer._resources"))) / "demo"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FILM_SUFFIXES)


def compare(model: bytes, network: CXRNet, views: list[str], films: list[Path], size: int,
            threads: int | None = None) -> dict[str, Any]:
    """Largest differences between ONNX Runtime (`model`) and torch (`network`) on `films`."""
    if not films:
        raise ValueError("no films to compare ONNX Runtime with torch on")
    onnx_runner = OnnxRunner(model, network.classifier.out_features, threads, "ONNX export")
    torch_runner = TorchRunner(network, views, threads)
    d_logit = d_cam = d_pooled = 0.0
    for path in films:
        x, _ = preprocess(model_input(load_image(path)), size)
        a, b = onnx_runner.run(x), torch_runner.run(x)
        d_logit = max(d_logit, float(np.abs(a.logits - b.logits).max()))
        d_cam = max(d_cam, float(np.abs(a.cams - b.cams).max()))
        d_pooled = max(d_pooled, float(np.abs(a.pooled - b.pooled).max()))
    return {"films": len(films), "max_abs_logit": d_logit, "max_abs_cam": d_cam, "max_abs_pooled": d_pooled,
            "tolerance": TOLERANCE, "checked_on": ", ".join(p.name for p in films)}


def export_onnx(card_path: str | Path, films: list[Path] | None = None, threads: int | None = None) -> Path:
    """Export the bundle at `card_path` to ONNX beside it and re-seal its card; returns the ONNX path.

    ModelError when the card is modified or unusable, or when ONNX Runtime and torch differ by more than
    `TOLERANCE` (nothing is written then)."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ModelError(f"exporting to ONNX needs the {exc.name} package (pip install -e \".[train]\")") from None
    bundle = load_bundle(card_path)  # a modified card is refused here
    views = tta_views(bundle.card.tta)
    model = export_graph(bundle.network, views, bundle.input_size)
    parity = compare(model, bundle.network, views, films or default_films(), bundle.input_size, threads)
    worst = max(parity["max_abs_logit"], parity["max_abs_cam"])
    if worst > TOLERANCE:
        raise ModelError(f"{card_path}: ONNX Runtime differs from torch by {worst:.2g} logit units (more than "
                         f"{TOLERANCE:g}); ONNX file not written")
    exported_with = (f"torch {torch.__version__}, onnx {onnx.__version__}, opset {OPSET}; "
                     f"checked with onnxruntime {onnxruntime.__version__}")
    return save_onnx(card_path, model, opset=OPSET, exported_with=exported_with, parity=parity)
