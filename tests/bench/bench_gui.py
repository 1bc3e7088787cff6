"""Viewer benchmark (run by hand): start-up, drop-to-findings and event-loop stalls.

    python tests/bench/bench_gui.py [--model CARD.json] [--runs 5]

1. launch -> window shown: a fresh `python -m cxrviewer.gui.app --quit-after-show` process, from spawn
   to the first frame painted (goal <= 1.5 s);
2. drop -> findings painted: an uncompressed ~2k x 2k DICOM (pydicom-data RG1_UNCR.dcm, 1841 x 1955,
   15-bit CR) opened with a warm model, until the findings panel and the heat map are painted
   (goal <= 500 ms);
3. the longest event-loop stall while that study is decoded and analysed, from a 2 ms QTimer heartbeat
   (goal <= 50 ms).

Uses the bundled model unless --model (or CXRVIEWER_MODEL) names another; QT_QPA_PLATFORM defaults to
offscreen. Settings go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def startup_times(runs: int, tmp: Path, model: Path | None) -> list[float]:
    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "config"))
    cmd = [sys.executable, "-m", "cxrviewer.gui.app", "--quit-after-show"]
    if model is not None:
        cmd += ["--model", str(model)]
    out = []
    for _ in range(runs):
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("shown ")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"start-up run failed: {proc.stdout}\n{proc.stderr}")
        out.append(float(line.split()[1]) - t0)
    return out


def rg1_uncr() -> Path:
    import data_store  # pydicom-data: the files ship inside the package, nothing is downloaded

    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pip install pydicom-data")
    return path


def drop_to_findings(runs: int, tmp: Path, model: Path | None) -> tuple[list[float], list[float], list[dict]]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui import backend
    from cxrviewer.gui.app import make_application
    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.records import State
    from cxrviewer.gui.settings import AppSettings

    app = make_application(sys.argv[:1])
    settings = AppSettings(QSettings(str(tmp / "bench.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, backend.model_source(model))
    window.resize(1440, 900)
    window.show()

    def pump_until(condition, timeout: float = 120.0) -> None:  # noqa: ANN001
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting for the viewer")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)

    pump_until(lambda: window.pipeline.model_loaded)
    if window.engine is None:
        raise SystemExit("no model: pass --model CARD.json (the bundled model is not installed yet)")
    source = rg1_uncr()
    # warm-up: one full pass on a copy (model, decoders and code paths warm)
    warm = tmp / "warm" / "warm.dcm"
    warm.parent.mkdir()
    shutil.copyfile(source, warm)
    window.open_paths([warm])
    pump_until(lambda: window.studies and all(i.state not in (State.QUEUED, State.ANALYSING)
                                              for s in window.studies.values() for i in s.images))

    totals, stalls, timings = [], [], []
    beats: list[float] = []
    clock = QElapsedTimer()
    heartbeat = QTimer()
    heartbeat.setInterval(2)
    heartbeat.timeout.connect(lambda: beats.append(clock.nsecsElapsed() / 1e6))
    # baseline: the same heartbeat with nothing to do (what the machine's load alone causes)
    beats.clear()
    clock.start()
    heartbeat.start()
    pump_until(lambda: clock.elapsed() > 3000)
    heartbeat.stop()
    idle = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    print(f"  idle heartbeat (no work): longest gap {max(idle):.1f} ms, 99th percentile "
          f"{sorted(idle)[int(0.99 * len(idle))]:.1f} ms")
    marks: dict[str, float] = {}
    for name in ("scanned", "loaded"):
        getattr(window.pipeline, name).connect(
            lambda *args, name=name: marks.setdefault(name, clock.nsecsElapsed() / 1e6))
    phases: list[dict[str, float]] = []
    painted: list[float] = []

    def on_findings(key: str) -> None:
        window.repaint()  # paint synchronously: the findings and the heat map are on screen
        painted.append(clock.nsecsElapsed() / 1e6)

    for run in range(runs):
        window.clear_studies()
        for _ in range(20):
            app.processEvents()
        painted.clear()
        marks.clear()

        window.findings_shown.connect(on_findings)
        beats.clear()
        clock.start()
        heartbeat.start()
        window.open_paths([source])  # what a drop does
        pump_until(lambda: bool(painted))
        heartbeat.stop()
        window.findings_shown.disconnect(on_findings)
        totals.append(painted[0])
        phases.append({"scan": marks["scanned"], "decode + first display": marks["loaded"] - marks["scanned"],
                       "inference + findings painted": painted[0] - marks["loaded"]})
        gaps = [b - a for a, b in zip([0.0, *beats], beats, strict=False)]
        stalls.append(max(gaps) if gaps else float("nan"))
        image = next(iter(window.studies.values())).images[0]
        timings.append(dict(getattr(image.prediction, "timings", {}) or {}))
        print(f"  run {run + 1}: drop -> findings painted {painted[0]:.0f} ms, longest stall {stalls[-1]:.1f} ms")
    print("  phases (median ms): " + ", ".join(
        f"{k} {statistics.median(p[k] for p in phases):.0f}" for k in phases[0]))
    name = window.engine.name
    window.close()
    app.quit()
    QApplication.processEvents()
    print(f"  model: {name}")
    return totals, stalls, timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model card (default: bundled)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxrviewer-bench-"))
    try:
        print(f"platform: {os.environ['QT_QPA_PLATFORM']}, CPU cores: {os.cpu_count()}")
        starts = startup_times(args.runs, tmp, args.model)
        print(f"launch -> window shown: median {1000 * statistics.median(starts):.0f} ms "
              f"(min {1000 * min(starts):.0f}, max {1000 * max(starts):.0f}; goal <= 1500 ms)")
        totals, stalls, timings = drop_to_findings(args.runs, tmp, args.model)
        print(f"drop -> findings painted (RG1_UNCR.dcm 1841x1955, warm model): median "
              f"{statistics.median(totals):.0f} ms (min {min(totals):.0f}, max {max(totals):.0f}; goal <= 500 ms)")
        print(f"longest event-loop stall during analysis: median {statistics.median(stalls):.1f} ms, "
              f"worst {max(stalls):.1f} ms (goal <= 50 ms)")
        stages = sorted({k for t in timings for k in t})
        if stages:
            print("engine stages (median ms): " + ", ".join(
                f"{k} {1000 * statistics.median(t.get(k, 0.0) for t in timings):.0f}" for k in stages))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
