"""Benchmark: the classical lung-field localiser on the shared data (run by hand).

    python tests/bench/bench_lungs.py [--data ../shared/data] [--kermany 300] [--overlays /tmp/lungs]

Prints: the share of films where both lungs were found (all NIH images, a Kermany sample) and the
fallback reasons; on the NIH radiologist boxes, the share of box centres inside the thorax box and
inside `thorax_mask()`, and the mean thorax box area as a fraction of the image; the median and 95th
percentile wall and CPU milliseconds per image of `find_lung_fields` (one OpenCV thread). With
--overlays, writes example overlays (outline green, thorax box yellow, radiologist boxes red), contact
sheets of the fallbacks and of the radiologist boxes missed, and their lists.
Aims: found >= 95 %, box-centre coverage >= 97 %, mean box area 0.5-0.7, < 15 ms per image.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from cxrviewer.imaging import load_image, model_input
from cxrviewer.imaging.anatomy import LungFields, find_lung_fields

REPO = Path(__file__).resolve().parents[2]


def _default_data() -> Path:
    for c in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if c.is_dir():
            return c
    return REPO.parent / "shared" / "data"


def _load(path: Path) -> np.ndarray:
    return model_input(load_image(path))


def _overlay(img01: np.ndarray, res: LungFields, boxes: list[tuple[float, float, float, float]] = ()) -> np.ndarray:
    """BGR uint8 picture: film, lung outline (green), thorax box (yellow), radiologist boxes (red)."""
    bgr = cv2.cvtColor((np.clip(img01, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    scale = 384 / max(bgr.shape[:2])  # a common display size: thin lines survive, small films get room
    bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    s = lambda v: int(round(v * scale))  # noqa: E731
    cv2.polylines(bgr, [np.round(c * scale).astype(np.int32) for c in res.outline()], True, (0, 255, 0), 1)
    x0, y0, x1, y1 = res.box
    cv2.rectangle(bgr, (s(x0), s(y0)), (s(x1) - 1, s(y1) - 1), (0, 255, 255), 1)
    for x, y, w, h in boxes:
        cv2.rectangle(bgr, (s(x), s(y)), (s(x + w), s(y + h)), (0, 0, 255), 1)
    if not res.found:
        cv2.putText(bgr, res.reason[:40], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 255), 1)
    return bgr


def _sheet(tiles: list[np.ndarray], cols: int = 4, size: int = 384) -> np.ndarray:
    tiles = [cv2.resize(t, (size, size)) for t in tiles]
    while len(tiles) % cols:
        tiles.append(np.zeros((size, size, 3), np.uint8))
    return np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--kermany", type=int, default=300, help="Kermany films to sample (seeded)")
    parser.add_argument("--nih", type=int, default=0, help="NIH films to use (0: all)")
    parser.add_argument("--overlays", type=Path, default=None, help="folder for example overlay PNGs")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    data = args.data
    boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    with open(data / "nih" / "bbox.csv", newline="") as f:
        for row in csv.DictReader(f):
            boxes[Path(row["image"]).name].append(tuple(float(row[k]) for k in ("x", "y", "w", "h")))
    nih = sorted((data / "nih" / "images").glob("*.png"))
    if args.nih:
        nih = random.Random(1).sample(nih, args.nih) + [p for p in nih if p.name in boxes][: args.nih]
    kermany = sorted((data / "kermany" / "images").glob("*.jp*g"))
    kermany = random.Random(0).sample(kermany, min(args.kermany, len(kermany)))
    demo = sorted((data / "nih" / "demo").glob("*.png"))

    times: list[float] = []
    cpu: list[float] = []  # process time: on a machine shared with other jobs, closer to the uncontended time
    results: dict[str, dict[str, LungFields]] = {"nih": {}, "kermany": {}, "demo": {}}
    images: dict[str, np.ndarray] = {}
    for name, paths in (("nih", nih), ("kermany", kermany), ("demo", demo)):
        for p in paths:
            img = _load(p)
            find_lung_fields(img) if not times else None  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            res = find_lung_fields(img)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            results[name][p.name] = res
            if args.overlays is not None:
                images[f"{name}/{p.name}"] = img

    for name, res in results.items():
        n = len(res)
        found = sum(r.found for r in res.values())
        reasons = Counter(r.reason for r in res.values() if not r.found)
        print(f"{name:8s} found {found}/{n} = {found / max(n, 1):.1%}  fallbacks: {dict(reasons.most_common(5))}")
        if n:
            area = [(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) / r.mask.size for r in res.values() if r.found]
            print(f"{'':8s} mean thorax box area {statistics.mean(area):.3f} of the image (found films)")

    in_box = in_hull = total = 0
    in_box_found = total_found = 0
    misses: list[tuple[str, tuple[float, float, float, float]]] = []
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with open(data / "nih" / "bbox.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        name = Path(row["image"]).name
        res = results["nih"].get(name)
        if res is None:
            continue
        x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
        cx, cy = x + w / 2, y + h / 2
        x0, y0, x1, y1 = res.box
        hit = x0 <= cx < x1 and y0 <= cy < y1
        hull = res.thorax_mask()
        hit_hull = bool(hull[min(int(cy), hull.shape[0] - 1), min(int(cx), hull.shape[1] - 1)])
        total += 1
        in_box += hit
        in_hull += hit_hull
        per_label[row["label"]][0] += hit
        per_label[row["label"]][1] += 1
        if res.found:
            total_found += 1
            in_box_found += hit
            if not hit:
                misses.append((name, (x, y, w, h)))
    print(f"NIH boxes: {total}; centre in thorax box {in_box}/{total} = {in_box / max(total, 1):.1%}, "
          f"in thorax_mask {in_hull}/{total} = {in_hull / max(total, 1):.1%}; "
          f"on found films in box {in_box_found}/{total_found} = {in_box_found / max(total_found, 1):.1%}")
    print("  per label (in box): " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(per_label.items())))
    boxed = [results["nih"][n] for n in boxes if n in results["nih"]]
    if boxed:
        area = [(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) / r.mask.size for r in boxed]
        print(f"  mean thorax box area on boxed films (fallbacks count as 1.0): {statistics.mean(area):.3f}")
    for what, ms in (("wall", sorted(times)), ("CPU", sorted(cpu))):
        print(f"{what} time per image: median {statistics.median(ms):.2f} ms, p95 {ms[int(0.95 * len(ms))]:.2f} ms, "
              f"max {ms[-1]:.2f} ms over {len(ms)} images")

    if args.overlays is not None:
        out = args.overlays
        out.mkdir(parents=True, exist_ok=True)
        rng = random.Random(2)
        picks = [f"nih/{n}" for n in rng.sample(sorted(results["nih"]), 6)]
        picks += [f"kermany/{n}" for n in rng.sample(sorted(results["kermany"]), min(3, len(results["kermany"])))]
        picks += [f"demo/{n}" for n in rng.sample(sorted(results["demo"]), min(3, len(results["demo"])))]
        tiles = []
        for key in picks:
            kind, name = key.split("/")
            tile = _overlay(images[key], results[kind][name], boxes.get(name, []) if kind == "nih" else [])
            cv2.imwrite(str(out / f"{kind}_{Path(name).stem}.png"), tile)
            tiles.append(tile)
        cv2.imwrite(str(out / "examples.png"), _sheet(tiles))
        fails = [(k, n) for k in results for n, r in results[k].items() if not r.found]
        (out / "fallbacks.txt").write_text("".join(f"{k}/{n}\t{results[k][n].reason}\n" for k, n in fails))
        (out / "box_misses.txt").write_text("".join(f"{n}\t{b}\n" for n, b in misses))
        if fails:
            tiles = [_overlay(images[f"{k}/{n}"], results[k][n]) for k, n in fails[:16]]
            cv2.imwrite(str(out / "fallbacks.png"), _sheet(tiles))
        if misses:
            tiles = [_overlay(images[f"nih/{n}"], results["nih"][n], [b]) for n, b in misses[:16]]
            cv2.imwrite(str(out / "box_misses.png"), _sheet(tiles))
        print(f"overlays in {out}")


if __name__ == "__main__":
    sys.exit(main())
