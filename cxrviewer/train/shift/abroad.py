"""The abroad check (`cxrviewer.model.abroad`) on the site-shift battery's films; its reference from training films.

    python -m cxrviewer.train.shift.abroad --out runs/abroad [--model CARD] [--data ../shared/data]
        [--nih 300] [--kermany 160] [--dicom] [--seed 0] [--battery runs/battery/battery.json] [--write-card]

Reference: shared NIH films in neither of the battery's NIH samples (seeds 0 and 1) and Kermany films of the
training packs' patients (`films.pack_patients`), decoded and letterboxed as the app does (`model_film`); so
the battery's plain films are held out from the fit. The battery films (the same picks, transforms and seeds as
`cxrviewer.train.shift.battery`) are scored plain and transformed. Per transform: AUROC of the abroad score for
telling transformed films from plain ones, the share warned (either part, the processing part, the lines part)
and the reasons given; plain: the share warned (false alarms). With ``--battery`` the feature gate's numbers
from a battery run are printed beside. ``--write-card`` stores the fitted record as the card's
``gate["abroad"]`` and re-seals the card (`write_abroad_record`); nothing else in the card changes. No network
runs: about 3 minutes on one core. OUT/abroad.json holds the numbers, OUT/abroad.md the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.imaging import Image, ImageLoadError, load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.model.abroad import Abroad, AbroadGate, content, fit_abroad, measure
from cxrviewer.model.card import ModelCard, ModelError
from cxrviewer.model.preprocess import letterbox
from cxrviewer.model.weights import bundled_card_path
from cxrviewer.train.datasets import load_spec
from cxrviewer.train.metrics import auroc
from cxrviewer.train.samples import Sample
from cxrviewer.train.shift import parse_shifts, shift_image
from cxrviewer.train.shift.card_records import write_abroad_record
from cxrviewer.train.shift.films import (
    KERMANY_PACK_CAPS,
    NO_FINDING,
    nih_samples,
    pack_patients,
    pick_nih,
    positive,
    unseen_kermany,
)

log = logging.getLogger(__name__)

PLAIN = "plain"


def model_film(image: Image, size: int, crop: str | None = None) -> np.ndarray:
    """The film as the network sees it before normalisation: letterboxed to `size`, padding cut off."""
    square, box = letterbox(model_input(image), size, crop)
    return content(square, box.content)


def reference_samples(data: Path, labels: list[str], n_nih: int, n_kermany: int, seed: int = 0) -> list[Sample]:
    """Training films for the reference: NIH films outside the battery's samples, Kermany training-pack films."""
    nih = nih_samples(data)
    battery = {s.path for pick_seed in (0, 1) for s in pick_nih(nih, labels, 300, pick_seed)}
    rng = np.random.default_rng(seed)
    rest = [s for s in nih if s.path not in battery]
    chosen = [rest[int(i)] for i in rng.permutation(len(rest))[:n_nih]]
    spec = (f"plain,csv={data / 'kermany' / 'labels.csv'},root={data},"
            f"mapping={data / 'label_map_to_chexpert.csv'},name=kermany")
    kermany = load_spec(spec).samples
    seen = set().union(*(pack_patients(kermany, "kermany", cap) for cap in KERMANY_PACK_CAPS))
    trained = [s for s in kermany if s.patient_id in seen]
    return chosen + [trained[int(i)] for i in rng.permutation(len(trained))[:n_kermany]]


def _films(images: Iterable[Image], transform: str, seed: int, size: int, crop: str | None) -> list[np.ndarray]:
    out = []
    for i, image in enumerate(images):
        shown = image if transform == PLAIN else shift_image(image, transform, seed=seed * 100_003 + i)
        out.append(model_film(shown, size, crop))
    return out


def _share(flags: Iterable[bool]) -> float | None:
    values = [bool(v) for v in flags]
    return float(np.mean(values)) if values else None


def transform_numbers(plain: list[Abroad], shifted: list[Abroad], normal: list[bool] | None = None
                      ) -> dict[str, Any]:
    """AUROC of the score (shifted vs plain films), warn shares and reason counts for one transform."""
    y = np.r_[np.zeros(len(plain)), np.ones(len(shifted))]
    scores = np.array([a.score for a in plain + shifted])
    return {"auroc_vs_plain": auroc(y, scores), "auroc_processing": auroc(y, np.array([a.processing for a in
                                                                                        plain + shifted])),
            "auroc_lines": auroc(y, np.array([a.lines for a in plain + shifted])), **site_numbers(shifted, normal)}


def site_numbers(verdicts: list[Abroad], normal: list[bool] | None = None) -> dict[str, Any]:
    """Warn shares (all films; with `normal`, also the "No Finding" films alone) and reason counts."""
    extra = {"warned_normal": _share(a.warns for a, n in zip(verdicts, normal, strict=True) if n)} if normal else {}
    return {"films": len(verdicts), "warned": _share(a.warns for a in verdicts), **extra,
            "warned_processing": _share(a.processing > 1 for a in verdicts),
            "warned_lines": _share(a.lines > 1 for a in verdicts),
            "median_score": float(np.median([a.score for a in verdicts])) if verdicts else None,
            "reasons": dict(Counter(r.kind for a in verdicts for r in a.reasons).most_common())}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Abroad check on the site-shift battery: {result['model']}", "",
             f"Reference: {result['reference']['films']} training films; thresholds: spectrum "
             f"{result['record']['spectrum_threshold']:.3g} (q{result['record']['spectrum_quantile']}), lines "
             f"{result['record']['lines_threshold']:.3g} (q{result['record']['lines_quantile']}).", "",
             "| site | transform | AUROC vs plain (old gate) | processing / lines AUROC | warned (normal films) | "
             "by processing | by lines | reasons |", "|---|---|---|---|---|---|---|---|"]

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.0f} %"

    def num(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    for site, rows in result["sites"].items():
        for name, rec in rows.items():
            old = rec.get("old_gate_auroc")
            head = "–" if name == PLAIN else f"{num(rec['auroc_vs_plain'])} ({num(old)})"
            parts = "–" if name == PLAIN else f"{num(rec['auroc_processing'])} / {num(rec['auroc_lines'])}"
            reasons = ", ".join(f"{k} {v}" for k, v in rec["reasons"].items()) or "–"
            warned = pct(rec["warned"]) + (f" ({pct(rec['warned_normal'])})" if "warned_normal" in rec else "")
            lines.append(f"| {site} | {name} | {head} | {parts} | {warned} | "
                         f"{pct(rec['warned_processing'])} | {pct(rec['warned_lines'])} | {reasons} |")
    if result.get("files"):
        lines += ["", "Shared DICOMs (plain):", "", "| file | score | processing | lines | message |",
                  "|---|---|---|---|---|"]
        for rec in result["files"]:
            lines.append(f"| {rec['file']} | {rec['score']:.2f} | {rec['processing']:.2f} | {rec['lines']:.2f} | "
                         f"{rec['message'] or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cxrviewer.train.shift.abroad", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for abroad.json and abroad.md")
    ap.add_argument("--model", help="model card (default: the bundled model)")
    ap.add_argument("--data", default=os.environ.get("CXR_SHARED_DATA", "../shared/data"))
    ap.add_argument("--shift", default="all", help="comma-separated transforms or 'all'")
    ap.add_argument("--nih", type=int, default=300)
    ap.add_argument("--kermany", type=int, default=160)
    ap.add_argument("--dicom", action="store_true", help="also the shared chest DICOMs, edge cases included")
    ap.add_argument("--reference-nih", type=int, default=1000)
    ap.add_argument("--reference-kermany", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--battery", help="a battery.json whose feature-gate AUROC is printed beside")
    ap.add_argument("--write-card", action="store_true", help="store the fitted record in the card and re-seal it")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        transforms = parse_shifts(a.shift)
        card_path = Path(a.model) if a.model else bundled_card_path()
        card = ModelCard.read(card_path)
    except (ValueError, ModelError) as exc:
        print(f"abroad: error: {exc}", file=sys.stderr)
        return 2
    data, out = Path(a.data), Path(a.out)
    labels, size, crop = list(card.labels), card.input_size, card.preprocessing.crop
    ref = reference_samples(data, labels, a.reference_nih, a.reference_kermany, a.seed)
    record = fit_abroad((model_film(load_image(s.path), size, crop) for s in ref), seed=a.seed)
    record["fitted_on"] = (f"{sum(s.dataset == 'nih' for s in ref)} shared NIH films outside the battery samples + "
                           f"{sum(s.dataset == 'kermany' for s in ref)} Kermany training-pack films")
    gate = AbroadGate.from_record(record)
    log.info("reference fitted on %d films", len(ref))
    old: dict[str, Any] = json.loads(Path(a.battery).read_text())["sites"] if a.battery else {}
    sites: list[tuple[str, list[Image], list[bool] | None]] = []
    if a.nih:
        picked = pick_nih(nih_samples(data), labels, a.nih, a.seed)
        sites.append(("nih", [load_image(s.path) for s in picked], [positive(s, NO_FINDING) for s in picked]))
    if a.kermany:
        picked = unseen_kermany(data, a.kermany, a.seed)
        sites.append(("kermany", [load_image(s.path) for s in picked], [positive(s, NO_FINDING) for s in picked]))
    files: list[dict[str, Any]] = []
    if a.dicom:
        images = []
        for path in sorted((data / "dicom").glob("*.dcm")) + sorted((data / "dicom" / "edge_cases").glob("*.dcm")):
            try:
                images.append(load_image(path))
            except ImageLoadError as exc:
                log.warning("skipped %s", exc)
        sites.append(("dicom", images, None))
    result: dict[str, Any] = {"model": card.name, "record": record, "reference": {"films": len(ref)}, "sites": {}}
    for site, images, normal in sites:
        verdicts = {name: [gate.check(measure(f)) for f in _films(images, name, a.seed, size, crop)]
                    for name in [PLAIN, *transforms]}
        rows: dict[str, Any] = {PLAIN: site_numbers(verdicts[PLAIN], normal)}
        for name in transforms:
            rows[name] = transform_numbers(verdicts[PLAIN], verdicts[name], normal)
            rows[name]["old_gate_auroc"] = old.get(site, {}).get(name, {}).get("gate", {}).get("auroc_vs_plain")
        result["sites"][site] = rows
        if site == "dicom":
            files = [{"file": im.path.name, "score": v.score, "processing": v.processing, "lines": v.lines,
                      "message": v.message} for im, v in zip(images, verdicts[PLAIN], strict=True)]
            result["files"] = files
        log.info("%s: %d films x %d transforms", site, len(images), len(transforms))
    out.mkdir(parents=True, exist_ok=True)
    (out / "abroad.json").write_text(json.dumps(result, indent=1))
    (out / "abroad.md").write_text(markdown(result))
    print(markdown(result))
    if a.write_card:
        write_abroad_record(card_path, record)
        print(f"stored gate['abroad'] in {card_path} and re-sealed it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
