"""Write the human-readable model README (intended use, data, metrics, limitations) from a model card."""

from __future__ import annotations

from typing import Any

from cxrviewer.train.metrics import fmt

TRAINING_KEYS = ("arch", "init", "input_size", "epochs", "batch_size", "lr", "weight_decay", "folds", "seed",
                 "max_train_per_dataset", "box_loss", "box_weight")

HARMONISE_TEXT = ("- Input harmonisation (`cxrviewer/model/harmonise.py`, chosen and written by the site-shift "
                  "battery): before the network sees a film, thin lines and tubes at least {lines}x the abroad "
                  "check's line threshold are filled in and a detail spectrum farther than squared distance "
                  "{radius} from the training films' is turned down to that distance (never up); the film shown "
                  "and exported is unchanged and the abroad verdict says what was done (numbers: the site-shift "
                  "battery section).")
SEAL_TEXT = ("- Card: sealed; SHA-256 `{sha}` of its canonical content (the card's JSON without `seal`, keys sorted, "
             "no whitespace). Every load checks it: a card edited after training (thresholds, calibration, anything) "
             "is refused unless `--allow-modified-card` is given, and every output then says \"modified model card\" "
             "and reports the edited card's own SHA-256 beside the weights'.")

BOX_LOSS_TEXT = {
    "cells": "for a boxed finding, map cells inside its box were trained positive and cells outside negative",
    "softmax": "for a boxed finding, the share of its map's spatial softmax inside the box was maximised",
}


def _cam_verdict(pg: dict[str, Any] | None) -> str:
    """One honest sentence on the pointing game against the fixed-location priors."""
    if not pg or pg["hit_rate"]["cam"] is None:
        return "Their localisation was not measured."
    hr = pg["hit_rate"]
    prior = max(hr["centre"], hr["mean_box"])
    worse = [lab for lab, r in pg["per_label"].items() if r["cam"] < max(r["centre"], r["mean_box"])]
    if hr["cam"] <= prior:
        return "On the NIH boxes they do not beat a fixed-location prior overall (see the pointing game above)."
    tail = f"; per label they trail a prior for {', '.join(worse)}" if worse else ""
    if hr["cam"] < 1.25 * prior:
        return (f"On the NIH boxes they are only slightly better than a fixed-location prior ({fmt(hr['cam'])} vs "
                f"{fmt(prior)}){tail}.")
    return (f"On the NIH boxes their peak is inside the box {hr['cam'] / prior:.1f}x as often as the better "
            f"fixed-location prior{tail}. Boxes are sparse (720 in all): a map is a pointer, not a segmentation.")


def _grid(card: dict[str, Any]) -> int:
    """Side of the CAM grid: input size / output stride of the architecture."""
    from cxrviewer.model.network import split_ensemble

    stride = 16 if split_ensemble(card["architecture"])[0].endswith("_os16") else 32
    return card["input_size"] // stride


def _cv_cell(cv: dict[str, Any] | None, label: str) -> str:
    if not cv:
        return "n/a"
    r = cv["per_label"].get(label, {}).get("auroc", {})
    if r.get("mean") is None:
        return "n/a"
    return f"{r['mean']:.3f} ± {r['std']:.3f} ({r['folds']})"


def _start(card: dict[str, Any]) -> str:
    """Where the backbone's weights started, with package, version and licence where they came from one."""
    init = card.get("training", {}).get("init") or {}
    if init.get("package"):
        extra = f" {init['transfer'].rstrip('.')}." if init.get("transfer") else ""
        return (f"fine-tuned from ImageNet weights shipped inside the registry package `{init['package']}` "
                f"{init.get('version', '')} (licence {init.get('licence', 'unknown')}; {init.get('source', '')}; "
                f"file `{init.get('file', '')}`, SHA-256 `{init.get('sha256', '')}`; nothing is downloaded at run "
                f"time).{extra}")
    if init.get("init") == "file":
        return f"fine-tuned from the weights file `{init.get('file')}` (SHA-256 `{init.get('sha256')}`)."
    return "trained from scratch (no ImageNet or other downloaded weights)."


def _cam_display(card: dict[str, Any]) -> str:
    """How the viewer draws the maps (smoothing from the card, fixed colour scale)."""
    sigma = (card.get("cam") or {}).get("smoothing_cells")
    smooth = (f"smooths each map on its grid (Gaussian, sigma {sigma} cells) before drawing it or taking its peak "
              "and ") if sigma else ""
    return (f"the viewer {smooth}shows sigmoid(map) on a fixed [0, 1] scale, for flagged findings and for "
            "'check' (triage) items, where the model looked; no map is drawn for a label below both points.")


def _onnx_line(onnx: dict[str, Any]) -> str:
    """The ONNX export's file, hash and measured agreement with torch (`cxrviewer-train export-onnx`)."""
    parity = onnx.get("parity") or {}
    agree = (f"; on {parity['films']} films it matches torch within {parity['max_abs_logit']:.1e} (logits) and "
             f"{parity['max_abs_cam']:.1e} (maps) logit units") if "films" in parity else ""
    return (f"- ONNX export: `{onnx['file']}`, SHA-256 `{onnx['sha256']}` (checked before ONNX Runtime reads it), "
            f"the same network with its maps and gate features in one graph, run by the app instead of torch"
            f"{agree} ({onnx.get('exported_with', '')}).")


def refresh_integrity_lines(readme: str, card: dict[str, Any]) -> str:
    """An existing README with its ONNX and card-seal lines rewritten from `card` (after `export-onnx` re-sealed it);
    the ONNX line goes after the weights line when the README had none."""
    lines = readme.splitlines()
    wanted = {"- ONNX export": _onnx_line(card["onnx"]) if card.get("onnx") else None,
              "- Card:": SEAL_TEXT.format(sha=card["seal"]["sha256"]) if card.get("seal") else None}
    out: list[str] = []
    for line in lines:
        prefix = next((p for p in wanted if line.startswith(p)), None)
        if prefix is None:
            out.append(line)
            if line.startswith("- Weights:") and not any(x.startswith("- ONNX export") for x in lines) \
                    and wanted["- ONNX export"]:
                out.append(str(wanted["- ONNX export"]))
        elif wanted[prefix] is not None:
            out.append(str(wanted[prefix]))
    return "\n".join(out) + ("\n" if readme.endswith("\n") else "")


def _members(card: dict[str, Any]) -> str:
    """For an ensemble: how many networks, their seeds and epochs (empty for a single network)."""
    members = card.get("ensemble_of") or []
    if not members:
        return ""
    parts = [f"seed {m['config'].get('seed')}, {m['config'].get('epochs')} epochs" for m in members]
    return (f"an ensemble of {len(members)} networks of the same recipe ({'; '.join(parts)}) joined into one "
            "network whose logits and maps are their mean; each ")


def _policy_text(card: dict[str, Any]) -> str:
    pol = card.get("operating_policy")
    if not pol:
        return ("Operating point: Youden J on those images; Pneumothorax uses a high-sensitivity point (≥ 0.95 "
                "sensitivity on validation).")
    triage = "; ".join(f"{lab}: {text}" for lab, text in pol.get("triage", {}).items())
    return (f"Probabilities are calibrated ({pol.get('calibration', '')}); ECE before → after calibration is in the "
            f"table. Operating points: {pol['rule']} → specificity target {fmt(pol['specificity_target'])}, which "
            f"flags {fmt(pol['flags_per_normal_film'])} findings per normal validation film and "
            f"{fmt(pol['flags_per_abnormal_film'])} per abnormal one ({pol['normal_films']} / {pol['abnormal_films']}"
            f" films). Triage: {triage or 'none'}. \"No Finding\" is never shown positive beside a flagged finding. "
            f"A rule-out mode uses ≥ {fmt(pol.get('rule_out_sensitivity'))} sensitivity points for every label.")


def _curves(card: dict[str, Any]) -> list[str]:
    """Learning curves: validation score (mean AUROC over dataset x label pairs) per epoch and fold."""
    training = card.get("training", {})
    folds = training.get("cv_learning_curves") or {}
    rows = {name: curve for name, curve in folds.items() if curve}
    final = training.get("learning_curve") or []
    if not rows and not final:
        return []
    lines = ["", "## Learning curves", "",
             "Validation score per epoch (mean AUROC over dataset × label pairs of the fold's held-out patients; "
             "the selected epoch is the best one), and the training loss of the shipped all-data run.", ""]
    epochs = max([len(c) for c in rows.values()] + [len(final)])
    lines.append("| run | " + " | ".join(str(e + 1) for e in range(epochs)) + " |")
    lines.append("|---|" + "---|" * epochs)
    for name, curve in rows.items():
        lines.append(f"| {name} val | " + " | ".join(fmt(r.get("val_score")) for r in curve)
                     + " |" * (epochs - len(curve) + 1))
    if final:
        lines.append("| all-data loss | " + " | ".join(fmt(r.get("train_loss")) for r in final)
                     + " |" * (epochs - len(final) + 1))
    return lines


def model_readme(card: dict[str, Any], reproduce: str) -> str:
    """Markdown for models/README.md; every number comes from the card."""
    v = card.get("validation", {})
    cv = v.get("cross_validation")
    lines = [
        f"# Bundled model: `{card['name']}`",
        "",
        "> **Not for diagnostic use.** Research and teaching second opinion only. It is not a medical device.",
        "",
        "## Intended use",
        card.get("intended_use", ""),
        "Adult frontal (PA/AP) chest radiographs. Not for lateral views, children (except as noted), other body "
        "parts or other modalities: the app's input gate rejects those it recognises.",
        "",
        "## Model",
        f"- Architecture: {card['architecture']}, {_members(card)}{_start(card)} 1-channel input, "
        f"{card['input_size']} x {card['input_size']} letterbox (aspect kept, zero padding), "
        f"intensity (x - {card['preprocessing']['mean']}) / {card['preprocessing']['std']} on the [0, 1] model input.",
        "- Head: global average pooling + one linear layer, so class-activation maps are exact: the spatial mean "
        "of a label's map (logit units) equals its logit; " + _cam_display(card),
        f"- Weights: `{card['weights']['file']}` ({card['weights'].get('dtype', 'float32')}), "
        f"SHA-256 `{card['weights']['sha256']}` (checked at every load).",
        *([_onnx_line(card["onnx"])] if card.get("onnx") else []),
        *([HARMONISE_TEXT.format(**card["preprocessing"]["harmonise"])]
          if card["preprocessing"].get("harmonise") else []),
        *([SEAL_TEXT.format(sha=card["seal"]["sha256"])] if card.get("seal") else []),
        f"- Trainer: cxrviewer-train {card.get('trainer_version', '')}, created {card.get('created', '')}.",
        "",
        "## Training data and licences",
    ]
    for d in card.get("datasets", []):
        lines.append(f"- **{d['name']}** — licence: {d['license']}. Attribution: {d['attribution']}")
    cfg = card.get("training", {}).get("config", {})
    if cfg.get("box_csv"):
        lines.insert(lines.index("## Training data and licences") - 1,
                     "- Localisation: besides the image labels, the maps were trained on the NIH radiologist "
                     f"bounding boxes of the training images (weight {cfg.get('box_weight')}): "
                     + BOX_LOSS_TEXT.get(cfg.get("box_loss", ""), "a box loss")
                     + ". Validation boxes were never trained on (see the pointing game).")
    lines += [
        "",
        f"Validation is patient-disjoint ({v.get('split', 'n/a')}). Label mapping: NIH Effusion → Pleural "
        "Effusion, Pleural_Thickening → Pleural Other, Mass/Nodule → Lung Lesion, Infiltration → Lung Opacity; "
        "Kermany NORMAL → No Finding, PNEUMONIA → Pneumonia. Labels a dataset does not provide were masked in the "
        "loss, never treated as negative.",
        "",
        "## Observations covered",
        ", ".join(card["labels"]) + ".",
        "",
        "**Not assessed** (no labels in our data; the app shows them as \"not assessed\", never negative): "
        + ", ".join(card.get("not_covered", [])) + ".",
        "",
        "## Validation metrics (held-out patients)",
        "",
        f"The table is computed on the **{v.get('per_label_dataset', 'all')}** validation images only (adult "
        "films; pediatric Kermany films are reported separately below, never pooled, because pooling two sources "
        "inflates AUROC). " + _policy_text(card) + " CV column: mean ± std of AUROC across the cross-validation "
        "folds finished (number of folds)" + (" of the first member's cross-validation run; the other columns "
                                              "are the ensemble's" if card.get("ensemble_of") else "") + ".",
        "",
        "| label | AUROC | AUPRC | positives | negatives | threshold | sensitivity | specificity | ECE (raw → "
        "calibrated) | CV AUROC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lab, r in v.get("per_label", {}).items():
        ece = f"{fmt(r.get('ece_uncalibrated'))} → {fmt(r['ece'])}" if r.get("ece_uncalibrated") is not None \
            else fmt(r["ece"])
        lines.append(f"| {lab} | {fmt(r['auroc'])} | {fmt(r['auprc'])} | {r['n_pos']} | {r['n_neg']} | "
                     f"{fmt(r['threshold'])} | {fmt(r['sensitivity'])} | {fmt(r['specificity'])} | "
                     f"{ece} | {_cv_cell(cv, lab)} |")
    lines.append("")
    for ds, reps in v.get("per_dataset", {}).items():
        vals = [r["auroc"] for r in reps.values() if r["auroc"] is not None]
        mean = sum(vals) / len(vals) if vals else None
        detail = ", ".join(f"{k} {fmt(r['auroc'])}" for k, r in reps.items() if r["auroc"] is not None)
        lines.append(f"- **{ds}** images only: mean AUROC {fmt(mean)} over {len(vals)} labels ({detail}).")
    runs = [(f" member {i + 1} (seed {m['config'].get('seed')})", m["cross_validation"])
            for i, m in enumerate(card.get("ensemble_of") or [])]
    runs = runs or ([("", cv.get("mean_over_folds", {}))] if cv else [])
    for who, over in runs:
        for ds, agg in over.get("mean_auroc_per_dataset", {}).items():
            lines.append(f"- Cross-validation{who}, {ds}: mean AUROC {fmt(agg['mean'])} ± {fmt(agg['std'])} "
                         f"over {agg['folds']} fold(s).")
    pg = v.get("pointing_game")
    if pg:
        hr = pg["hit_rate"]
        lines += ["", "## Localisation (pointing game)", "",
                  f"On {pg['total']['n']} NIH radiologist boxes of held-out images"
                  + (f" ({pg['note']}; each map from models that never saw the patient)" if pg.get("note") else
                     " (cross-validation models, each on its own held-out patients)"
                     if card.get("training", {}).get("all_data") else "")
                  + ": the peak of the boxed finding's map (smoothed as the viewer shows it) "
                  f"falls inside the box in {fmt(hr['cam'])} of cases; fixed-location priors that ignore "
                  f"the image reach {fmt(hr['centre'])} (image centre) and {fmt(hr['mean_box'])} (mean box centre "
                  "of the label, leave-one-out).", "",
                  "| label | boxes | CAM hits | centre prior | mean-box prior |", "|---|---|---|---|---|"]
        for lab, r in pg["per_label"].items():
            lines.append(f"| {lab} | {r['n']} | {r['cam']} | {r['centre']} | {r['mean_box']} |")
    lines += _curves(card)
    selection = card.get("training", {}).get("selection")
    if selection:
        lines += ["", "## How this model was chosen", "", selection]
    lines += [
        "",
        "## Known limitations",
        "- Small data: about 2,200 NIH and 1,400–2,400 Kermany images; expect clearly lower accuracy than models "
        "trained on the full public datasets (CheXNet: mean AUROC 0.84 on 112k images with ImageNet "
        "initialisation).",
        "- NIH labels were mined from reports by NLP (~90 % accurate); Infiltration → Lung Opacity and Mass/Nodule "
        "→ Lung Lesion are approximate mappings.",
        "- Kermany images are pediatric (1–5 years), AP, and were only available as 224 px squashed JPEG copies; "
        "the pneumonia/normal signal is partly learned from them, and pediatric vs adult appearance is a "
        "confounder. Performance on adult pneumonia is the NIH figure above.",
        "- Calibration and thresholds were fitted on the same validation patients the metrics are reported on "
        "(optimistic); calibration follows the NIH sample's enriched prevalence (about half the films have a "
        "finding), not a clinic's.",
        "- Class-activation maps are coarse (the last feature map is "
        f"{_grid(card)} x {_grid(card)} cells); they point to a region, not a boundary. " + _cam_verdict(pg),
        "",
        "## Reproduce",
        "```bash",
        reproduce,
        "```",
        "Training configuration: " + ", ".join(f"{k}={cfg[k]}" for k in TRAINING_KEYS if k in cfg) + ".",
        "",
    ]
    return "\n".join(lines)


def carry_sections(old: str, new: str) -> str:
    """`new` plus the sections of `old` (a README of the previous bundle) that the generator does not write,
    such as measurements made by hand (the site-shift battery, site calibration, speed); each carried section
    says under its heading that its figures belong to the previous bundle until they are measured again."""
    def sections(text: str) -> list[tuple[str, str]]:
        parts: list[tuple[str, str]] = []
        head, body = "", list[str]()
        for line in text.splitlines():
            if line.startswith("## "):
                parts.append((head, "\n".join(body)))
                head, body = line, []
            else:
                body.append(line)
        parts.append((head, "\n".join(body)))
        return [(h, b) for h, b in parts if h]

    written = {h for h, _ in sections(new)}
    old_name = next((line.split("`")[1] for line in old.splitlines()
                     if line.startswith("# Bundled model: `") and line.count("`") >= 2), "the previous model")
    carried = [f"{h}\n\n> Measured on the previous bundle (`{old_name}`): measure again for this one.\n{b.rstrip()}"
               for h, b in sections(old) if h not in written]
    return "\n\n".join([new.rstrip(), *carried]) + "\n" if carried else new
