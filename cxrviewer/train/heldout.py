"""Held-out outputs of cross-validation fold models, and the pointing game of an ensemble from them.

`write_heldout` (run where the fold models are, e.g. on the GPU machine by models/search/gpu_search.py) saves,
for one fold model trained from a pack, the held-out images' probabilities under every test-time view and
the raw CAMs (logit units) of those with radiologist boxes, as ``heldout.npz`` in the fold's folder.
`ensemble_pointing` scores the mean map of several cross-validation runs on the boxes of images that every
run held out (each map made by a model that never saw the patient), as the app would show the ensemble's map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrviewer.model.preprocess import Letterbox, normalize
from cxrviewer.model.tta import VIEWS, view_batch
from cxrviewer.train.bundle_writer import load_best
from cxrviewer.train.pack import read_pack
from cxrviewer.train.pointing import score_maps
from cxrviewer.train.runs import RunFolder


@torch.inference_mode()
def write_heldout(run: Path, pack_path: Path, out: Path | None = None, batch: int = 128) -> Path:
    """TTA probabilities of a fold's held-out images and CAMs of those with boxes (see the module docstring)."""
    net, ck = load_best(run)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(dev).eval()
    pack = read_pack(pack_path)
    rows = {str(s.path): i for i, s in enumerate(pack.samples)}
    val = [rows[p] for p in RunFolder(run).val_paths]
    squares = pack.squares_at(ck["input_size"])
    views = list(VIEWS)
    probs = np.zeros((len(views), len(val), len(ck["labels"])), np.float32)
    boxed = {int(r) for r in pack.boxes[:, 0]} & set(val)
    cams: dict[int, np.ndarray] = {}
    for start in range(0, len(val), batch):
        idx = val[start:start + batch]
        x = torch.from_numpy(np.stack([normalize(squares[i].astype(np.float32) / 255.0)[None] for i in idx])).to(dev)
        logits = net(view_batch(x, views)).float().view(len(views), len(idx), -1)
        probs[:, start:start + len(idx)] = torch.sigmoid(logits).cpu().numpy()
        _, fmap = net.forward_features(x)
        maps = net.cams(fmap).float().cpu().numpy()
        for j, i in enumerate(idx):
            if i in boxed:
                cams[i] = maps[j].astype(np.float16)
    order = sorted(cams)
    out = out or run / "heldout.npz"
    np.savez_compressed(out, views=np.array(views), val_rows=np.array(val), probs=probs, cam_rows=np.array(order),
                        paths=np.array([str(pack.samples[i].path) for i in order]),
                        cams=np.stack([cams[i] for i in order]) if order else np.zeros((0,), np.float16))
    return out


def heldout_maps(run: Path) -> dict[str, tuple[np.ndarray, Letterbox]]:
    """Image path -> (raw CAMs, letterbox) of a fold's held-out boxed images (empty without heldout.npz)."""
    if not (run / "heldout.npz").is_file():
        return {}
    cfg = RunFolder(run).config
    if not cfg.packed:
        return {}
    pack = read_pack(Path(cfg.packed))
    size = cfg.input_size
    with np.load(run / "heldout.npz") as z:
        rows = [int(r) for r in z["cam_rows"]]
        cams = z["cams"].astype(np.float32)
    return {str(pack.samples[r].path): (cams[k], pack.letterbox(r, size)) for k, r in enumerate(rows)}


def ensemble_pointing(roots: list[Path], labels: list[str]) -> dict[str, Any] | None:
    """Pointing game of the members' mean map on the boxes of images every CV run held out (None when a run
    has no held-out maps). Boxes come from the first run's pack."""
    per_run = []
    for root in roots:
        maps: dict[str, tuple[np.ndarray, Letterbox]] = {}
        for fold in sorted(root.glob("fold*")):
            maps.update(heldout_maps(fold))
        if not maps:
            return None
        per_run.append(maps)
    common = [p for p in per_run[0] if all(p in m for m in per_run[1:])]
    mean = {p: (np.mean([m[p][0] for m in per_run], axis=0), per_run[0][p][1]) for p in common}
    first = next(iter(sorted(roots[0].glob("fold*/config.json"))))
    pack = read_pack(Path(json.loads(first.read_text())["packed"]))
    boxes = [{**b, "path": str(pack.samples[b["path"]].path)} for b in pack.box_dicts()]
    rec = score_maps(mean, labels, boxes)
    rec["note"] = (f"mean map of {len(roots)} cross-validation runs on the boxes of images that every run held out "
                   f"({len(common)} images)")
    return rec
