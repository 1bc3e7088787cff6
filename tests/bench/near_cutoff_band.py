"""How far one film's calibrated logits move between two copies of it (run by hand): the "near cutoff" band.

    python tests/bench/near_cutoff_band.py [--model CARD.json] [--data ../shared/data]

The 33 demo films exist twice in the shared data: nih/demo (512 px) and nih/images (256 px, the same
1024 px original through a JPEG and a Lanczos downscale). A reader sees either copy; a finding whose
probability sits closer to its cutoff than the two copies differ can land on either side of it. For every
film and label this prints |logit(p_512) - logit(p_256)| on the calibrated scale, its median, p90 and p95,
and how many (film, label) pairs change side of their operating point. `cxrviewer.report.reading`'s
`NEAR_CUTOFF_LOGIT` is the p90 of this spread (rounded): a probability within it of the cutoff is tagged
"near cutoff". Uses the bundled model unless --model names another.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()

    from cxrviewer.imaging import load_image
    from cxrviewer.model.inference import Engine
    from cxrviewer.report.reading import NEAR_CUTOFF_LOGIT, logit

    engine = Engine.from_card(args.model) if args.model else Engine.bundled()
    nih = args.data / "nih"
    with open(nih / "demo_metadata.csv", newline="") as fh:
        films = [(args.data / row["image"], nih / "images" / row["orig_file"]) for row in csv.DictReader(fh)]
    films = [(a, b) for a, b in films if a.is_file() and b.is_file()]
    if not films:
        print(f"no demo films under {nih}", file=sys.stderr)
        return 1
    deltas: list[float] = []
    crossings = []
    triage_changes: list[str] = []
    for large, small in films:
        pa, pb = (engine.predict(load_image(p), force=True) for p in (large, small))
        for fa in pa.findings:
            fb = pb.finding(fa.label)
            assert fb is not None
            deltas.append(abs(logit(fa.probability) - logit(fb.probability)))
            if fa.positive != fb.positive:
                crossings.append((large.name, fa.label, fa.probability, fb.probability, fa.threshold))
            elif fa.triage != fb.triage:
                triage_changes.append(f"{large.name} {fa.label}: {fa.probability:.3f} vs {fb.probability:.3f}")
    d = np.asarray(deltas)
    print(f"model {engine.card.display_name}; {len(films)} films x {len(engine.labels)} labels = {d.size} pairs")
    print(f"|delta calibrated logit| 512 px vs 256 px: median {np.median(d):.3f}  p90 {np.percentile(d, 90):.3f}  "
          f"p95 {np.percentile(d, 95):.3f}  max {d.max():.3f}")
    print(f"pairs on opposite sides of a finding's operating point: {len(crossings)} of {d.size}")
    for name, label, a, b, t in crossings:
        print(f"  {name} {label}: {a:.3f} vs {b:.3f} (cutoff {t:.3f}, margins {logit(a) - logit(t):+.3f} / "
              f"{logit(b) - logit(t):+.3f})")
    print(f"pairs on opposite sides of a triage point only: {len(triage_changes)}", *triage_changes, sep="\n  ")
    inside = sum(1 for _, _, a, _, t in crossings if abs(logit(a) - logit(t)) < NEAR_CUTOFF_LOGIT)
    print(f"current NEAR_CUTOFF_LOGIT {NEAR_CUTOFF_LOGIT}: tags {inside} of the {len(crossings)} crossings "
          "(512 px side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
