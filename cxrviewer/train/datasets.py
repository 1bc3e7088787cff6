"""Dataset adapters: NIH ChestX-ray14, CheXpert and plain CSV files -> `Sample` lists.

A label a dataset does not annotate stays masked (unknown), never negative. Missing image files are
counted and reported, not fatal; a CSV lacking a required column is a clear `DatasetError`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer.labels import KNOWN_LABELS, NIH_TO_LABEL
from cxrviewer.train.samples import (
    DEFAULT_UNCERTAINTY,
    Sample,
    Uncertainty,
    make_sample,
    resolve_uncertain,
    view_from_tags,
)

log = logging.getLogger(__name__)


class DatasetError(Exception):
    """A dataset description or CSV cannot be used; the message names the file and the problem."""


@dataclass
class LoadReport:
    """What an adapter read: samples plus counts of what it skipped."""

    samples: list[Sample] = field(default_factory=list)
    missing_files: int = 0
    skipped_lateral: int = 0
    name: str = ""

    def summary(self) -> str:
        return (f"{self.name}: {len(self.samples)} images, {self.missing_files} missing files, "
                f"{self.skipped_lateral} non-frontal skipped")


def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise DatasetError(f"{path}: required column(s) missing: {', '.join(missing)}")
            return list(reader)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read CSV ({exc})") from None


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows (dicts sharing the first row's keys) as a CSV file, e.g. a subset of a dataset."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _finish(report: LoadReport, sample: Sample | None, frontal_only: bool) -> None:
    if sample is None:
        return
    if frontal_only and sample.view == "lateral":
        report.skipped_lateral += 1
        return
    if not sample.path.is_file():
        report.missing_files += 1
        return
    report.samples.append(sample)


def load_nih(csv_path: Path, image_dirs: list[Path], frontal_only: bool = True,
             hierarchy: bool = True) -> LoadReport:
    """NIH `Data_Entry_2017*.csv` (Finding Labels with '|') + image folder(s), searched recursively."""
    rows = _read_csv(csv_path, ["Image Index", "Finding Labels", "Patient ID", "View Position"])
    index: dict[str, Path] = {}
    for d in image_dirs:
        if not d.is_dir():
            raise DatasetError(f"{d}: image folder not found")
        for p in d.rglob("*.png"):
            index.setdefault(p.name, p)
    nih_labels = [k for k in NIH_TO_LABEL if k not in ("Infiltrate",)]
    report = LoadReport(name=f"nih ({csv_path.name})")
    for row in rows:
        found = {s.strip() for s in row["Finding Labels"].split("|") if s.strip()}
        unknown = found - set(nih_labels)
        if unknown:
            log.warning("%s: unknown NIH finding(s) %s ignored", row["Image Index"], sorted(unknown))
        values: dict[str, float | None] = {}
        for name in nih_labels:
            lab = NIH_TO_LABEL[name]
            values[lab] = max(values.get(lab) or 0.0, 1.0 if name in found else 0.0)
        path = index.get(row["Image Index"], image_dirs[0] / row["Image Index"])
        sample = make_sample(path, f"nih:{row['Patient ID']}", view_from_tags(row["View Position"]),
                             values, "nih", hierarchy)
        _finish(report, sample, frontal_only)
    return report


CHEXPERT_COLUMNS = [lab for lab in KNOWN_LABELS if lab not in ("Emphysema", "Fibrosis", "Hernia")]


def load_chexpert(csv_path: Path, root: Path, frontal_only: bool = True, hierarchy: bool = True,
                  uncertainty: dict[str, Uncertainty] | None = None, seed: int = 0) -> LoadReport:
    """CheXpert `train.csv`/`valid.csv`: 1 positive, 0 negative, -1 uncertain, blank unknown (masked)."""
    rows = _read_csv(csv_path, ["Path", "Frontal/Lateral", *CHEXPERT_COLUMNS])
    policy = {**DEFAULT_UNCERTAINTY, **(uncertainty or {})}
    rng = np.random.default_rng(seed)
    report = LoadReport(name=f"chexpert ({csv_path.name})")
    for row in rows:
        values: dict[str, float | None] = {}
        for lab in CHEXPERT_COLUMNS:
            raw = (row.get(lab) or "").strip()
            if raw == "":
                values[lab] = None
                continue
            try:
                v = float(raw)
            except ValueError:
                raise DatasetError(f"{csv_path}: label {lab!r} has value {raw!r} (expected 1, 0, -1 or blank)"
                                   ) from None
            if v == -1:
                t, m = resolve_uncertain(policy.get(lab, Uncertainty.IGNORE), rng)
                values[lab] = t if m else None
            else:
                values[lab] = 1.0 if v > 0 else 0.0
        match = re.search(r"(patient\d+)", row["Path"])
        patient = match.group(1) if match else row.get("Patient ID", row["Path"])
        view = view_from_tags(row["Frontal/Lateral"], row.get("AP/PA"))
        sample = make_sample(root / row["Path"], f"chexpert:{patient}", view, values, "chexpert", hierarchy)
        _finish(report, sample, frontal_only)
    return report


def read_mapping(path: Path, dataset: str | None) -> dict[str, list[str]]:
    """Source label -> our labels. Accepts `label_map_to_chexpert.csv` (dataset,source_label,
    chexpert_style_label) filtered by `dataset`, or a two-column `source,target` CSV."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DatasetError(f"{path}: empty mapping file")
    header = [h.strip() for h in rows[0]]
    mapping: dict[str, list[str]] = {}
    if {"source_label", "chexpert_style_label"} <= set(header):
        src_i, dst_i = header.index("source_label"), header.index("chexpert_style_label")
        ds_i = header.index("dataset") if "dataset" in header else None
        body = [r for r in rows[1:] if ds_i is None or dataset is None or r[ds_i].strip() == dataset]
    else:
        src_i, dst_i, body = 0, 1, rows[1:]
    for r in body:
        src, dst = r[src_i].strip(), r[dst_i].strip()
        if not src or not dst or src.startswith("("):
            continue
        dst = dst.split("(")[0].strip()  # "Pneumonia (and usually Lung Opacity)" -> "Pneumonia"
        if dst not in KNOWN_LABELS:
            raise DatasetError(f"{path}: {src!r} maps to unknown label {dst!r}")
        mapping.setdefault(src, []).append(dst)
    if not mapping:
        raise DatasetError(f"{path}: no usable mapping rows" + (f" for dataset {dataset!r}" if dataset else ""))
    return mapping


def load_plain(csv_path: Path, mapping: dict[str, list[str]], root: Path, name: str,
               frontal_only: bool = True, hierarchy: bool = True) -> LoadReport:
    """Plain CSV: `image`, `patient_id`, `view` + label columns (1/0/blank) named in `mapping`."""
    rows = _read_csv(csv_path, ["image", "patient_id", "view"])
    columns = set(rows[0].keys()) if rows else set()
    used = [src for src in mapping if src in columns]
    if not used:
        raise DatasetError(f"{csv_path}: none of the mapped label columns ({', '.join(mapping)}) is present")
    report = LoadReport(name=f"{name} ({csv_path.name})")
    for row in rows:
        values: dict[str, float | None] = {}
        for src in used:
            raw = (row.get(src) or "").strip()
            if raw in ("", "-1"):
                continue
            try:
                v = 1.0 if float(raw) > 0 else 0.0
            except ValueError:
                raise DatasetError(f"{csv_path}: column {src!r} has value {raw!r}") from None
            for dst in mapping[src]:
                values[dst] = max(values.get(dst) or 0.0, v)
        sample = make_sample(root / row["image"], f"{name}:{row['patient_id']}", view_from_tags(row["view"]),
                             values, name, hierarchy)
        _finish(report, sample, frontal_only)
    return report


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """`kind,key=value,...` (e.g. `nih,csv=Data_Entry_2017.csv,images=imgs`) -> (kind, options)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise DatasetError("empty --dataset specification")
    kind, opts = parts[0].lower(), {}
    for p in parts[1:]:
        if "=" not in p:
            raise DatasetError(f"--dataset {spec!r}: expected key=value, got {p!r}")
        k, v = p.split("=", 1)
        opts[k.strip()] = v.strip()
    return kind, opts


def dataset_name(spec: str) -> str:
    """The dataset name a `--dataset` specification gives its samples (nih, chexpert or the plain name)."""
    kind, o = parse_spec(spec)
    if kind == "plain":
        return o.get("name", Path(o.get("csv", "plain")).parent.name)
    return kind


def load_spec(spec: str, frontal_only: bool = True, hierarchy: bool = True, seed: int = 0) -> LoadReport:
    """Load one dataset from a `--dataset` specification string."""
    kind, o = parse_spec(spec)
    try:
        if kind == "nih":
            dirs = [Path(d) for d in o.get("images", "").split(":") if d] or [Path(o["csv"]).parent / "images"]
            return load_nih(Path(o["csv"]), dirs, frontal_only, hierarchy)
        if kind == "chexpert":
            csv_path = Path(o["csv"])
            return load_chexpert(csv_path, Path(o.get("root", csv_path.parent.parent)), frontal_only, hierarchy,
                                 seed=seed, uncertainty={k: Uncertainty(v) for k, v in
                                                         (x.split(":") for x in o["uncertainty"].split(";"))}
                                 if "uncertainty" in o else None)
        if kind == "plain":
            csv_path = Path(o["csv"])
            name = dataset_name(spec)
            mapping = read_mapping(Path(o["mapping"]), o.get("mapping_dataset", name))
            return load_plain(csv_path, mapping, Path(o.get("root", csv_path.parent)), name, frontal_only,
                              hierarchy)
    except KeyError as exc:
        raise DatasetError(f"--dataset {spec!r}: missing option {exc.args[0]}") from None
    except ValueError as exc:
        raise DatasetError(f"--dataset {spec!r}: {exc}") from None
    raise DatasetError(f"--dataset {spec!r}: unknown kind {kind!r} (nih, chexpert or plain)")
