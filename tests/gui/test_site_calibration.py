"""Site operating points in the viewer: the model card dialog shows a site profile beside the card's points,
fits one from the reader's feedback and reverts; the window applies the active profile at start, re-decides the
analysed films when it changes and records the reader's verdicts (no path in the log)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QComboBox

from cxrviewer.gui.dialogs import ModelCardDialog
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.imaging import load_image
from cxrviewer.model import feedback, site
from cxrviewer.model.inference import Engine

from .conftest import POSITIVE
from .test_viewer import open_and_analyse


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Profiles, the active mark and the feedback log in a temporary data folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture(scope="module")
def bundled(shared_data: Path) -> tuple[Engine, np.ndarray, list]:
    """The shipped model and its calibrated probabilities on 12 real NIH films (and their predictions)."""
    engine = Engine.bundled(threads=1)
    paths = sorted((shared_data / "nih" / "images").glob("*.png"))[100:112]
    preds = [engine.predict(load_image(p), force=True) for p in paths]
    probs = np.array([[{f.label: f.probability for f in p.findings}[lab] for lab in engine.labels] for p in preds])
    return engine, probs, preds


def column(dialog: ModelCardDialog, col: int) -> dict[str, str]:
    t = dialog.table
    return {t.item(r, 0).text(): (t.item(r, col).text() if t.item(r, col) else "") for r in range(len(dialog.labels))}


def test_dialog_shows_the_site_points_beside_the_cards_and_reverts(qtbot, bundled) -> None:  # noqa: ANN001
    engine, probs, _ = bundled
    profile = site.fit_unlabelled("ward 7", engine, probs, source="12 films")
    site.save(profile)
    site.apply(engine, profile)
    site.set_active("ward 7")
    try:
        dialog = ModelCardDialog(engine)
        qtbot.addWidget(dialog)
        card_col, site_col = column(dialog, 4), column(dialog, 5)
        assert not dialog.table.isColumnHidden(5)
        assert dialog.table.horizontalHeaderItem(5).text() == "Site point"
        for label in engine.labels:
            assert card_col[label] == f"{engine.card.thresholds[label]:.3f}"
            assert site_col[label] == f"{profile.thresholds[label]:.3f}"
        text = dialog.site_text()
        assert "site operating points 'ward 7'" in text and "unlabelled batch of 12 films" in text
        assert "AUROC" in text and "unchanged" in text
        assert dialog.revert_button.isEnabled()
        assert dialog.site_combo.currentData() == "ward 7"
        with qtbot.waitSignal(dialog.operating_points_changed, timeout=2000):
            dialog.revert_button.click()
        assert site.applied(engine) is None and engine.thresholds == dict(engine.card.thresholds)
        assert site.active_name() is None and site.profile_path("ward 7").exists()  # reverting keeps the profile
        assert dialog.table.isColumnHidden(5) and not dialog.revert_button.isEnabled()
        assert "the model card's operating points" in dialog.site_text()
        assert dialog.site_combo.currentData() is None
        # choose the stored profile again from the list
        combo: QComboBox = dialog.site_combo
        index = combo.findData("ward 7")
        assert index > 0
        combo.setCurrentIndex(index)
        combo.activated.emit(index)
        assert site.applied(engine) is not None and site.active_name() == "ward 7"
    finally:
        site.apply(engine, None)


def test_dialog_fits_from_the_feedback_collected(qtbot, bundled) -> None:  # noqa: ANN001
    engine, _, preds = bundled
    dialog = ModelCardDialog(engine)
    qtbot.addWidget(dialog)
    assert not dialog.fit_button.isEnabled() and "0 films" in dialog.site_text()  # no feedback yet
    for i, pred in enumerate(preds):  # a reader who disagrees with every flag (false alarms at this site)
        verdicts = {f.label: feedback.DISAGREE for f in pred.findings if f.positive}
        feedback.add_record(site.feedback_log(), feedback.record_from_prediction(pred, engine, f"{i:064x}",
                                                                                 verdicts, complete=True))
    dialog._refresh_site()
    assert dialog.fit_button.isEnabled() and "12 films" in dialog.site_text()
    try:
        with qtbot.waitSignal(dialog.operating_points_changed, timeout=2000):
            profile = dialog.fit_from_feedback("readers")
        assert profile is not None and profile.method == site.METHOD_FEEDBACK and profile.films == len(preds)
        assert site.applied(engine) == profile and site.active_name() == "readers"
        assert "the reader's feedback on 12 films" in dialog.site_text()
        # every flag was a false alarm, so all 12 films are negatives: each label's point moves so that the share of
        # them it flags comes closer to the card's false-positive rate
        fitted = [fit for fit in profile.labels.values() if fit.estimate is not None]
        assert fitted and all(fit.films == len(preds) for fit in fitted)
        assert any(fit.threshold != fit.card_threshold for fit in fitted)
        for fit in fitted:
            assert fit.target is not None and fit.rate_at_card is not None and fit.rate_at_site is not None
            assert abs(fit.rate_at_site - fit.target) <= abs(fit.rate_at_card - fit.target) + 1e-9
        assert dialog.fit_from_feedback("../bad") is None and "not usable" in dialog.site_text()
    finally:
        site.apply(engine, None)


def flip_profile(engine: Engine) -> site.SiteProfile:
    """For the viewer's tiny model (calls fixed at 0.001 / 0.999): every call reversed."""
    fits = {lab: site.LabelFit(0.999 if t < 0.5 else 0.001, t, 20) for lab, t in engine.card.thresholds.items()}
    return site.SiteProfile("flip", engine.name, engine.sha256, engine.card_sha256, site.METHOD_FEEDBACK, 20,
                            "test", fits)


def test_window_applies_the_active_profile_and_re_decides_films(qtbot, make_window, tiny_model: Path,  # noqa: ANN001
                                                                 shared_data: Path, tmp_path: Path) -> None:
    probe = Engine.from_card(tiny_model)
    site.save(flip_profile(probe))
    site.set_active("flip")
    window: MainWindow = make_window()
    film = tmp_path / "film.png"
    shutil.copy(shared_data / "nih" / "images" / "00000001_000.png", film)
    prediction = open_and_analyse(qtbot, window, film)
    assert site.applied(window.engine) is not None
    assert "site operating points 'flip'" in window.findings.model_label.text()
    flagged = {f.label for f in prediction.findings if f.positive}
    assert flagged and not flagged & POSITIVE  # decided at the site's points from the first film on
    written = window.export_current(tmp_path / "out", {"json"}, anonymise=True)
    (report,) = [p for p in written if p.suffix == ".json"]
    assert json.loads(report.read_text())["operating_points"]["name"] == "flip"  # exports say whose points
    dialog = window.show_model_card()
    assert dialog is not None and "flip" in dialog.site_text()
    dialog.revert_to_card()
    image = window.current_image()
    assert image is not None
    assert {f.label for f in image.prediction.findings if f.positive} == POSITIVE  # re-decided, no new analysis
    assert "site operating points" not in window.findings.model_label.text()
    assert "model card's operating points" in window.findings.model_label.toolTip()
    dialog.close()

    # the reader's verdicts on the displayed film
    fb = window.site.feedback_dialog()
    assert fb is not None
    fb.set_verdict("Cardiomegaly", feedback.DISAGREE)
    fb.complete.setChecked(True)
    fb.accept()
    (record,) = feedback.read_log(site.feedback_log())
    assert record.truth("Cardiomegaly") is False and record.truth("Edema") is False and record.complete
    assert record.film == feedback.film_id(film) and record.model_sha256 == window.engine.sha256
    text = site.feedback_log().read_text()
    assert "film.png" not in text and str(tmp_path) not in text
    assert window.table.actions["feedback"].isEnabled()


def test_profile_of_another_model_is_not_applied_at_start(qtbot, make_window, bundled) -> None:  # noqa: ANN001
    engine, probs, _ = bundled
    site.save(site.fit_unlabelled("elsewhere", engine, probs))  # fitted for the shipped model
    site.set_active("elsewhere")
    window: MainWindow = make_window()  # the tiny test model
    qtbot.waitUntil(lambda: window.engine is not None, timeout=20000)
    assert site.applied(window.engine) is None
    assert window.engine.thresholds == dict(window.engine.card.thresholds)
    assert "fitted for another model" in window.statusBar().currentMessage()
    assert "site operating points" not in window.findings.model_label.text()
    assert json.loads((site.sites_dir() / site.ACTIVE_FILE).read_text()) == {"name": "elsewhere"}  # not deleted


def test_dialog_says_how_inputs_are_harmonised(qtbot, bundled) -> None:  # noqa: ANN001
    engine, _, _ = bundled
    dialog = ModelCardDialog(engine)
    qtbot.addWidget(dialog)
    text = dialog.details.toPlainText()
    assert engine.harmoniser is not None and "Input harmonisation:" in text and "never changes" in text
    engine.harmoniser, kept = None, engine.harmoniser  # a card that does not harmonise says nothing of it
    try:
        plain = ModelCardDialog(engine)
        qtbot.addWidget(plain)
        assert "Input harmonisation" not in plain.details.toPlainText()
    finally:
        engine.harmoniser = kept
