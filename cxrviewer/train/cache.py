"""Pre-resized uint8 image cache: every training image decoded and letterboxed once.

Images go through exactly the app's path: `load_image` -> `model_input` -> `letterbox`; only the
result is quantised to uint8 (the sources are 8-bit) so an epoch costs no decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxrviewer.imaging import load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.model.preprocess import letterbox
from cxrviewer.train.export import write_json

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def encode_square(path: Path, size: int) -> np.ndarray:
    """Decode one file through the shared path and return its letterboxed uint8 square."""
    square, _ = letterbox(model_input(load_image(path)), size)
    return np.round(square * 255.0).astype(np.uint8)


def build_cache(paths: list[Path], size: int, cache_dir: Path, progress: bool = True) -> tuple[np.ndarray, list[bool]]:
    """(N, size, size) uint8 array for `paths` (memory-mapped from `cache_dir`) and per-image ok flags."""
    key = hashlib.sha1(json.dumps([CACHE_VERSION, size, [str(p) for p in paths]]).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_path = cache_dir / f"images-{size}-{key}.npy"
    ok_path = cache_dir / f"images-{size}-{key}.ok.json"
    if data_path.is_file() and ok_path.is_file():
        return np.load(data_path, mmap_mode="r"), json.loads(ok_path.read_text())
    arr = np.zeros((len(paths), size, size), dtype=np.uint8)
    ok = [True] * len(paths)
    for i, p in enumerate(tqdm(paths, desc=f"caching {size}px", disable=not progress, unit="img")):
        try:
            arr[i] = encode_square(p, size)
        except ImageLoadError as exc:
            log.warning("skipping unreadable training image: %s", exc)
            ok[i] = False
    tmp = data_path.with_name(data_path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(data_path)
    write_json(ok_path, ok)
    return np.load(data_path, mmap_mode="r"), ok
