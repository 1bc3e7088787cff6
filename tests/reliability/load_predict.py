"""Load harness for `cxrviewer-predict` (run by hand; prints numbers).

    python tests/reliability/load_predict.py                     # 500 files, bundled model or a tiny one
    python tests/reliability/load_predict.py --files 200 --model models/x.json --sample 8 --threads 2

Builds a folder of N files, copies (not links: the scan would fold hard links into one file) of the
shared NIH PNGs, Kermany JPEGs and every shared DICOM (chest films and the edge cases), runs
``cxrviewer-predict FOLDER`` once in a child process, and reports: files/s, peak RSS of the child (from
``getrusage(RUSAGE_CHILDREN)``) and its RSS over time (sampled from /proc), statuses, and whether the
results of a sample of files equal those of single-file runs (same status, message, probabilities to
1e-6, same CAM peaks). Model: ``--model``, else ``models/*.json`` of the repository, else an untrained
ResNet-18 at ``--size`` px written to the temporary folder (same compute as a trained one).
Exit status 1 if any file is missing from the results, a sample differs, or the peak exceeds --max-rss-mb.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))


def make_files(folder: Path, count: int, shared: Path, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    pngs = sorted((shared / "nih" / "images").glob("*.png"))
    jpegs = sorted((shared / "kermany" / "images").glob("*.jp*g"))
    dicoms = sorted((shared / "dicom").rglob("*.dcm"))
    n_dcm = max(len(dicoms), count // 5)
    n_jpg = count // 5
    n_png = count - n_dcm - n_jpg
    plan = ([("dcm", dicoms[i % len(dicoms)]) for i in range(n_dcm)] + [("jpg", p) for p in rng.sample(jpegs, n_jpg)]
            + [("png", p) for p in rng.sample(pngs, n_png)])
    out = []
    for i, (kind, src) in enumerate(plan):
        sub = folder / kind / f"{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        dst = sub / f"{i:04d}_{src.name}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def find_model(tmp: Path, size: int) -> Path:
    cards = sorted((REPO / "models").glob("*.json"))
    if cards:
        return cards[0]
    from model_fixtures import write_tiny_bundle

    return write_tiny_bundle(tmp / "model", arch="resnet18", size=size)


def predict_cmd(model: Path, out: Path, threads: int, paths: list[Path]) -> list[str]:
    exe = Path(sys.executable).with_name("cxrviewer-predict")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "cxrviewer.predict"]
    return base + ["--model", str(model), "--output", str(out), "--quiet", "--threads", str(threads),
                   *map(str, paths)]


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (the decoding helper included), in MB; 0 if gone."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def run_batch(cmd: list[str]) -> tuple[float, int, list[tuple[float, float]]]:
    """(seconds, exit status, [(t, rss MB)]) for one child run, sampling its process tree's RSS every 0.5 s."""
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        while proc.poll() is None:
            rss = tree_rss_mb(proc.pid)
            if rss:
                samples.append((time.monotonic() - start, rss))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join(timeout=2)
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.monotonic() - start, proc.returncode, samples


def same_result(a: dict, b: dict) -> str:
    if (a["status"], a["message"], a["image_size"], a["view"]) != (b["status"], b["message"], b["image_size"],
                                                                      b["view"]):
        return f"status/message differ: {a['status']} {a['message']!r} vs {b['status']} {b['message']!r}"
    fa = {f["label"]: f for f in a["findings"]}
    fb = {f["label"]: f for f in b["findings"]}
    if fa.keys() != fb.keys():
        return "different labels"
    for label, f in fa.items():
        g = fb[label]
        if abs(f["probability"] - g["probability"]) > 1e-6 or f["positive"] != g["positive"]:
            return f"{label}: {f['probability']} vs {g['probability']}"
        if f["cam_peak"] != g["cam_peak"]:
            return f"{label}: CAM peak {f['cam_peak']} vs {g['cam_peak']}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--model", help="model card (default: models/*.json, else a tiny untrained ResNet-18)")
    parser.add_argument("--size", type=int, default=192, help="input size of the tiny model (default 192)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--sample", type=int, default=6, help="files re-run one at a time for comparison")
    parser.add_argument("--max-rss-mb", type=float, default=1536.0)
    parser.add_argument("--keep", metavar="DIR", help="build the files here and keep them")
    args = parser.parse_args(argv)
    from conftest import SHARED_DATA

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cxr-load-"))
    try:
        folder = tmp / "inputs"
        files = make_files(folder, args.files, SHARED_DATA)
        model = Path(args.model) if args.model else find_model(tmp, args.size)
        card = json.loads(model.read_text())
        print(f"{len(files)} files in {folder}; model {card['name']} ({card['architecture']}, "
              f"{card['input_size']} px); {args.threads} threads; {os.cpu_count()} CPUs")
        out = tmp / "batch.json"
        seconds, code, rss = run_batch(predict_cmd(model, out, args.threads, [folder]))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        results = json.loads(out.read_text())["results"] if out.exists() else []
        by_path = {r["path"]: r for r in results}
        missing = [f for f in files if str(f) not in by_path]
        statuses: dict[str, int] = {}
        for r in results:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        print(f"exit status {code}; {len(results)} results, missing {len(missing)}; statuses {statuses}")
        print(f"wall {seconds:.1f} s (incl. start-up and model load) -> {len(files) / seconds:.2f} files/s")
        print(f"peak RSS of one process (cxrviewer-predict or its decoding helper): {peak_mb:.0f} MB")
        if rss:
            peak_mb = max(peak_mb, max(m for _, m in rss))
            print(f"peak RSS of cxrviewer-predict + decoding helper together (sampled): {peak_mb:.0f} MB")
            tenth = rss[max(0, len(rss) // 10)][1]
            print(f"RSS samples: {len(rss)}; at 10% of the run {tenth:.0f} MB, max {max(m for _, m in rss):.0f} MB, "
                  f"at the end {rss[-1][1]:.0f} MB")
        rng = random.Random(1)
        sample = rng.sample(files, min(args.sample, len(files)))
        diffs = []
        single_times = []
        for f in sample:
            single_out = tmp / "single.json"
            t, _, _ = run_batch(predict_cmd(model, single_out, args.threads, [f]))
            single_times.append(t)
            single = json.loads(single_out.read_text())["results"][0]
            problem = same_result(by_path[str(f)], single) if str(f) in by_path else "missing in the batch"
            if problem:
                diffs.append(f"{f.name}: {problem}")
        print(f"single-file runs: {len(sample)} (mean {sum(single_times) / max(1, len(single_times)):.1f} s "
              f"each, mostly start-up); identical to the batch: {len(sample) - len(diffs)}/{len(sample)}")
        for d in diffs:
            print("DIFF", d)
        ok = code == 0 and not missing and not diffs and peak_mb <= args.max_rss_mb
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
