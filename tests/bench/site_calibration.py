"""Site calibration measured on simulated new sites (issue 19 item 5): the battery's per-film predictions.

    python tests/bench/site_calibration.py [--battery runs/battery runs/battery_seed1] [--data ../shared/data]
        [--n 20,50,100] [--draws 30] [--shrink 20] [--markdown]

A "site" is one battery site (NIH training films, or Kermany films of unseen patients) under one transform
(`cxrviewer.train.shift`): every film of it processed the same way, as a hospital's detector, processing or
devices would. No model is run: the battery kept each film's calibrated probabilities (OUT/raw/SITE_T_seedS.npz,
`cxrviewer.train.shift.battery.Run`); the films' labels are rebuilt with the battery's own draw
(`films.pick_nih`, `films.unseen_kermany`, the seed in the file name).

Per site, per N and per random draw: N films are the calibration batch, the others (disjoint) are scored.
Fits, through `cxrviewer.model.site`: **unlabelled** (the batch's probabilities only) and **feedback** (the
reader's verdicts simulated from the films' labels: agree where the card's call matches the label, disagree
where it does not). A label the data set does not know (Kermany labels only normal / pneumonia: a pneumonia
film's other labels are unknown) is taken as absent, as a reader reviewing every label of a child's pneumonia
film would mostly say (``--unknown skip``: no verdict; the only negatives are then the normal films, which
drags the points far down). Scored on the held-out films at the
card's and at the site's operating points: flags per normal film (findings other than No Finding, on films
labelled No Finding), Pneumothorax flagged (all films), flags per film, mean sensitivity and specificity over
the labels with both classes among the scored films (Pneumothorax's own too). Mean ± sd over the draws.

A per-label threshold leaves every label's AUROC unchanged (it is a property of the ranking); the script
prints the AUROC of the held-out films once per site to make the point, not per fit.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model import site as sitecal
from cxrviewer.model.card import ModelCard
from cxrviewer.model.feedback import AGREE, DISAGREE, FeedbackRecord, LabelVerdict
from cxrviewer.model.weights import bundled_card_path
from cxrviewer.train.metrics import auroc
from cxrviewer.train.shift.battery import Run
from cxrviewer.train.shift.films import nih_samples, pick_nih, unseen_kermany

REPO = Path(__file__).resolve().parents[2]
NF, PTX = "No Finding", "Pneumothorax"
DEFAULT_SITES = ("nih:plain", "nih:unsharp", "nih:clahe", "nih:tubes", "nih:icu_devices",
                 "kermany:plain", "kermany:tubes", "kermany:icu_devices", "kermany:border")


@dataclass
class SiteFilms:
    name: str
    prob: np.ndarray  # (N, L)
    target: np.ndarray  # (N, L)
    mask: np.ndarray  # (N, L)


def battery_sites(folders: list[Path], data: Path, labels: list[str], wanted: set[str]) -> list[SiteFilms]:
    cols = [KNOWN_LABELS.index(lab) for lab in labels]
    cache: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for folder in folders:
        for path in sorted((folder / "raw").glob("*.npz")):
            m = re.match(r"(nih|kermany)_(.+)_seed(\d+)\.npz$", path.name)
            if not m or f"{m[1]}:{m[2]}" not in wanted:
                continue
            source, transform, seed = m[1], m[2], int(m[3])
            run = Run.load(path)
            key = (source, seed, len(run.prob))
            if key not in cache:
                samples = (pick_nih(nih_samples(data), labels, len(run.prob), seed) if source == "nih"
                           else unseen_kermany(data, len(run.prob), seed))
                cache[key] = (np.array([[s.target[c] for c in cols] for s in samples], np.float64),
                              np.array([[s.mask[c] for c in cols] for s in samples], np.float64))
            target, mask = cache[key]
            if len(target) != len(run.prob):
                raise SystemExit(f"{path}: {len(run.prob)} films, the battery's draw gives {len(target)}")
            out.append(SiteFilms(f"{source}:{transform} (seed {seed})", run.prob, target, mask))
    return out


def feedback_records(engine: SimpleNamespace, films: SiteFilms, rows: np.ndarray,
                     unknown_absent: bool = True) -> list[FeedbackRecord]:
    """The reader's verdicts simulated from the labels: agree where the card's call matches them (an unknown
    label: absent, or no verdict)."""
    thr = np.array([engine.card.thresholds[lab] for lab in engine.labels])
    records = []
    for k, i in enumerate(rows):
        labels = {}
        for j, lab in enumerate(engine.labels):
            p, flagged = float(films.prob[i, j]), bool(films.prob[i, j] >= thr[j])
            verdict = None
            if films.mask[i, j] > 0:
                verdict = AGREE if flagged == bool(films.target[i, j] >= 0.5) else DISAGREE
            elif unknown_absent:
                verdict = DISAGREE if flagged else AGREE
            labels[lab] = LabelVerdict(p, float(thr[j]), flagged, verdict)
        records.append(FeedbackRecord(f"film{i}", engine.name, engine.sha256, engine.card_sha256, labels,
                                      complete=False, time=f"2025-01-01T00:{k // 60:02d}:{k % 60:02d}"))
    return records


def score(films: SiteFilms, rows: np.ndarray, thr: np.ndarray, labels: list[str]) -> dict[str, float]:
    p, y, m = films.prob[rows], films.target[rows] >= 0.5, films.mask[rows] > 0
    flag = p >= thr
    nf, ptx = labels.index(NF), labels.index(PTX)
    others = [j for j in range(len(labels)) if j != nf]
    normal = m[:, nf] & y[:, nf]
    flags = flag[:, others].sum(axis=1)
    sens, spec = [], []
    out: dict[str, float] = {}
    for j, lab in enumerate(labels):
        pos, neg = m[:, j] & y[:, j], m[:, j] & ~y[:, j]
        if neg.sum():
            out[f"spec:{lab}"] = 1 - flag[neg, j].mean()
        if pos.sum():
            out[f"sens:{lab}"] = flag[pos, j].mean()
        if pos.sum() and neg.sum():
            sens.append(flag[pos, j].mean())
            spec.append(1 - flag[neg, j].mean())
            if lab == PTX:
                out["ptx_sens"], out["ptx_spec"] = sens[-1], spec[-1]
    out.update(flags_normal=float(flags[normal].mean()) if normal.any() else np.nan,
               flags=float(flags.mean()), ptx_rate=float(flag[:, ptx].mean()),
               sens=float(np.mean(sens)) if sens else np.nan, spec=float(np.mean(spec)) if spec else np.nan)
    return out


METRICS = ("flags_normal", "ptx_rate", "flags", "sens", "spec", "ptx_sens", "ptx_spec")


def measure(engine: SimpleNamespace, films: SiteFilms, n: int, draws: int, shrink: float,
            unknown_absent: bool = True) -> dict[str, dict[str, tuple[float, float]]]:
    labels = engine.labels
    card_thr = np.array([engine.card.thresholds[lab] for lab in labels])
    runs: dict[str, list[dict[str, float]]] = {"card": [], "unlabelled": [], "feedback": []}
    for d in range(draws):
        order = np.random.default_rng(1000 * n + d).permutation(len(films.prob))
        fit_rows, eval_rows = order[:n], order[n:]
        runs["card"].append(score(films, eval_rows, card_thr, labels))
        unl = sitecal.fit_unlabelled("bench", engine, films.prob[fit_rows], shrink_films=shrink)
        runs["unlabelled"].append(score(films, eval_rows, np.array([unl.thresholds[lab] for lab in labels]), labels))
        records = feedback_records(engine, films, fit_rows, unknown_absent)
        fb = sitecal.fit_feedback("bench", engine, records, shrink_films=shrink)
        runs["feedback"].append(score(films, eval_rows, np.array([fb.thresholds[lab] for lab in labels]), labels))
    out = {}
    keys = [*METRICS, *(f"{m}:{lab}" for lab in labels for m in ("sens", "spec"))]
    for method, rows in runs.items():
        out[method] = {}
        for k in keys:
            values = [r[k] for r in rows if k in r]
            out[method][k] = (float(np.mean(values)), float(np.std(values))) if values else (np.nan, np.nan)
    return out


def mean_auroc(films: SiteFilms) -> float:
    vals = [auroc(films.target[:, j], films.prob[:, j], films.mask[:, j]) for j in range(films.prob.shape[1])]
    known = [v for v in vals if v is not None]
    return float(np.mean(known)) if known else float("nan")


def fmt(cell: tuple[float, float], digits: int = 2, pct: bool = False) -> str:
    m, s = cell
    if np.isnan(m):
        return "–"
    if pct:
        return f"{100 * m:.0f} ± {100 * s:.0f} %"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def compact(engine: SimpleNamespace, sites: list[SiteFilms], ns: list[int], draws: int, shrink: float,
            unknown_absent: bool) -> None:
    """Flags per normal film and Pneumothorax flagged at each N; sensitivity / specificity at the middle N."""
    mid = ns[len(ns) // 2]
    head = " | ".join(f"N={n}" for n in ns)
    print(f"| site (AUROC, any threshold) | operating points | flags / normal film: {head} | PTX flagged: {head} "
          f"| mean sens / spec (N={mid}) | PTX sens / spec (N={mid}) |")
    print("|---|---|" + "---|" * (2 * len(ns)) + "---|---|")
    for films in sites:
        res = {n: measure(engine, films, n, draws, shrink, unknown_absent) for n in ns if n < len(films.prob) - 20}
        for method in ("card", "unlabelled", "feedback"):
            cells = [fmt(res[n][method]["flags_normal"]) if n in res else "–" for n in ns]
            cells += [fmt(res[n][method]["ptx_rate"], pct=True) if n in res else "–" for n in ns]
            r = res.get(mid, res[min(res)])[method]
            cells += [f"{fmt(r['sens'])} / {fmt(r['spec'])}", f"{fmt(r['ptx_sens'])} / {fmt(r['ptx_spec'])}"]
            name = f"{films.name} ({mean_auroc(films):.3f})" if method == "card" else ""
            print(f"| {name} | {method} | " + " | ".join(cells) + " |", flush=True)


def per_label(engine: SimpleNamespace, sites: list[SiteFilms], n: int, draws: int, shrink: float,
              unknown_absent: bool) -> None:
    """Each label's sensitivity / specificity on the held-out films: card, unlabelled, feedback (N films)."""
    print(f"| site (N={n}) | label | sens: card / unlabelled / feedback | spec: card / unlabelled / feedback |")
    print("|---|---|---|---|")
    for films in sites:
        res = measure(engine, films, n, draws, shrink, unknown_absent)
        for k, lab in enumerate(engine.labels):
            sens = " / ".join(fmt(res[m][f"sens:{lab}"]) for m in ("card", "unlabelled", "feedback"))
            spec = " / ".join(fmt(res[m][f"spec:{lab}"]) for m in ("card", "unlabelled", "feedback"))
            print(f"| {films.name if k == 0 else ''} | {lab} | {sens} | {spec} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--battery", nargs="+", type=Path, default=[REPO / "runs" / "battery",
                                                                 REPO / "runs" / "battery_seed1"])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_SHARED_DATA", REPO.parent / "shared" /
                                                                     "data")))
    ap.add_argument("--model", type=Path, default=None, help="the card the battery ran (default: bundled)")
    ap.add_argument("--sites", default=",".join(DEFAULT_SITES), help="SOURCE:TRANSFORM list")
    ap.add_argument("--n", default="20,50,100")
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--shrink", default=str(sitecal.SHRINK_FILMS), help="n0 value(s), comma-separated")
    ap.add_argument("--unknown", choices=("absent", "skip"), default="absent",
                    help="simulated reader's verdict on a label the data set does not know")
    ap.add_argument("--compact", action="store_true", help="one row per site and method, the N side by side "
                    "(the table in models/README.md)")
    ap.add_argument("--per-label", action="store_true", help="per-label sensitivity / specificity at the middle N")
    a = ap.parse_args()
    card = ModelCard.read(a.model or bundled_card_path())
    engine = SimpleNamespace(name=card.display_name, sha256=card.weights.sha256, card_sha256=card.card_sha256,
                             card=card, labels=list(card.labels), operating_point="default")
    sites = battery_sites(a.battery, a.data, engine.labels, set(a.sites.split(",")))
    if not sites:
        print("no battery predictions found (run python -m cxrviewer.train.shift.battery first)", file=sys.stderr)
        return 2
    ns = [int(x) for x in a.n.split(",")]
    if a.compact:
        compact(engine, sites, ns, a.draws, float(a.shrink.split(",")[0]), a.unknown == "absent")
        return 0
    if a.per_label:
        per_label(engine, sites, ns[len(ns) // 2], a.draws, float(a.shrink.split(",")[0]), a.unknown == "absent")
        return 0
    print("| site | films | AUROC (any threshold) | N | n0 | operating points | flags / normal film | PTX flagged "
          "| flags / film | mean sens | mean spec | PTX sens / spec |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for films in sites:
        for shrink in (float(x) for x in a.shrink.split(",")):
            for n in ns:
                if n >= len(films.prob) - 20:
                    continue
                res = measure(engine, films, n, a.draws, shrink, a.unknown == "absent")
                for method in ("card", "unlabelled", "feedback"):
                    r = res[method]
                    print(f"| {films.name} | {len(films.prob)} | {mean_auroc(films):.3f} | {n} | {shrink:g} | {method} "
                          f"| {fmt(r['flags_normal'])} | {fmt(r['ptx_rate'], pct=True)} | {fmt(r['flags'])} "
                          f"| {fmt(r['sens'])} | {fmt(r['spec'])} "
                          f"| {fmt(r['ptx_sens'])} / {fmt(r['ptx_spec'])} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
