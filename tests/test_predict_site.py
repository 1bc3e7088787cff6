"""`cxrviewer-predict` with site operating points: fitting a profile from real films and from a feedback log,
using it (the JSON says whose operating points decided "positive"), refusing one made for another model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrviewer.model import feedback, site
from cxrviewer.model.card import ModelCard
from cxrviewer.model.weights import bundled_card_path
from cxrviewer.predict import main

FILMS = 12


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(autouse=True)
def _xdg(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("site_films")
    for path in sorted((shared_data / "nih" / "images").glob("*.png"))[40: 40 + FILMS]:
        shutil.copy(path, root / path.name)
    return root


@pytest.fixture(scope="module")
def fitted(films: Path, data_home: Path) -> site.SiteProfile:
    """`--fit-site ward --site-films DIR` once for the module (the profile lands in the user's data folder)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_DATA_HOME", str(data_home))
    try:
        assert main(["--fit-site", "ward", "--site-films", str(films), "--quiet", "--threads", "1"]) == 0
        return site.load("ward")
    finally:
        mp.undo()


def run_json(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "out.json"
    assert main([*args, "--output", str(out), "--quiet", "--threads", "1"]) == 0
    return json.loads(out.read_text())


def test_fit_from_films_stores_a_profile_for_this_model(fitted: site.SiteProfile, data_home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    card = ModelCard.read(bundled_card_path())
    assert (data_home / "cxrviewer" / "sites" / "ward.json").is_file()
    assert fitted.method == site.METHOD_UNLABELLED and fitted.films == FILMS
    assert fitted.model_sha256 == card.weights.sha256 and fitted.card_sha256 == card.card_sha256
    assert set(fitted.thresholds) == set(card.labels)
    assert any(abs(fitted.thresholds[lab] - card.thresholds[lab]) > 1e-3 for lab in card.labels)
    assert main(["--list-sites"]) == 0
    assert "ward: for " + card.name in capsys.readouterr().out


def test_json_says_which_operating_points_decided(fitted: site.SiteProfile, films: Path, tmp_path: Path) -> None:
    film = str(sorted(films.glob("*.png"))[0])
    card = ModelCard.read(bundled_card_path())
    plain = run_json([film], tmp_path)
    assert plain["operating_points"]["source"] == "model card"
    assert plain["operating_points"]["thresholds"] == pytest.approx(dict(card.thresholds), abs=1e-6)
    assert set(plain) == {"model", "operating_points", "results"} and plain["model"]["card"] == "sealed"
    doc = run_json([film, "--site", "ward"], tmp_path)
    points = doc["operating_points"]
    assert points["source"] == "site profile" and points["name"] == "ward" and points["method"] == "unlabelled"
    assert points["films"] == FILMS and points["fitted"] == fitted.created
    for f in doc["results"][0]["findings"]:
        assert f["threshold"] == pytest.approx(fitted.thresholds[f["label"]], abs=1e-6)
        assert f["positive"] == (f["probability"] >= f["threshold"]) or f["label"] == "No Finding"
    # the same profile named by file
    by_file = run_json([film, "--site-profile", str(site.profile_path("ward"))], tmp_path)
    assert by_file["operating_points"]["name"] == "ward" and by_file["results"] == doc["results"]


def test_exported_reports_name_the_site_profile(fitted: site.SiteProfile, films: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    film = str(sorted(films.glob("*.png"))[1])
    out = tmp_path / "reports"
    run_json([film, "--site", "ward", "--export", str(out), "--formats", "json,pdf"], tmp_path)
    (report,) = out.glob("*.json")
    points = json.loads(report.read_text())["operating_points"]
    assert points["source"] == "site profile" and points["name"] == "ward"
    (pdf,) = out.glob("*.pdf")
    text = " ".join((page.extract_text() or "") for page in PdfReader(str(pdf)).pages)
    assert "Operating points: site operating points 'ward'" in " ".join(text.split())


def test_csv_run_with_a_profile_says_so_on_stderr(fitted: site.SiteProfile, films: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    assert main([str(films), "--site", "ward", "--format", "csv", "--threads", "1"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("operating points: site operating points 'ward' (fitted" in m for m in warned)
    assert capsys.readouterr().out.startswith("path,status")


def test_profile_of_another_model_or_unknown_name_is_refused(fitted: site.SiteProfile, films: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    doc = fitted.to_json()
    doc["model"]["sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    film = str(sorted(films.glob("*.png"))[0])
    assert main([film, "--site-profile", str(other), "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "was fitted for another model" in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
    assert main([film, "--site", "nowhere"]) == 2
    assert "no site profile named 'nowhere'" in capsys.readouterr().err
    assert main([film, "--site", "ward", "--operating-point", "high_sensitivity"]) == 2
    assert "cannot be combined with the high_sensitivity operating point" in capsys.readouterr().err
    assert main([film, "--site-films", film]) == 2
    assert "go with --fit-site" in capsys.readouterr().err
    assert main(["--fit-site", "x"]) == 2
    assert "either --site-films" in capsys.readouterr().err


def test_fit_from_a_feedback_log_and_delete(films: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log of the reader's verdicts (made from this model's real output) fits a feedback profile."""
    doc = run_json([str(films)], tmp_path)
    card = ModelCard.read(bundled_card_path())
    log = tmp_path / "feedback.jsonl"
    for i, result in enumerate(doc["results"]):
        labels = {f["label"]: feedback.LabelVerdict(f["probability"], f["threshold"], f["positive"],
                                                    feedback.DISAGREE if f["positive"] else None)
                  for f in result["findings"]}
        feedback.add_record(log, feedback.FeedbackRecord(f"{i:064x}", card.name, card.weights.sha256,
                                                         card.card_sha256, labels, complete=True))
    assert main(["--fit-site", "from readers", "--site-feedback", str(log), "--quiet", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "fitted" in out and "the reader's feedback on 12 films" in out
    profile = site.load("from readers")
    assert profile.method == site.METHOD_FEEDBACK and profile.films == FILMS
    assert main(["--delete-site", "from readers"]) == 0
    assert not site.profile_path("from readers").exists()
    assert main(["--delete-site", "from readers"]) == 2
    log.write_text("garbage\n")
    assert main(["--fit-site", "bad", "--site-feedback", str(log)]) == 2
    assert "feedback.jsonl line 1: not JSON" in capsys.readouterr().err
