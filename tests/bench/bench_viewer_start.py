"""Viewer benchmark (run by hand, 2 cores): the film first, and the viewer against cxrviewer-predict.

    python tests/bench/bench_viewer_start.py [--films DIR] [--dicom FILE] [--runs 2] [--skip-batch | --skip-first]

Each viewer measurement runs in a fresh process (offscreen Qt, temporary settings, the bundled model):

1. open -> film on screen, model still loading: `cxrviewer FILE` as a user starts it, from the moment the
   window asks for the file until the film is painted (goal <= 1 s for a 2k DICOM; default pydicom-data's
   RG1_UNCR.dcm, 1841 x 1955 15-bit CR); the line says whether the model was still loading then;
2. open -> film on screen, warm (model loaded, decoders running; another copy of the same file; goal <= 0.3 s);
3. a batch (default the 33 NIH demo films in ../shared/data/nih/demo): the viewer from its process start (and
   from the open) until every film is analysed, model load included, against `cxrviewer-predict DIR` (process
   start to exit), alternately in the same run (goal: viewer <= 1.3 x CLI; per run and as a ratio of medians);
   meanwhile an event-loop stall probe (a 10 ms QTimer; lateness = gap - 10 ms; max and 99th percentile, during
   the model load and during the analyses, and for 3 s of an idle window afterwards as the machine's own
   baseline; goal: no stall > 50 ms while films are analysed) and J (next study) every 0.7 s, timed until the
   next film is painted (BENCH_NO_SWITCH=1: no presses, the analyses alone).
   `--viewer-threads 1,2` compares CXRVIEWER_THREADS settings against the same CLI runs.

Other agents may load the machine: numbers are pessimistic; compare viewer and CLI of the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILMS = REPO.parent / "shared" / "data" / "nih" / "demo"


def rg1_uncr() -> Path:
    import data_store  # pydicom-data: the files ship inside the package, nothing is downloaded

    return Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"


# --- child: one viewer process ----------------------------------------------------------------------------


def child(mode: str, target: Path, tmp: Path) -> dict:
    """Runs in a fresh process: start the viewer as `cxrviewer` does and measure one scenario."""
    t_start = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui import backend
    from cxrviewer.gui.app import make_application
    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.records import State
    from cxrviewer.gui.settings import AppSettings

    make_application(sys.argv[:1])
    settings = AppSettings(QSettings(str(tmp / f"{mode}.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings, backend.model_source(None))
    window.resize(1440, 900)
    clock = time.perf_counter
    out: dict = {"imports_s": round(clock() - t_start, 3)}
    late: list[tuple[float, float]] = []  # (time, lateness ms)
    last = [clock()]

    def beat() -> None:
        now = clock()
        late.append((now, (now - last[0]) * 1000 - 10))
        last[0] = now

    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(beat)

    def wait(condition, timeout: float = 600.0) -> None:  # noqa: ANN001
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(5)
        check.timeout.connect(lambda: (condition() or clock() > end) and loop.quit())
        end = clock() + timeout
        check.start()
        if not condition():
            loop.exec()
        check.stop()
        if not condition():
            raise SystemExit(f"timed out in {mode}")

    painted: dict[str, float] = {}

    def on_loaded(key: str, decoded: object) -> None:  # after the window's own slot put it on the canvas
        if key == window.displayed_image and key not in painted and window.canvas.has_image():
            window.repaint()
            painted[key] = clock()

    def film_shown(path: Path) -> bool:
        image = window.current_image()
        return image is not None and image.path == path and image.key in painted

    ready: list[float] = []
    window.pipeline.model_ready.connect(lambda engine: ready.append(clock()))
    window.pipeline.model_failed.connect(lambda message: ready.append(clock()))

    if mode == "first-film":
        window.pipeline.loaded.connect(on_loaded)  # connected after the window's: runs after it
        marks: dict[str, float] = {}
        window.pipeline.scanned.connect(lambda *_: marks.setdefault("scanned", clock()))
        window.pipeline.loaded.connect(lambda *_: marks.setdefault("decoded", clock()))
        t0 = clock()
        window.open_paths([target])  # as `cxrviewer FILE`: opened as the window appears
        window.show()
        marks["shown"] = clock()
        wait(lambda: film_shown(target), 120)
        out["open_to_film_s"] = round(painted[window.displayed_image] - t0, 3)
        out["phases_ms"] = {k: round(1000 * (v - t0)) for k, v in marks.items()}
        out["model_loading_then"] = not ready or ready[0] > painted[window.displayed_image]
        wait(lambda: window.pipeline.model_loaded, 300)
        out["open_to_model_s"] = round(ready[0] - t0, 3)
        wait(lambda: not window.pipeline.busy, 300)
        warm = []
        for i in range(3):  # warm: model loaded, decoders running, another copy each time
            copy = tmp / f"warm{i}" / target.name
            copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(target, copy)
            t0 = clock()
            window.open_paths([copy])
            wait(lambda copy=copy: film_shown(copy), 60)
            warm.append(painted[window.displayed_image] - t0)
            wait(lambda: not window.pipeline.busy, 300)
        out["warm_open_to_film_s"] = [round(w, 3) for w in warm]
    elif mode == "batch":
        done_at: list[float] = []
        window.pipeline.loaded.connect(on_loaded)
        window.show()
        probe.start()
        t0 = clock()
        window.open_paths([target])

        def all_done() -> bool:
            images = [i for s in window.studies.values() for i in s.images]
            return bool(images) and all(i.state not in (State.QUEUED, State.ANALYSING) for i in images) \
                and not window.pipeline.busy

        switches: list[float] = []

        def press_j() -> None:
            if all_done() or len(window.studies) < 2 or os.environ.get("BENCH_NO_SWITCH"):
                return
            before = window.displayed_image
            t = clock()
            window.table["next"].trigger()  # what J (or Down) does
            key = window.displayed_image
            if key and key != before:
                pending.append((key, t))

        pending: list[tuple[str, float]] = []

        def settle_switches() -> None:
            for key, t in list(pending):
                if key in painted:
                    switches.append(painted[key] - t)
                    pending.remove((key, t))
                elif window.displayed_image != key:
                    pending.remove((key, t))  # moved on before it was shown

        jk = QTimer()
        jk.setInterval(700)
        jk.timeout.connect(press_j)
        jk.start()
        settler = QTimer()
        settler.setInterval(5)
        settler.timeout.connect(settle_switches)
        settler.start()
        wait(all_done, 900)
        done_at.append(clock())
        out["done_wall"] = time.time()
        jk.stop()
        busy = list(late)
        late.clear()  # baseline: the window idle for 3 s afterwards (what the machine's other work alone causes)
        idle_end = clock() + 3.0
        wait(lambda: clock() > idle_end, 10)
        idle = sorted(ms for _, ms in late[1:])
        out["stall_idle"] = {"max_ms": round(idle[-1], 1), "p99_ms": round(idle[int(0.99 * (len(idle) - 1))], 1),
                             "over_50ms": sum(v > 50 for v in idle)}
        late[:] = busy
        probe.stop()
        jk.stop()
        settler.stop()
        images = [i for s in window.studies.values() for i in s.images]
        out["films"] = len(images)
        out["states"] = sorted({i.state.value for i in images})
        out["viewer_s"] = round(done_at[0] - t0, 3)
        out["model_ready_s"] = round(ready[0] - t0, 3) if ready else None
        split = ready[0] if ready else t0
        loading = [ms for t, ms in late if t <= split]
        analysing = [ms for t, ms in late if t > split]
        for name, values in (("stall_model_loading", loading), ("stall_analysing", analysing)):
            values = sorted(values)
            out[name] = {"max_ms": round(values[-1], 1), "p99_ms": round(values[int(0.99 * (len(values) - 1))], 1),
                         "over_50ms": sum(v > 50 for v in values)} if values else None
        out["switch_s"] = [round(s, 3) for s in switches]
        out["stage_s"] = {}
        for image in images:
            for stage, seconds in (getattr(image.prediction, "timings", None) or {}).items():
                out["stage_s"][stage] = out["stage_s"].get(stage, 0.0) + seconds
        out["stage_s"] = {k: round(v, 2) for k, v in out["stage_s"].items()}
    window.close()
    QApplication.processEvents()
    return out


def run_child(mode: str, target: Path, tmp: Path, threads: str = "") -> dict:
    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "config"), QT_QPA_PLATFORM="offscreen")
    if threads:
        env["CXRVIEWER_THREADS"] = threads
    spawned = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(target), str(tmp)],
                          capture_output=True, text=True, env=env, timeout=1200)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if "done_wall" in out:  # process start to the last film analysed, as the CLI's time is counted
        out["viewer_process_s"] = round(out["done_wall"] - spawned, 3)
    return out


def cli_seconds(films: Path, tmp: Path) -> float:
    exe = shutil.which("cxrviewer-predict") or "cxrviewer-predict"
    t0 = time.perf_counter()
    proc = subprocess.run([exe, str(films), "--output", str(tmp / "cli.json"), "--quiet"], capture_output=True,
                          text=True, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"cxrviewer-predict failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def report_first(firsts: list[dict], dicom: Path) -> None:
    print(f"open -> film on screen ({dicom.name}, model loading): median "
          f"{1000 * statistics.median(r['open_to_film_s'] for r in firsts):.0f} ms (goal <= 1000 ms)")
    warm = [w for r in firsts for w in r["warm_open_to_film_s"]]
    print(f"open -> film on screen, warm: median {1000 * statistics.median(warm):.0f} ms, worst "
          f"{1000 * max(warm):.0f} ms (goal <= 300 ms)")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--films", type=Path, default=FILMS, help="folder analysed by both (default: NIH demo)")
    parser.add_argument("--dicom", type=Path, default=None, help="the 2k film to open (default RG1_UNCR.dcm)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-first", action="store_true", help="only the batch")
    parser.add_argument("--viewer-threads", default="", metavar="N[,M]",
                        help="CXRVIEWER_THREADS settings of the batch's viewer runs, each after the same CLI run "
                             "(default: the app's own choice)")
    args = parser.parse_args()
    dicom = args.dicom or rg1_uncr()
    tmp = Path(tempfile.mkdtemp(prefix="cxrviewer-bench-start-"))
    print(f"CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (other work on the machine "
          "makes every number pessimistic)")
    try:
        firsts = [] if args.skip_first else [run_child("first-film", dicom, tmp) for _ in range(args.runs)]
        for r in firsts:
            print(f"  open -> film {r['open_to_film_s'] * 1000:.0f} ms (model still loading: "
                  f"{r['model_loading_then']}; model ready after {r['open_to_model_s']:.1f} s; "
                  f"{', '.join(f'{k} at {v}' for k, v in r['phases_ms'].items())} ms), warm "
                  + ", ".join(f"{w * 1000:.0f}" for w in r["warm_open_to_film_s"]) + " ms")
        if firsts:
            report_first(firsts, dicom)
        if args.skip_batch:
            return 0
        films = sorted(p for p in args.films.iterdir() if p.is_file())
        print(f"batch: {len(films)} files in {args.films}")
        ratios: dict[str, list[float]] = {}
        times: dict[str, list[float]] = {"cli": []}
        settings = args.viewer_threads.split(",") if args.viewer_threads else [""]
        for run, threads in ((r, t) for r in range(args.runs) for t in settings):
            cli = cli_seconds(args.films, tmp)
            viewer = run_child("batch", args.films, tmp, threads)
            ratios.setdefault(threads, []).append(viewer["viewer_process_s"] / cli)
            times["cli"].append(cli)
            times.setdefault(threads, []).append(viewer["viewer_process_s"])
            switches = viewer["switch_s"]
            name = f"viewer ({threads} thread(s))" if threads else "viewer"
            print(f"  run {run + 1}: cxrviewer-predict {cli:.1f} s; {name} {viewer['viewer_process_s']:.1f} s from "
                  f"process start ({viewer['viewer_s']:.1f} s from the open; {viewer['films']} films, "
                  f"{'/'.join(viewer['states'])}; model ready {viewer['model_ready_s']} s after the open) "
                  f"-> {ratios[threads][-1]:.2f} x")
            print(f"    stalls while analysing: {viewer['stall_analysing']}; while the model loads: "
                  f"{viewer['stall_model_loading']}; window idle afterwards: {viewer['stall_idle']}")
            if switches:
                print(f"    J -> next film painted: median {1000 * statistics.median(switches):.0f} ms, worst "
                      f"{1000 * max(switches):.0f} ms over {len(switches)} presses")
            print(f"    engine stages summed (s): {viewer['stage_s']}")
        cli_median = statistics.median(times["cli"])
        for threads, values in ratios.items():
            viewer_median = statistics.median(times[threads])
            print(f"viewer{f' ({threads} thread(s))' if threads else ''} / CLI, both from process start: "
                  f"{', '.join(f'{r:.2f}' for r in values)} per run; medians {viewer_median:.1f} s / "
                  f"{cli_median:.1f} s = {viewer_median / cli_median:.2f} (goal <= 1.3)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":  # the decoding helpers start with "spawn": they import this file without running it
    sys.exit(main())
