"""`cxrviewer` entry point: parse arguments, build the application and the main window."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cxrviewer import __version__

if TYPE_CHECKING:  # Qt and the window load after the arguments are parsed
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui.main_window import MainWindow

log = logging.getLogger(__name__)

SELF_TEST_TIMEOUT_S = 180


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cxrviewer",
        description="Offline second-opinion viewer for chest radiographs. Not for diagnostic use.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="DICOM/PNG/JPEG files or folders to open")
    parser.add_argument("--demo", action="store_true", help="open the bundled demo study")
    parser.add_argument(
        "--model",
        type=Path,
        metavar="CARD",
        help="model card (JSON) to use instead of the bundled model "
        "(also: environment variable CXRVIEWER_MODEL)",
    )
    parser.add_argument(
        "--allow-modified-card",
        action="store_true",
        help="load a model card that does not match its seal (edited after training); the viewer then shows "
        "'modified model card' (also: environment variable CXRVIEWER_ALLOW_MODIFIED_CARD=1)",
    )
    parser.add_argument(
        "--self-test",
        type=Path,
        metavar="FILE",
        help="open FILE, wait for the findings, print them and exit (0 on success)",
    )
    parser.add_argument("--quit-after-show", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"cxrviewer {__version__}")
    return parser.parse_args(argv)


def configure_logging() -> None:
    level = os.environ.get("CXRVIEWER_LOG", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from cxrviewer.imaging.log_privacy import install_log_privacy

    install_log_privacy()  # no DICOM element values from pydicom & co. in the log


def make_application(argv: list[str]) -> QApplication:
    """The QApplication with cxrviewer's identity and dark theme (reuses an existing instance)."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui import assets
    from cxrviewer.gui.settings import APPLICATION, ORGANIZATION

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv)
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#15181d",
        QPalette.ColorRole.WindowText: "#dde1e7",
        QPalette.ColorRole.Base: "#181b21",
        QPalette.ColorRole.AlternateBase: "#1d2128",
        QPalette.ColorRole.Text: "#dde1e7",
        QPalette.ColorRole.Button: "#2a313b",
        QPalette.ColorRole.ButtonText: "#dde1e7",
        QPalette.ColorRole.Highlight: "#2f5f91",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#262b33",
        QPalette.ColorRole.ToolTipText: "#e8ebef",
        QPalette.ColorRole.PlaceholderText: "#7f8792",
        QPalette.ColorRole.Link: "#6fb1ff",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6c737d"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6c737d"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#6c737d"))
    app.setPalette(palette)
    app.setStyleSheet(assets.stylesheet())
    app.setWindowIcon(assets.icon("app"))
    return app


class SelfTest:
    """Open one file, wait until it is analysed (or fails), print the outcome and quit."""

    def __init__(self, window: MainWindow, path: Path) -> None:
        self.window = window
        self.path = path
        self.exit_code = 2
        window.image_finished.connect(self._finished)
        window.pipeline.model_failed.connect(self._model_failed)

    def start(self) -> None:
        self.window.open_paths([self.path])

    def _model_failed(self, message: str) -> None:
        print(f"self-test: no model: {message}", flush=True)

    def _finished(self, key: str) -> None:
        from PySide6.QtWidgets import QApplication

        entry = self.window.worklist.entry(key)
        if entry is None:
            return
        image = entry.image
        print(f"file: {image.path.name}")
        print(f"state: {image.state.value}")
        engine = self.window.engine
        if engine is not None:
            print(f"model: {engine.name}")
        prediction = image.prediction
        if image.message:
            print(f"message: {image.message}")
        if prediction is not None:
            print(f"gate: {prediction.gate.status}")
            for f in prediction.findings:
                print(
                    f"  {f.label:<28} {f.probability:6.3f}  threshold {f.threshold:.3f}"
                    f"{'  POSITIVE' if f.positive else ''}"
                )
            for label in getattr(engine, "not_covered", []) or []:
                print(f"  {label:<28} not assessed by this model")
        sys.stdout and sys.stdout.flush()  # windowed builds have no stdout
        self.exit_code = 0 if image.state.value in ("done", "rejected") else 1
        QApplication.exit(self.exit_code)


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen build re-enters here to start a decoding helper
    t0 = time.perf_counter()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    if args.self_test and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.paths or args.demo or args.self_test:  # the decoding helper starts while Qt loads
        from cxrviewer.gui.backend import warm_decoder

        threading.Thread(target=warm_decoder, name="cxr-warm-decoder", daemon=True).start()

    from PySide6.QtCore import QSettings, QTimer

    from cxrviewer.gui import backend
    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.settings import AppSettings

    app = make_application([sys.argv[0]])
    if args.self_test:  # never touch the user's settings from a self-test
        tmp = tempfile.TemporaryDirectory(prefix="cxrviewer-selftest-")
        settings = AppSettings(QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.Format.IniFormat))
    else:
        settings = AppSettings()
    window = MainWindow(settings, backend.model_source(args.model, args.allow_modified_card))
    if not (args.quit_after_show or args.self_test):  # scanning starts before the first frame; the model waits
        if args.paths:  # until the film it opens is on screen (`Pipeline.load_model(when_free=True)`)
            window.open_paths(list(args.paths))
        if args.demo:
            window.open_demo()
    window.show()
    log.info("window shown after %.0f ms", 1000 * (time.perf_counter() - t0))

    if args.quit_after_show:  # start-up benchmark: report when the first frame is on screen

        def report() -> None:
            print(f"shown {time.time():.6f}", flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(0, report)
        return app.exec()

    if args.self_test:
        test = SelfTest(window, args.self_test)
        QTimer.singleShot(0, test.start)

        def give_up() -> None:
            print(f"self-test: no result within {SELF_TEST_TIMEOUT_S} s", flush=True)
            app.exit(3)

        QTimer.singleShot(SELF_TEST_TIMEOUT_S * 1000, give_up)
        code = app.exec()
        window.close()
        return code

    code = app.exec()
    window.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
