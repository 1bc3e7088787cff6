"""Markdown tables of a site-shift battery result (`battery.json`)."""

from __future__ import annotations

from typing import Any

PTX = "Pneumothorax"


def _f(v: Any, digits: int = 3, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def summary_table(site: dict[str, dict]) -> list[str]:
    """One row per transform: the numbers the team acts on."""
    base = site["plain"]["mean_auroc"]
    lines = ["| transform | group | mean AUROC (Δ [95 % CI]) | flags / film | flags / normal film "
             "| Pneumothorax flagged | PTX shift median / p90 | gate AUROC vs plain | gate warns | gate rejects |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in site.items():
        mean = r["mean_auroc"]
        delta = "" if name == "plain" or mean is None or base is None else f" ({mean - base:+.3f}"
        ci = r.get("mean_auroc_delta_95ci")
        delta += f" [{ci[0]:+.3f}, {ci[1]:+.3f}])" if delta and ci else (")" if delta else "")
        s = r["shift"].get(PTX, {})
        shift = "–" if name == "plain" else f"{_f(s.get('median'), signed=True)} / {_f(s.get('p90'), signed=True)}"
        g = r["gate"]
        lines.append(f"| {name} | {r['group']} | {_f(mean)}{delta} | {_f(r['flags_per_film'], 2)} | "
                     f"{_f(r['flags_per_normal_film'], 2)} | {_pct(r.get('pneumothorax_flag_rate'))} | {shift} | "
                     f"{_f(g['auroc_vs_plain'])} | {_pct(g['warned'])} | {_pct(g['rejected'])} |")
    return lines


def label_table(site: dict[str, dict], labels: list[str], key: str) -> list[str]:
    """Per-label AUROC (key "auroc") or median probability shift (key "shift") per transform."""
    lines = ["| transform | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, r in site.items():
        if key == "shift" and name == "plain":
            continue
        cells = [_f(r["auroc"][lab]) if key == "auroc" else _f(r["shift"][lab]["median"], signed=True)
                 for lab in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    labels = result["labels"]
    out = [f"# Site-shift battery: {result['model']} (seed {result['seed']})", ""]
    if result.get("harmonise"):
        out += [f"Inputs harmonised (`cxrviewer.model.harmonise`): {result['harmonise']}", ""]
    for name, site in result["sites"].items():
        plain = site["plain"]
        out += [f"## {name}: {plain['films']} films ({plain['normal_films']} normal)", "",
                *summary_table(site), ""]
        if any(r["mean_auroc"] is not None for r in site.values()):
            out += [f"Per-label AUROC ({name}):", "", *label_table(site, labels, "auroc"), ""]
        out += [f"Median probability shift per label, transformed minus plain, same film ({name}):", "",
                *label_table(site, labels, "shift"), ""]
    return "\n".join(out) + "\n"
