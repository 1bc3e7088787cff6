"""The two bounded caches of the viewer: decoded images and heat-map overlays (plain Python, no Qt)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cxrviewer.gui.backend import Decoded

#: Decoded images kept (the displayed one is never evicted).
IMAGE_CACHE_SIZE = 6
#: Heat-map overlays kept, (image key, label) -> premultiplied BGRA.
OVERLAY_CACHE_SIZE = 4 * IMAGE_CACHE_SIZE


class ImageCache:
    """Least-recently-used `backend.Decoded` images by image key."""

    def __init__(self, size: int = IMAGE_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, Decoded] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Decoded | None:
        """The decoded image (marked as recently used), or None."""
        decoded = self._items.get(key)
        if decoded is not None:
            self._items.move_to_end(key)
        return decoded

    def peek(self, key: str) -> Decoded | None:
        """The decoded image without touching its age, or None."""
        return self._items.get(key)

    def put(self, key: str, decoded: Decoded, keep: str = "") -> None:
        """Store `decoded`; the oldest images go, except `keep` (the displayed one)."""
        self._items[key] = decoded
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            oldest = next(iter(self._items))
            if oldest == keep:
                self._items.move_to_end(oldest)
                if len(self._items) <= self.size + 1:
                    break
                continue
            self._items.pop(oldest)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)


class OverlayCache:
    """Least-recently-used heat-map overlays by (image key, label)."""

    def __init__(self, size: int = OVERLAY_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, key: str, label: str) -> np.ndarray | None:
        return self._items.get((key, label))

    def put(self, key: str, label: str, bgra: np.ndarray) -> np.ndarray:
        self._items[(key, label)] = bgra
        self._items.move_to_end((key, label))
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return bgra

    def drop_image(self, key: str) -> None:
        """Forget every overlay of one image (it is analysed again)."""
        for cached in [k for k in self._items if k[0] == key]:
            del self._items[cached]
