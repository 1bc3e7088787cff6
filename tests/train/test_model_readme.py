"""`bundle --readme` keeps the hand-measured sections of the previous README, marked as belonging to it."""

from __future__ import annotations

import json
from pathlib import Path

from cxrviewer.train.model_readme import carry_sections, model_readme

REPO = Path(__file__).resolve().parents[2]


def test_measured_sections_survive_a_regenerated_readme() -> None:
    card = json.loads((REPO / "models" / "cxr-lite0os16x3-256.json").read_text())
    old = (REPO / "models" / "README.md").read_text()
    generated = model_readme(card, "cxrviewer-train bundle ...")
    hand = [line for line in old.splitlines() if line.startswith("## ")
            and line not in {h for h in generated.splitlines() if h.startswith("## ")}]
    assert "## Site-shift battery (issue 19)" in hand  # the battery is measured by hand, not generated
    out = carry_sections(old, generated)
    heads = [line for line in out.splitlines() if line.startswith("## ")]
    assert heads[-len(hand):] == hand and heads[:-len(hand)] == [h for h in generated.splitlines()
                                                                   if h.startswith("## ")]
    assert out.count("> Measured on the previous bundle") == len(hand)
    assert carry_sections(generated, generated) == generated  # nothing to carry


def test_the_model_section_says_whether_inputs_are_harmonised() -> None:
    card = json.loads((REPO / "models" / "cxr-lite0os16x3-256.json").read_text())
    assert card["preprocessing"].get("harmonise"), "the bundled card harmonises its inputs"
    line = next(x for x in model_readme(card, "...").splitlines() if x.startswith("- Input harmonisation"))
    assert f"squared distance {card['preprocessing']['harmonise']['radius']}" in line
    assert line in (REPO / "models" / "README.md").read_text().splitlines()  # the shipped README is current
    plain = {**card, "preprocessing": {k: v for k, v in card["preprocessing"].items() if k != "harmonise"}}
    assert "Input harmonisation" not in model_readme(plain, "...")
