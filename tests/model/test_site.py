"""Site operating points (issue 19 item 5) on real films: a simulated new site (NIH films under the battery's
unsharp-mask processing, which raises Pneumothorax on every film), fits from an unlabelled batch and from the
reader's verdicts, profile storage, refusal for another model and re-deciding analysed films."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model import feedback, site
from cxrviewer.model.inference import Engine
from cxrviewer.train.shift import shift_image
from cxrviewer.train.shift.films import nih_samples, pick_nih

PTX = "Pneumothorax"


@pytest.fixture(scope="module")
def engine(one_torch_thread: None) -> Engine:
    """The bundled model without its input harmonisation, which takes most of the unsharp mask's effect away: the
    simulated site stands for processing that harmonisation does not undo."""
    engine = Engine.bundled(threads=1)
    engine.harmoniser = None
    return engine


@pytest.fixture(scope="module")
def shifted_site(engine: Engine, shared_data: Path) -> SimpleNamespace:
    """36 NIH films (enriched: 45 % normal) predicted plain and as a site whose processing adds an unsharp mask;
    their labels in the engine's label order."""
    labels = engine.labels
    samples = pick_nih(nih_samples(shared_data), labels, 36, seed=7)
    cols = [KNOWN_LABELS.index(lab) for lab in labels]
    plain: list[list[float]] = []
    sharp: list[list[float]] = []
    preds = []
    for i, s in enumerate(samples):
        image = load_image(s.path)
        for rows, shown in ((plain, image), (sharp, shift_image(image, "unsharp", seed=i))):
            pred = engine.predict(shown, force=True)
            probs = {f.label: f.probability for f in pred.findings}
            rows.append([probs[lab] for lab in labels])
            if rows is sharp:
                preds.append(pred)
    target = np.array([[s.target[c] >= 0.5 for c in cols] for s in samples])
    return SimpleNamespace(plain=np.array(plain), sharp=np.array(sharp), target=target, preds=preds)


def simulated_feedback(engine: Engine, probs: np.ndarray, target: np.ndarray) -> list[feedback.FeedbackRecord]:
    """A reader who agrees where the card's call matches the label and disagrees where it does not."""
    records = []
    for i, row in enumerate(probs):
        labels = {}
        for j, lab in enumerate(engine.labels):
            thr = engine.card.thresholds[lab]
            flagged = bool(row[j] >= thr)
            verdict = feedback.AGREE if flagged == bool(target[i, j]) else feedback.DISAGREE
            labels[lab] = feedback.LabelVerdict(float(row[j]), thr, flagged, verdict)
        records.append(feedback.FeedbackRecord(f"{i:064x}", engine.name, engine.sha256, engine.card_sha256, labels,
                                               time=f"2025-01-01T00:00:{i:02d}+00:00"))
    return records


def test_unlabelled_fit_raises_pneumothorax_point_where_processing_raises_it(engine: Engine,
                                                                              shifted_site: SimpleNamespace) -> None:
    j = engine.labels.index(PTX)
    card_t = engine.card.thresholds[PTX]
    target = site.card_targets(engine.card)[PTX].flag_rate
    assert target is not None and 0.1 < target < 0.25  # 7.7 % prevalence, sens 0.51, spec 0.865
    sharp = site.fit_unlabelled("sharp", engine, shifted_site.sharp)
    plain = site.fit_unlabelled("plain", engine, shifted_site.plain)
    before = float((shifted_site.sharp[:, j] >= card_t).mean())
    after = float((shifted_site.sharp[:, j] >= sharp.thresholds[PTX]).mean())
    assert before > 2 * target  # the shift: Pneumothorax flagged on far more films than the card promises
    assert sharp.thresholds[PTX] > card_t and sharp.thresholds[PTX] > plain.thresholds[PTX]
    assert abs(after - target) < abs(before - target) and after < before
    fit = sharp.labels[PTX]
    assert fit.rate_at_card == pytest.approx(before) and fit.rate_at_site == pytest.approx(after)
    assert 0 < fit.weight < 1 and fit.films == len(shifted_site.sharp)  # shrunk toward the card, not replaced


def test_feedback_fit_restores_the_cards_false_positive_rate(engine: Engine, shifted_site: SimpleNamespace) -> None:
    j = engine.labels.index(PTX)
    records = simulated_feedback(engine, shifted_site.sharp, shifted_site.target)
    profile = site.fit_feedback("sharp", engine, records)
    negatives = shifted_site.sharp[~shifted_site.target[:, j], j]
    fpr = site.card_targets(engine.card)[PTX].false_positive_rate
    assert fpr is not None and fpr == pytest.approx(1 - 0.8652, abs=1e-3)
    before = float((negatives >= engine.card.thresholds[PTX]).mean())
    after = float((negatives >= profile.thresholds[PTX]).mean())
    assert profile.thresholds[PTX] > engine.card.thresholds[PTX]
    assert before > 2 * fpr and abs(after - fpr) < abs(before - fpr)
    fit = profile.labels[PTX]
    assert fit.films == len(negatives) and fit.positives == int(shifted_site.target[:, j].sum())
    assert profile.method == site.METHOD_FEEDBACK and profile.films == len(records)
    # the first N records only
    first = site.fit_feedback("first", engine, records, first=12)
    assert first.films == 12 and first.labels[PTX].films == int((~shifted_site.target[:12, j]).sum())


def test_few_films_or_no_metrics_keep_the_cards_point(engine: Engine, shifted_site: SimpleNamespace) -> None:
    with pytest.raises(site.SiteError, match="at least 10"):
        site.fit_unlabelled("few", engine, shifted_site.sharp[:5])
    records = simulated_feedback(engine, shifted_site.sharp[:11], shifted_site.target[:11])
    profile = site.fit_feedback("few", engine, records)
    positives = {lab: int(shifted_site.target[:11, j].sum()) for j, lab in enumerate(engine.labels)}
    kept_labels = [lab for lab in engine.labels if 11 - positives[lab] < site.MIN_FILMS]
    assert kept_labels  # fewer than 10 films without the finding (the first films are normal: No Finding)
    for lab in kept_labels:
        fit = profile.labels[lab]
        assert fit.threshold == fit.card_threshold and "card point kept" in fit.note
    no_metrics = engine.card.replace(validation=None)
    bare = SimpleNamespace(name="m", sha256=engine.sha256, card_sha256="x", card=no_metrics, labels=engine.labels)
    kept = site.fit_unlabelled("bare", bare, shifted_site.sharp)
    assert kept.thresholds == dict(engine.card.thresholds)
    with pytest.raises(site.SiteError, match="no feedback was recorded with this model .1 record is for other"):
        site.fit_feedback("other", bare, records[:1])


def test_profile_round_trip_storage_and_activation(engine: Engine, shifted_site: SimpleNamespace,
                                                   tmp_path: Path) -> None:
    profile = site.fit_unlabelled("ICU north", engine, shifted_site.sharp, source="batch of portable films")
    path = site.save(profile, tmp_path)
    assert path == tmp_path / "ICU north.json" and not list(tmp_path.glob("*.tmp"))
    back = site.load("ICU north", tmp_path)
    assert back == profile and back.to_json() == profile.to_json()
    assert [p.name for p in site.list_profiles(tmp_path)] == ["ICU north"]
    assert site.active_name(tmp_path) is None
    site.set_active("ICU north", tmp_path)
    assert site.active_name(tmp_path) == "ICU north"
    assert site.delete("ICU north", tmp_path) and site.active_name(tmp_path) is None
    assert not path.exists() and not site.delete("ICU north", tmp_path)
    with pytest.raises(site.SiteError, match="no site profile named 'ICU north'"):
        site.load("ICU north", tmp_path)
    # a hand-edited threshold, another format and a bad name are refused with the file named
    doc = profile.to_json()
    doc["thresholds"][PTX] = 0.5
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    with pytest.raises(site.SiteError, match=r"edited.json: 'thresholds' do not match"):
        site.read(tmp_path / "edited.json")
    (tmp_path / "card.json").write_text(engine.card.dumps())
    with pytest.raises(site.SiteError, match="not a cxrviewer site profile"):
        site.read(tmp_path / "card.json")
    for bad in ("", "../x", ".hidden", "active"):
        with pytest.raises(site.SiteError, match="not usable"):
            site.check_name(bad)


def test_profile_of_another_model_is_refused(engine: Engine, shifted_site: SimpleNamespace) -> None:
    profile = site.fit_unlabelled("site", engine, shifted_site.sharp)
    other = dataclasses.replace(profile, model="other-model", model_sha256="0" * 64)
    with pytest.raises(site.SiteError, match="fitted for another model .other-model"):
        site.apply(engine, other)
    recarded = dataclasses.replace(profile, card_sha256="1" * 64)
    with pytest.raises(site.SiteError, match="Fit a new profile for this model"):
        site.apply(engine, recarded)
    assert site.applied(engine) is None and engine.thresholds == dict(engine.card.thresholds)


def test_apply_rethreshold_and_revert_match_a_fresh_prediction(engine: Engine, shifted_site: SimpleNamespace,
                                                               shared_data: Path) -> None:
    profile = site.fit_unlabelled("site", engine, shifted_site.sharp)
    image = shift_image(load_image(sorted((shared_data / "nih" / "images").glob("*.png"))[3]), "unsharp", seed=1)
    under_card = engine.predict(image, force=True)
    assert site.operating_points_entry(engine)["source"] == site.CARD_POINTS
    try:
        site.apply(engine, profile)
        assert site.applied(engine) is profile and engine.thresholds == profile.thresholds
        entry = site.operating_points_entry(engine)
        assert entry["source"] == "site profile" and entry["name"] == "site" and entry["films"] == 36
        assert "site operating points 'site'" in site.describe(engine)
        fresh = engine.predict(image, force=True)
        site.rethreshold(under_card, engine)
        key = [(f.label, f.threshold, f.positive, f.triage, f.note, f.cam_peak) for f in fresh.findings]
        assert [(f.label, f.threshold, f.positive, f.triage, f.note, f.cam_peak) for f in under_card.findings] == key
    finally:
        site.apply(engine, None)
    assert site.applied(engine) is None and engine.thresholds == dict(engine.card.thresholds)
    site.rethreshold(under_card, engine)
    assert all(f.threshold == engine.card.thresholds[f.label] for f in under_card.findings)


def test_feedback_log_records_verdicts_per_film(engine: Engine, shifted_site: SimpleNamespace,
                                                tmp_path: Path) -> None:
    log = tmp_path / "feedback.jsonl"
    pred = shifted_site.preds[0]
    flagged = next(f.label for f in pred.findings if f.positive)
    quiet = next(f.label for f in pred.findings if not f.positive and f.label != "No Finding")
    first = feedback.record_from_prediction(pred, engine, "a" * 64, {flagged: feedback.DISAGREE}, complete=False)
    assert first.truth(flagged) is False and first.truth(quiet) is None  # no verdict, not complete: unknown
    second = feedback.record_from_prediction(pred, engine, "a" * 64, {quiet: feedback.DISAGREE}, complete=True)
    assert second.truth(quiet) is True and second.truth(flagged) is True  # complete: no verdict = agree
    feedback.add_record(log, first)
    records = feedback.add_record(log, second)  # same film and model: replaces the first
    assert len(records) == 1 and feedback.read_log(log) == [second]
    text = log.read_text()
    assert ".png" not in text and "images/" not in text  # no path or name of the film
    log.write_text(text + "{not json\n")
    with pytest.raises(feedback.FeedbackError, match=r"feedback.jsonl line 2: not JSON"):
        feedback.read_log(log)
    with pytest.raises(feedback.FeedbackError, match="unknown verdict"):
        feedback.record_from_prediction(pred, engine, "b" * 64, {quiet: "maybe"}, complete=False)
