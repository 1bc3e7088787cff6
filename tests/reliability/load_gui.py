"""Load harness for the viewer (run by hand; prints numbers): N files dropped on the window at once.

    python tests/reliability/load_gui.py                  # 500 files, bundled model, offscreen
    python tests/reliability/load_gui.py --files 200 --model models/x.json

Builds N files as `load_predict.py` does (NIH PNGs, Kermany JPEGs, every shared DICOM) but gives each DICOM
copy its own Study/Series/SOP Instance UIDs, so that every file is its own study in the worklist. Then, in
one viewer window with a warm model:

1. drop all N files (`open_paths`, what a drop does) and wait until every image is analysed or refused;
   report wall time, images/s, the longest event-loop stall (a 2 ms QTimer heartbeat; an idle baseline is
   printed first), and the peak RSS of the app together with its decoding helper processes (sampled);
2. check that every file is in the worklist and that the findings of a sample equal those of a direct
   `Engine.predict(load_image(path))` (probabilities to 1e-6);
3. clear, drop the N files again and press Cancel after `--cancel-after` seconds: report how long until
   the pipeline is idle and how many images were left unanalysed ("analysis cancelled").

Exit status 1 if a file is missing, a sample differs, the peak RSS exceeds --max-rss-mb or the longest stall
exceeds --max-stall-ms.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[0]))

from load_predict import make_files, tree_rss_mb  # noqa: E402


def distinct_dicoms(files: list[Path]) -> None:
    """Give every DICOM copy new UIDs (in place): copies of one file would otherwise be one image."""
    import pydicom
    from pydicom.uid import generate_uid

    for path in files:
        if path.suffix.lower() != ".dcm":
            continue
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        if "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--model", type=Path, help="model card (default: the bundled model)")
    parser.add_argument("--sample", type=int, default=8, help="images compared with a direct prediction")
    parser.add_argument("--cancel-after", type=float, default=3.0)
    parser.add_argument("--max-rss-mb", type=float, default=1536.0)
    parser.add_argument("--max-stall-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    from conftest import SHARED_DATA
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer

    from cxrviewer.gui import backend
    from cxrviewer.gui.app import make_application
    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.records import State
    from cxrviewer.gui.settings import AppSettings
    from cxrviewer.imaging import load_image

    tmp = Path(tempfile.mkdtemp(prefix="cxr-gui-load-"))
    try:
        files = make_files(tmp / "inputs", args.files, SHARED_DATA)
        distinct_dicoms(files)
        app = make_application(sys.argv[:1])
        settings = AppSettings(QSettings(str(tmp / "load.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings, backend.model_source(args.model))
        window.resize(1440, 900)
        window.show()

        def pump_until(condition, timeout: float = 1800.0) -> None:  # noqa: ANN001
            end = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > end:
                    raise SystemExit("timed out waiting for the viewer")
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)

        def images() -> list:
            return [img for s in window.studies.values() for img in s.images]

        def settled() -> bool:
            imgs = images()
            return (len(imgs) >= len(files) and not window.pipeline.busy
                    and all(i.state not in (State.QUEUED, State.ANALYSING) for i in imgs))

        pump_until(lambda: window.pipeline.model_loaded)
        if window.engine is None:
            raise SystemExit("no model: pass --model CARD.json")
        print(f"{len(files)} files; model {window.engine.name}; {os.cpu_count()} CPUs")

        clock = QElapsedTimer()
        beats: list[float] = []
        heartbeat = QTimer()
        heartbeat.setInterval(2)
        heartbeat.timeout.connect(lambda: beats.append(clock.nsecsElapsed() / 1e6))
        clock.start()
        heartbeat.start()
        pump_until(lambda: clock.elapsed() > 3000)
        heartbeat.stop()
        idle = [b - a for a, b in zip(beats, beats[1:], strict=False)]
        print(f"idle heartbeat: longest gap {max(idle):.1f} ms")

        rss: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss.append(tree_rss_mb(os.getpid()))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        beats.clear()
        clock.start()
        heartbeat.start()
        t0 = time.monotonic()
        scanned_at: list[float] = []
        window.pipeline.scanned.connect(lambda *_: scanned_at.append(clock.nsecsElapsed() / 1e6))
        window.open_paths(files)
        pump_until(settled)
        seconds = time.monotonic() - t0
        heartbeat.stop()
        done.set()
        sampler.join()
        pairs = list(zip([0.0, *beats], beats, strict=False))
        worst = max(pairs, key=lambda ab: ab[1] - ab[0])
        gaps = sorted(b - a for a, b in pairs)
        states: dict[str, int] = {}
        for img in images():
            states[str(img.state)] = states.get(str(img.state), 0) + 1
        listed = {img.path for img in images()}
        missing = [f for f in files if f not in listed]
        print(f"drop of {len(files)} files: {seconds:.1f} s -> {len(files) / seconds:.1f} images/s; states {states}; "
              f"missing {len(missing)}")
        print(f"event loop: longest stall {gaps[-1]:.1f} ms, 99th percentile {gaps[int(0.99 * len(gaps))]:.1f} ms "
              f"({len(gaps)} heartbeats); the longest began {worst[0]:.0f} ms after the drop, the scan result "
              f"arrived at {scanned_at[0] if scanned_at else float('nan'):.0f} ms")
        peak = max(rss)
        print(f"RSS of the app + decoding helpers (sampled every 0.5 s): start {rss[0]:.0f} MB, "
              f"peak {peak:.0f} MB, end {rss[-1]:.0f} MB")

        analysed = [img for img in images() if img.prediction is not None and img.prediction.findings]
        diffs = []
        for img in random.Random(1).sample(analysed, min(args.sample, len(analysed))):
            direct = window.engine.predict(load_image(img.path), force=img.forced)
            a = {f.label: f.probability for f in img.prediction.findings}
            b = {f.label: f.probability for f in direct.findings}
            if a.keys() != b.keys() or any(abs(a[k] - b[k]) > 1e-6 for k in a):
                diffs.append(img.path.name)
        print(f"sample identical to direct predictions: {min(args.sample, len(analysed)) - len(diffs)}/"
              f"{min(args.sample, len(analysed))} {diffs or ''}")

        window.clear_studies()
        pump_until(lambda: not window.pipeline.busy)
        window.open_paths(files)
        pump_until(lambda: len(images()) >= len(files))
        t1 = time.monotonic()
        pump_until(lambda: time.monotonic() - t1 > args.cancel_after)
        t2 = time.monotonic()
        window.table.actions["cancel"].trigger()
        pump_until(lambda: not window.pipeline.busy)
        stop_s = time.monotonic() - t2
        cancelled = sum(1 for img in images() if img.message == "analysis cancelled")
        finished = sum(1 for img in images() if img.state in (State.DONE, State.REJECTED, State.ERROR))
        print(f"cancel after {args.cancel_after:g} s: idle {1000 * stop_s:.0f} ms later; {finished} finished, "
              f"{cancelled} cancelled")
        window.close()
        app.processEvents()
        ok = (not missing and not diffs and peak <= args.max_rss_mb and gaps[-1] <= args.max_stall_ms
              and cancelled > 0)
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
