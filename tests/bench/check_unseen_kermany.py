"""Pneumonia AUROC and false flags per normal film on Kermany films of patients in none of the training packs.

    python tests/bench/check_unseen_kermany.py PACK [PACK ...] --model CARD [--model CARD] [--n 300]

The all-data networks saw every film of their packs, so this is the only check on patients that no member of
the bundled ensemble saw (pediatric films; adult performance is the cross-validated NIH figure).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cxrviewer.imaging import load_image
from cxrviewer.model.inference import Engine
from cxrviewer.train.pack import read_pack

DATA = Path(os.environ.get("CXR_SHARED_DATA", "../shared/data"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("packs", nargs="+")
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    seen = {s.patient_id for p in a.packs for s in read_pack(Path(p)).samples if s.dataset == "kermany"}
    rows = [r for r in csv.DictReader(open(DATA / "kermany" / "labels.csv", newline=""))
            if f"kermany:{r['patient_id']}" not in seen]
    pick = [rows[i] for i in np.random.default_rng(0).choice(len(rows), min(a.n, len(rows)), replace=False)]
    print(f"{len(rows)} films of unseen patients; scoring {len(pick)}")
    for card in a.model:
        engine = Engine.from_card(card)
        y, p, flags, normals = [], [], 0, 0
        for r in pick:
            found = {f.label: f for f in engine.predict(load_image(DATA / r["image"])).findings}
            if "Pneumonia" not in found:  # rejected by the input gate
                continue
            y.append(int(r["PNEUMONIA"]))
            p.append(found["Pneumonia"].probability)
            if r["NORMAL"] == "1":
                normals += 1
                flags += sum(f.positive for f in found.values() if f.label != "No Finding")
        print(f"{card}: n {len(y)}, pneumonia AUROC {roc_auc_score(y, p):.4f}, "
              f"false flags per normal film {flags / max(normals, 1):.3f}")


if __name__ == "__main__":
    main()
