"""A viewer started in a process of its own, for what cannot be checked inside the test process (where torch
is already imported): which modules showing a film imports, and a torch install that does not import.

    python tests/gui/start_probe.py FILE CARD [--block-model | --broken MODULE]

Opens FILE with the model card CARD, waits (at most PROBE_TIMEOUT_S) until the film is on the canvas and, with
--broken, until the model has failed, then prints one JSON line: film shown, model state, the findings panel's
model text, the image's state and whether torch / torchvision were imported. `--block-model`: the model load
never finishes (it waits until the window closes); `--broken MODULE`: importing MODULE raises the RuntimeError a
torchvision built for another torch raises.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import threading
import time
from pathlib import Path

PROBE_TIMEOUT_S = 60.0


class BrokenModule(importlib.abc.MetaPathFinder):
    """Import of `name` (and its submodules) fails as a mismatched torchvision does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise RuntimeError(f"operator {self.name}::nms does not exist")


def main() -> int:
    file, card = Path(sys.argv[1]), Path(sys.argv[2])
    options = sys.argv[3:]
    if "--broken" in options:
        sys.meta_path.insert(0, BrokenModule(options[options.index("--broken") + 1]))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui import backend
    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.settings import AppSettings

    release = threading.Event()
    if "--block-model" in options:

        def blocked(source: backend.ModelSource) -> object:
            release.wait()
            raise backend.TorchUnavailable("not loaded: the probe blocked the model")

        backend.load_engine = blocked
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = AppSettings(QSettings(str(Path(os.environ.get("TMPDIR", "/tmp")) / f"probe-{os.getpid()}.ini"),
                                     QSettings.Format.IniFormat))
    window = MainWindow(settings, backend.ModelSource(card, "test"))
    window.show()
    window.open_paths([file])

    def settled() -> bool:
        return window.canvas.has_image() and ("--broken" not in options or window.pipeline.model_loaded)

    end = time.monotonic() + PROBE_TIMEOUT_S
    while not settled() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    image = window.current_image()
    if "--broken" in options and image is not None:  # the image's own verdict follows the model's
        while image.state.value in ("queued", "analysing") and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
    result = {
        "film": window.canvas.has_image(),
        "model_loaded": window.pipeline.model_loaded,
        "engine": window.engine is not None,
        "model_text": window.findings.model_label.text(),
        "status_text": window.findings.status_label.text(),
        "image_state": image.state.value if image is not None else None,
        "torch": "torch" in sys.modules,
        "torchvision": "torchvision" in sys.modules,
    }
    print(json.dumps(result), flush=True)
    release.set()
    window.close()
    return 0


if __name__ == "__main__":  # the decoding helpers start with "spawn": they import this file without running it
    sys.exit(main())
