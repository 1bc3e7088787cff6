"""Take the README screenshots of the viewer under a real X server (run by hand, not a test).

    xvfb-run -a -s "-screen 0 1440x900x24" python tests/gui/screenshots.py --out resources/screenshots \
        [--model CARD.json]

Needs ImageMagick's `import`. Shots: the start screen, an analysed demo study with its heat map, and the
error state of a folder holding broken files. Settings go to a temporary file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings
from PySide6.QtWidgets import QApplication

from cxrviewer.gui import backend
from cxrviewer.gui.app import make_application
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.study_browser import MOST_ABNORMAL

MAX_BYTES = 290 * 1024
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def wait(condition, timeout: float = 120.0) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the viewer did not get there in time")
        pump(0.05)


def shot(path: Path) -> None:
    pump(0.6)
    strays = [w for w in QApplication.topLevelWidgets() if w.isVisible() and not isinstance(w, MainWindow)]
    if strays:
        print("stray windows:", [(type(w).__name__, w.objectName(), w.geometry()) for w in strays])
    raw = path.with_suffix(".raw.png")
    subprocess.run(["import", "-window", "root", str(raw)], check=True)
    # palette PNG, no dithering (dither noise compresses badly); shrink only if still over the size cap
    for options in (["+dither", "-colors", "256"], ["-resize", "1280x", "+dither", "-colors", "224"],
                    ["-resize", "1200x", "+dither", "-colors", "160"]):
        subprocess.run(["convert", str(raw), *options, "-define", "png:compression-level=9", str(path)],
                       check=True)
        if path.stat().st_size <= MAX_BYTES:
            break
    raw.unlink()
    print(f"{path}: {path.stat().st_size // 1024} KB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("resources/screenshots"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cxrviewer-shots-"))
    app = make_application(sys.argv[:1])
    settings = AppSettings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, backend.model_source(args.model))
    window.setGeometry(0, 0, args.width, args.height)
    window.show()
    wait(lambda: window.pipeline.model_loaded)
    shot(args.out / "start.png")

    window.open_demo()
    wait(lambda: window.studies and not window.pipeline.busy)
    window.browser.set_sort_mode(MOST_ABNORMAL)
    best = window.browser.keys_in_order()[0]
    window.browser.set_current(best)
    wait(window.canvas.has_image)
    pump(0.5)
    shot(args.out / "analysed.png")

    broken = tmp / "incoming"
    broken.mkdir()
    shutil.copyfile(SHARED / "dicom" / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm", broken / "knee.dcm")
    (broken / "truncated.dcm").write_bytes((SHARED / "dicom" / "udacity_nih_test3.dcm").read_bytes()[:30000])
    (broken / "scan.png").write_bytes(b"not an image " * 40)
    window.clear_studies()
    window.open_paths([broken, SHARED / "dicom" / "udacity_nih_test2.dcm"])
    wait(lambda: len(window.studies) >= 3 and not window.pipeline.busy)
    rejected = [k for k, s in window.studies.items() if s.state == State.REJECTED]
    errors = [k for k, s in window.studies.items() if s.state == State.ERROR]
    window.browser.set_current((rejected or errors)[0])
    wait(window.canvas.has_image, 30)
    shot(args.out / "errors.png")
    window.close()
    app.quit()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
