"""Pre-resized uint8 image cache: every training image decoded and letterboxed once.

Images go through exactly the app's path: `load_image` -> `model_input` -> `letterbox` (with the model's
crop mode); only the result is quantised to uint8 (the sources are 8-bit) so an epoch costs no decoding.
Each image's crop region (original pixels) is kept beside it, so boxes can be mapped into the square.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxrviewer.fileio import atomic_write_json, atomic_write_stream
from cxrviewer.imaging import load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.model.preprocess import Letterbox, letterbox

log = logging.getLogger(__name__)
CACHE_VERSION = 2


def encode_square(path: Path, size: int, crop: str | None = None) -> tuple[np.ndarray, Letterbox]:
    """Decode one file through the shared path: its letterboxed uint8 square and the letterbox."""
    square, box = letterbox(model_input(load_image(path)), size, crop)
    return np.round(square * 255.0).astype(np.uint8), box


@dataclass
class Cache:
    """(N, size, size) uint8 squares (memory-mapped), per-image ok flags, and (N, 6) int32 rows of
    original width, height and crop region x, y, w, h."""

    squares: np.ndarray
    ok: list[bool]
    geometry: np.ndarray

    def letterbox(self, row: int, size: int) -> Letterbox:
        return geometry_letterbox(self.geometry[row], size)


def geometry_letterbox(geometry: np.ndarray, size: int) -> Letterbox:
    """The letterbox of one (width, height, crop x, y, w, h) geometry row at input size `size`."""
    w, h, x, y, cw, ch = (int(v) for v in geometry)
    return Letterbox.fit(w, h, size, (x, y, cw, ch))


def build_cache(paths: list[Path], size: int, cache_dir: Path, progress: bool = True,
                crop: str | None = None) -> Cache:
    """The squares of `paths` through the shared preprocessing, cached in `cache_dir`."""
    key = hashlib.sha1(json.dumps([CACHE_VERSION, size, crop, [str(p) for p in paths]]).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_path = cache_dir / f"images-{size}-{key}.npy"
    geo_path = cache_dir / f"images-{size}-{key}.geometry.npy"
    ok_path = cache_dir / f"images-{size}-{key}.ok.json"
    if data_path.is_file() and ok_path.is_file() and geo_path.is_file():
        return Cache(np.load(data_path, mmap_mode="r"), json.loads(ok_path.read_text()), np.load(geo_path))
    arr = np.zeros((len(paths), size, size), dtype=np.uint8)
    geo = np.tile(np.array([size, size, 0, 0, size, size], np.int32), (len(paths), 1))
    ok = [True] * len(paths)
    for i, p in enumerate(tqdm(paths, desc=f"caching {size}px", disable=not progress, unit="img")):
        try:
            arr[i], box = encode_square(p, size, crop)
        except ImageLoadError as exc:
            log.warning("skipping unreadable training image: %s", exc)
            ok[i] = False
            continue
        geo[i] = (box.orig_width, box.orig_height, *box.region)
    atomic_write_stream(data_path, lambda fh: np.save(fh, arr))
    atomic_write_stream(geo_path, lambda fh: np.save(fh, geo))
    atomic_write_json(ok_path, ok)
    return Cache(np.load(data_path, mmap_mode="r"), ok, geo)
