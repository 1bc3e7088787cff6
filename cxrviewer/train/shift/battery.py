"""Site-shift battery: the bundled model (or any card) on plain films and on the same films transformed.

    python -m cxrviewer.train.shift.battery --out runs/battery [--model CARD] [--shift all|NAME[,NAME]]
        [--nih 300] [--kermany 120] [--dicom] [--seed 0] [--threads 1]

For every site (an enriched NIH sample; Kermany films of patients no training pack held; the shared chest
DICOMs) and every transform, each film is predicted plain and transformed through `Engine.predict(force=True)`
(so a film the gate would reject still gets its probabilities; the rejection is counted). Per transform:
per-label AUROC, flags per film and per normal ("No Finding") film, the Pneumothorax flag rate, the paired
probability shift of every label (transformed minus plain, the same film: median and 90th percentile; for a
device transform the shift the devices alone cause) and the input gate's feature-space score: AUROC for
telling transformed films from plain ones, the share it warns on (score > 1) and the share rejected.

Predictions are kept per site and transform under OUT/raw/ (a rerun with the same card and harmonisation resumes;
another is refused, `claim_raw`); OUT/battery.json holds the numbers, OUT/battery.md the tables.

``--harmonise-radius R [--harmonise-lines S]`` evaluates the card as if it harmonised its inputs
(`cxrviewer.model.harmonise`: edge detail turned down beyond squared spectrum distance R of the training films,
thin lines S times stronger than the abroad check's threshold filled in); ``--write-card`` then stores that
setting in the card's preprocessing and re-seals it, so what the card does is what was measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrviewer.imaging import Image, ImageLoadError, load_image
from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model.harmonise import Harmoniser
from cxrviewer.model.inference import Engine
from cxrviewer.model.weights import ModelError
from cxrviewer.train.metrics import auroc
from cxrviewer.train.shift import SHIFTS, parse_shifts, shift_image
from cxrviewer.train.shift.card_records import write_harmonise_record
from cxrviewer.train.shift.films import NO_FINDING, nih_samples, pick_nih, unseen_kermany
from cxrviewer.train.shift.report import markdown

log = logging.getLogger(__name__)

PLAIN = "plain"
PTX = "Pneumothorax"


@dataclass
class Site:
    """Films of one site: images, targets (N, L) and masks (N, L) over the model's labels (mask 0: unknown)."""

    name: str
    images: list[Image]
    target: np.ndarray
    mask: np.ndarray


@dataclass
class Run:
    """One transform's predictions on a site's films (rows in the site's order)."""

    prob: np.ndarray  # (N, L) calibrated probabilities
    flag: np.ndarray  # (N, L) bool: finding at the default operating point
    check: np.ndarray  # (N, L) bool: triage "check for"
    score: np.ndarray  # (N,) feature-space gate score (nan when the gate has none)
    rejected: np.ndarray  # (N,) bool: the gate would have withheld the opinion

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, prob=self.prob, flag=self.flag, check=self.check, score=self.score, rejected=self.rejected)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Run:
        with np.load(path) as z:
            return cls(z["prob"], z["flag"], z["check"], z["score"], z["rejected"])


def site_from_samples(name: str, samples: list, labels: list[str]) -> Site:
    cols = [KNOWN_LABELS.index(lab) for lab in labels]
    images = [load_image(s.path) for s in samples]
    target = np.array([[s.target[c] for c in cols] for s in samples], dtype=np.float32).reshape(-1, len(labels))
    mask = np.array([[s.mask[c] for c in cols] for s in samples], dtype=np.float32).reshape(-1, len(labels))
    return Site(name, images, target, mask)


def dicom_site(data: Path, labels: list[str]) -> Site:
    """The shared chest DICOMs (no labels: flags, shifts and gate only)."""
    images = []
    for path in sorted((data / "dicom").glob("*.dcm")):
        try:
            images.append(load_image(path))
        except ImageLoadError as exc:
            log.warning("skipped %s", exc)
    shape = (len(images), len(labels))
    return Site("dicom", images, np.zeros(shape, np.float32), np.zeros(shape, np.float32))


def predict_all(engine: Engine, site: Site, transform: str, seed: int) -> Run:
    n, labels = len(site.images), engine.labels
    run = Run(np.zeros((n, len(labels))), np.zeros((n, len(labels)), bool), np.zeros((n, len(labels)), bool),
              np.full(n, np.nan), np.zeros(n, bool))
    for i, image in enumerate(site.images):
        shown = image if transform == PLAIN else shift_image(image, transform, seed=seed * 100_003 + i)
        pred = engine.predict(shown, force=True)
        for f in pred.findings:
            j = labels.index(f.label)
            run.prob[i, j], run.flag[i, j], run.check[i, j] = f.probability, f.positive, f.triage
        run.score[i] = np.nan if pred.gate.feature_score is None else pred.gate.feature_score
        run.rejected[i] = bool(pred.gate.reasons)
    return run


def _q(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if values.size else None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def _mean_auroc(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> float:
    """Mean over labels (columns) with both classes among known rows of AUROC (Mann-Whitney, ties halved)."""
    vals = []
    for j in range(y.shape[1]):
        keep = m[:, j] > 0
        yy, pp = y[keep, j] >= 0.5, p[keep, j]
        n1 = int(yy.sum())
        n0 = yy.size - n1
        if n1 and n0:
            ranks = _ranks(pp)
            vals.append((ranks[yy].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return float(np.mean(vals)) if vals else float("nan")


def delta_interval(site: Site, plain: Run, run: Run, draws: int = 300, seed: int = 0) -> list[float] | None:
    """95 % paired bootstrap interval (films resampled) of the change in mean AUROC, transform minus plain."""
    if not (site.mask > 0).any():
        return None
    rng = np.random.default_rng(seed)
    n = len(site.images)
    deltas = []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        y, m = site.target[i], site.mask[i]
        deltas.append(_mean_auroc(y, run.prob[i], m) - _mean_auroc(y, plain.prob[i], m))
    if np.isnan(deltas).all():
        return None
    lo, hi = np.nanquantile(deltas, [0.025, 0.975])
    return [float(lo), float(hi)]


def summarise(site: Site, labels: list[str], runs: dict[str, Run]) -> dict[str, dict]:
    """The battery's numbers for one site: {transform: {...}}."""
    plain = runs[PLAIN]
    nf = labels.index(NO_FINDING) if NO_FINDING in labels else None
    normal = (site.mask[:, nf] > 0) & (site.target[:, nf] >= 0.5) if nf is not None else np.zeros(0, bool)
    others = [j for j, lab in enumerate(labels) if lab != NO_FINDING]
    ptx = labels.index(PTX) if PTX in labels else None
    out: dict[str, dict] = {}
    for name, run in runs.items():
        per_label = {lab: auroc(site.target[:, j], run.prob[:, j], site.mask[:, j]) for j, lab in enumerate(labels)}
        known = [v for v in per_label.values() if v is not None]
        flags = run.flag[:, others].sum(axis=1)
        shift = run.prob - plain.prob
        rec: dict = {
            "group": "none" if name == PLAIN else SHIFTS[name].group,
            "films": len(site.images), "normal_films": int(normal.sum()),
            "auroc": per_label, "mean_auroc": float(np.mean(known)) if known else None,
            "mean_auroc_delta_95ci": None if name == PLAIN else delta_interval(site, plain, run),
            "flags_per_film": _mean(flags), "flags_per_normal_film": _mean(flags[normal]),
            "shift": {lab: {"median": _q(shift[:, j], 0.5), "p90": _q(shift[:, j], 0.9),
                            "median_normal": _q(shift[normal, j], 0.5)} for j, lab in enumerate(labels)},
            "gate": gate_numbers(plain, run, name),
        }
        if ptx is not None:
            rec["pneumothorax_flag_rate"] = _mean(run.flag[:, ptx].astype(float))
            rec["pneumothorax_flag_rate_normal"] = _mean(run.flag[normal, ptx].astype(float))
            rec["pneumothorax_check_rate"] = _mean(run.check[:, ptx].astype(float))
        out[name] = rec
    return out


def gate_numbers(plain: Run, run: Run, name: str) -> dict:
    """Gate score on these films; for a transform, its AUROC for telling them from the same films plain."""
    ok = ~np.isnan(run.score) & ~np.isnan(plain.score)
    rec: dict = {"median_score": _q(run.score[~np.isnan(run.score)], 0.5),
                 "warned": _mean((run.score[~np.isnan(run.score)] > 1.0).astype(float)),
                 "rejected": _mean(run.rejected.astype(float)), "auroc_vs_plain": None}
    if name != PLAIN and ok.any():
        y = np.r_[np.zeros(ok.sum()), np.ones(ok.sum())]
        rec["auroc_vs_plain"] = auroc(y, np.r_[plain.score[ok], run.score[ok]])
        rec["paired_higher"] = _mean((run.score[ok] > plain.score[ok]).astype(float))
    return rec


def run_site(engine: Engine, site: Site, transforms: list[str], out: Path, seed: int) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for name in [PLAIN, *transforms]:
        path = out / "raw" / f"{site.name}_{name}_seed{seed}.npz"
        if path.exists():
            runs[name] = Run.load(path)
            continue
        t0 = time.perf_counter()
        runs[name] = predict_all(engine, site, name, seed)
        runs[name].save(path)
        log.info("%s / %s: %d films in %.0f s", site.name, name, len(site.images), time.perf_counter() - t0)
    return runs


def claim_raw(engine: Engine, out: Path) -> None:
    """Record in OUT/raw/ whose predictions it holds (the card's content and the harmonisation evaluated);
    ValueError when it already holds another's, so a resumed run never mixes two models' predictions."""
    raw = out / "raw"
    setting = {"card_sha256": engine.card_sha256,
               "harmonise": engine.harmoniser.to_record() if engine.harmoniser is not None else None}
    path = raw / "setting.json"
    if path.is_file():
        if json.loads(path.read_text()) != setting:
            raise ValueError(f"{raw} holds predictions of another card or harmonisation ({path}); "
                             "give another --out")
        return
    if raw.is_dir() and any(raw.glob("*.npz")):
        raise ValueError(f"{raw} holds predictions of an unrecorded card or harmonisation; give another --out")
    raw.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(setting, indent=1))


def harmoniser_for(engine: Engine, radius: float, lines: float | None = None) -> Harmoniser | None:
    """A harmoniser at `radius` (and line strength `lines`) on the card's abroad statistics (None for radius 0)."""
    if radius == 0:
        return None
    if engine.abroad_gate is None:
        raise ValueError("--harmonise-radius needs a card with abroad statistics (gate.abroad)")
    if radius < 0 or (lines is not None and lines <= 0):
        raise ValueError("--harmonise-radius must be 0 or positive, --harmonise-lines positive")
    return Harmoniser(engine.abroad_gate, radius, lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cxrviewer.train.shift.battery", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for raw/, battery.json and battery.md")
    ap.add_argument("--model", help="model card (default: the bundled model)")
    ap.add_argument("--data", default=os.environ.get("CXR_SHARED_DATA", "../shared/data"),
                    help="the shared data folder (nih/, kermany/, dicom/)")
    ap.add_argument("--shift", default="all", help="comma-separated transforms or 'all' (known: "
                                                    f"{', '.join(SHIFTS)})")
    ap.add_argument("--nih", type=int, default=300, help="NIH films (enriched sample; 0: none)")
    ap.add_argument("--kermany", type=int, default=120, help="Kermany films of unseen patients (0: none)")
    ap.add_argument("--kermany-shift", help="transforms for the Kermany films (default: the same as --shift)")
    ap.add_argument("--dicom", action="store_true", help="also the shared chest DICOMs (no labels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    ap.add_argument("--harmonise-radius", type=float, metavar="R",
                    help="evaluate the card as if it harmonised films at squared spectrum distance R "
                         "(cxrviewer.model.harmonise; needs the card's abroad statistics); 0: no harmonisation")
    ap.add_argument("--harmonise-lines", type=float, metavar="S",
                    help="with --harmonise-radius: also fill in thin lines S times stronger than the abroad "
                         "check's line threshold")
    ap.add_argument("--write-card", action="store_true",
                    help="after the run, store the --harmonise-radius/--harmonise-lines setting in the card's "
                         "preprocessing and re-seal it (radius 0: remove the card's harmonisation)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        transforms = parse_shifts(a.shift)
        k_transforms = parse_shifts(a.kermany_shift) if a.kermany_shift else transforms
        engine = Engine.from_card(a.model, threads=a.threads) if a.model else Engine.bundled(threads=a.threads)
        if a.harmonise_radius is not None:
            engine.harmoniser = harmoniser_for(engine, a.harmonise_radius, a.harmonise_lines)
        elif a.write_card:
            raise ValueError("--write-card stores a harmonisation setting: give --harmonise-radius")
    except (ValueError, ModelError) as exc:
        print(f"battery: error: {exc}", file=sys.stderr)
        return 2
    data, out = Path(a.data), Path(a.out)
    try:
        claim_raw(engine, out)
    except ValueError as exc:
        print(f"battery: error: {exc}", file=sys.stderr)
        return 2
    labels = list(engine.labels)
    sites: list[tuple[Site, list[str]]] = []
    if a.nih:
        sites.append((site_from_samples("nih", pick_nih(nih_samples(data), labels, a.nih, a.seed), labels),
                      transforms))
    if a.kermany:
        sites.append((site_from_samples("kermany", unseen_kermany(data, a.kermany, a.seed), labels), k_transforms))
    if a.dicom:
        sites.append((dicom_site(data, labels), transforms))
    result: dict = {"model": engine.name, "model_sha256": engine.sha256, "labels": labels, "seed": a.seed,
                    "harmonise": engine.harmoniser.to_record() if engine.harmoniser is not None else None,
                    "transforms": {n: {"group": SHIFTS[n].group, "description": SHIFTS[n].description}
                                   for n in transforms}, "sites": {}}
    for site, names in sites:
        result["sites"][site.name] = summarise(site, labels, run_site(engine, site, names, out, a.seed))
    out.mkdir(parents=True, exist_ok=True)
    (out / "battery.json").write_text(json.dumps(result, indent=1))
    (out / "battery.md").write_text(markdown(result))
    print(markdown(result))
    if a.write_card:
        record = engine.harmoniser.to_record() if engine.harmoniser is not None else None
        try:
            write_harmonise_record(engine.bundle.card_path, record)
        except ModelError as exc:
            print(f"battery: error: {exc}", file=sys.stderr)
            return 2
        print(f"stored preprocessing['harmonise'] = {record} in {engine.bundle.card_path} and re-sealed it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
