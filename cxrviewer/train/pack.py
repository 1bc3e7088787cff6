"""A packed training set: every image already through the app's preprocessing, labels, folds' keys and boxes.

`cxrviewer-train pack` writes one ``.npz`` (no pickles) holding, per image, the letterboxed uint8 square
(JPEG or PNG bytes) made by exactly the app's path (`cache.encode_square`, with the pack's crop mode), its
targets/masks, patient id, view, dataset name, original size and crop region, plus the radiologist boxes in
original pixels. `fit`/`cv --packed FILE`
train from it without the source files or a DICOM stack: copy one file to a GPU machine or cluster node.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrviewer.fileio import atomic_write_stream
from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model.preprocess import Letterbox
from cxrviewer.train.boxes import MAX_BOXES, model_box
from cxrviewer.train.cache import build_cache, geometry_letterbox
from cxrviewer.train.pointing import read_boxes
from cxrviewer.train.samples import LABEL_INDEX, Sample

PACK_VERSION = 2  # 2: crop mode and per-image crop regions (version 1 packs are read as uncropped)


@dataclass
class Pack:
    """A decoded pack: samples, their (N, S, S) uint8 squares, readability flags and boxes."""

    samples: list[Sample]
    squares: np.ndarray
    ok: list[bool]
    geometry: np.ndarray  # (N, 6) original width, height, crop region x, y, w, h
    boxes: np.ndarray  # (K, 6) image row, KNOWN_LABELS index, x, y, w, h in original pixels
    crop: str | None = None  # the preprocessing crop mode the squares were made with

    @property
    def size(self) -> int:
        return int(self.squares.shape[1])

    def letterbox(self, row: int, size: int) -> Letterbox:
        return geometry_letterbox(self.geometry[row], size)

    def squares_at(self, size: int) -> np.ndarray:
        """Squares resized to `size` (the pack's own array when it already has that size)."""
        if size == self.size:
            return self.squares
        interp = cv2.INTER_AREA if size < self.size else cv2.INTER_LINEAR
        return np.stack([cv2.resize(s, (size, size), interpolation=interp) for s in self.squares])

    def training_boxes(self, rows: np.ndarray, labels: list[str], size: int) -> dict[int, np.ndarray]:
        """Row -> (K, 5) [label column, x0, y0, x1, y1] in model-input pixels, for rows in `rows` only."""
        keep = set(int(r) for r in rows)
        found: dict[int, list[list[float]]] = {}
        for r, li, x, y, w, h in self.boxes:
            row, lab = int(r), KNOWN_LABELS[int(li)]
            if row not in keep or lab not in labels:
                continue
            found.setdefault(row, []).append(model_box(self.letterbox(row, size), labels.index(lab), x, y, w, h))
        return {i: np.asarray(v[:MAX_BOXES], np.float32) for i, v in found.items()}

    def box_dicts(self, rows: set[int] | None = None) -> list[dict]:
        """Boxes in `pointing.read_boxes` form (the path is the image's row)."""
        return [{"path": int(r), "label": KNOWN_LABELS[int(li)], "x": float(x), "y": float(y), "w": float(w),
                 "h": float(h)} for r, li, x, y, w, h in self.boxes if rows is None or int(r) in rows]


def write_pack(samples: list[Sample], size: int, cache_dir: Path, out: Path, bbox_csv: Path | None = None,
               bbox_root: Path | None = None, quality: int = 0, progress: bool = True,
               crop: str | None = None) -> dict:
    """Write the pack; quality 0 stores lossless PNG, 1-100 JPEG at that quality. Returns a summary."""
    paths = [s.path for s in samples]
    built = build_cache(paths, size, cache_dir, progress=progress, crop=crop)
    cache, ok = built.squares, built.ok
    blobs: list[bytes] = []
    for i, sq in enumerate(cache):
        if not ok[i]:
            blobs.append(b"")
            continue
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else [cv2.IMWRITE_PNG_COMPRESSION, 9]
        good, buf = cv2.imencode(".jpg" if quality else ".png", np.asarray(sq), params)
        if not good:
            raise ValueError(f"{paths[i]}: could not encode the preprocessed image")
        blobs.append(buf.tobytes())
    index = {str(Path(p).resolve()): i for i, p in enumerate(paths)}
    rows = []
    if bbox_csv is not None:
        for b in read_boxes(bbox_csv, bbox_root):
            row = index.get(str(Path(b["path"]).resolve()))
            if row is not None and b["label"] in LABEL_INDEX:
                rows.append([row, LABEL_INDEX[b["label"]], b["x"], b["y"], b["w"], b["h"]])
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    arrays: dict[str, Any] = {
        "version": np.array(PACK_VERSION), "size": np.array(size), "data": np.frombuffer(b"".join(blobs), np.uint8),
        "offsets": offsets, "ok": np.array(ok), "paths": np.array([str(p) for p in paths]),
        "patients": np.array([s.patient_id for s in samples]), "views": np.array([s.view for s in samples]),
        "datasets": np.array([s.dataset for s in samples]), "targets": np.stack([s.target for s in samples]),
        "masks": np.stack([s.mask for s in samples]), "geometry": built.geometry, "crop": np.array(crop or ""),
        "labels": np.array(KNOWN_LABELS), "boxes": np.asarray(rows, np.float32).reshape(-1, 6)}
    atomic_write_stream(out, lambda fh: np.savez(fh, **arrays))
    return {"images": len(samples), "unreadable": int(len(ok) - sum(ok)), "boxes": len(rows),
            "bytes": out.stat().st_size}


def read_pack(path: Path) -> Pack:
    """Load and decode a pack (refuses other versions or a label vocabulary that differs).

    Decoded once per process and file version: training, pointing game, gate fitting and bundling read the same
    pack (treat the returned arrays as read-only)."""
    stat = Path(path).stat()
    return _read_pack(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _read_pack(path: str, _mtime_ns: int, _size: int) -> Pack:
    with np.load(path, allow_pickle=False) as z:
        if int(z["version"]) not in (1, PACK_VERSION):
            raise ValueError(f"{path}: pack version {int(z['version'])}, expected {PACK_VERSION}")
        if list(z["labels"]) != list(KNOWN_LABELS):
            raise ValueError(f"{path}: packed with another label vocabulary")
        size, data, offsets, ok = int(z["size"]), z["data"], z["offsets"], [bool(v) for v in z["ok"]]
        squares = np.zeros((len(ok), size, size), np.uint8)
        for i in range(len(ok)):
            if ok[i]:
                square = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_GRAYSCALE)
                if square is None:
                    raise ValueError(f"{path}: packed image {i} could not be decoded")
                squares[i] = square
        samples = [Sample(Path(str(p)), str(pid), str(v), t.astype(np.float32), m.astype(np.float32), str(d))
                   for p, pid, v, t, m, d in zip(z["paths"], z["patients"], z["views"], z["targets"], z["masks"],
                                                 z["datasets"], strict=True)]
        if "geometry" in z:
            geometry, crop = z["geometry"].copy(), str(z["crop"]) or None
        else:  # version 1: whole images
            sizes = z["sizes"]
            geometry = np.concatenate([sizes, np.zeros_like(sizes), sizes], axis=1).astype(np.int32)
            crop = None
        return Pack(samples, squares, ok, geometry, z["boxes"].copy(), crop)
