"""A decoding helper started ahead of time serves the first file: a load during the start waits for it."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from cxrviewer.imaging.guarded import GuardedLoader


def helpers() -> int:
    return sum(1 for p in multiprocessing.active_children() if p.name == "cxr-decoder")


def test_a_load_during_start_uses_the_helper_being_started(shared_data: Path) -> None:
    film = shared_data / "nih" / "images" / "00000001_000.png"
    before = helpers()
    with GuardedLoader(timeout=60, size=2) as loader:
        starter = threading.Thread(target=loader.start)
        starter.start()
        image = loader.load(film)  # while the helper starts: waits for it instead of starting a second one
        starter.join(60)
        assert image.width > 0 and image.path == film
        assert helpers() - before == 1
        loader.start()  # one is idle: nothing more starts
        assert helpers() - before == 1
        assert loader.load(film).width == image.width
