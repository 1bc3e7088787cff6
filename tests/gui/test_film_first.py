"""The film first: decoding and display never wait for torch, the model or the gate (issue 20, items 1, 3, 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxrviewer.gui import backend, priorities
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State

from .conftest import wait_all_finished

PROBE = Path(__file__).with_name("start_probe.py")


@pytest.fixture
def model_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The model load waits until the test sets the returned event (set again at teardown)."""
    release = threading.Event()
    load = backend.load_engine

    def held(source: backend.ModelSource) -> object:
        release.wait(120)
        return load(source)

    monkeypatch.setattr(backend, "load_engine", held)
    yield release
    release.set()


def probe(file: Path, card: Path, *options: str) -> dict:
    proc = subprocess.run([sys.executable, str(PROBE), str(file), str(card), *options],
                          capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


def test_selected_film_is_shown_while_the_model_is_still_loading(qtbot, window: MainWindow,  # noqa: ANN001
                                                                  model_gate: threading.Event,
                                                                  dicom_dir: Path) -> None:
    files = [dicom_dir / f"udacity_nih_test{i}.dcm" for i in (2, 3)] + [dicom_dir / "pydicom-data_RG1_J2KI.dcm"]
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    studies = list(window.studies.values())
    assert len(studies) == 3
    for study in (studies[2], studies[1]):  # the last study, then another one: each film shows at once
        window.browser.set_current(study.key)
        qtbot.waitUntil(lambda study=study: window.canvas.has_image()
                        and window.canvas.image.path == study.images[0].path, timeout=20000)
        assert window.canvas.message() == ""  # no "Loading…" over the film
    assert not window.pipeline.model_loaded and window.engine is None
    assert "Loading the model" in window.findings.status_label.text()
    assert all(img.state == State.QUEUED for s in studies for img in s.images)
    model_gate.set()  # the findings follow when the model is ready
    wait_all_finished(qtbot, window, expected_images=3, timeout=120000)
    assert all(s.state == State.DONE for s in studies)
    assert window.current_image() is studies[1].images[0]
    qtbot.waitUntil(lambda: len(window.findings.ranked()) > 0, timeout=10000)


def test_showing_a_film_imports_neither_torch_nor_the_model(dicom_dir: Path, tiny_model: Path) -> None:
    result = probe(dicom_dir / "udacity_nih_test3.dcm", tiny_model, "--block-model")
    assert result["film"], result
    assert not result["model_loaded"]
    assert not result["torch"] and not result["torchvision"], result


def test_broken_torchvision_still_shows_the_film_and_says_what_failed(dicom_dir: Path, tiny_model: Path) -> None:
    result = probe(dicom_dir / "udacity_nih_test3.dcm", tiny_model, "--broken", "torchvision")
    assert result["film"], result  # viewing keeps working
    assert result["model_loaded"] and not result["engine"], result
    text = result["model_text"]
    assert "No model available" in text and "PyTorch could not be loaded" in text, text
    assert "torchvision::nms does not exist" in text and "matched pair" in text, text
    assert "--model" not in text  # another model card would not mend torch
    assert result["image_state"] == State.NOT_ANALYSED.value, result


def test_opened_studies_are_shown_and_rows_open_their_own_study(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                                 copy_file) -> None:  # noqa: ANN001
    window.open_paths([dicom_dir / "udacity_nih_test3.dcm"])
    qtbot.waitUntil(lambda: bool(window.displayed_study), timeout=20000)
    first = window.displayed_study
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths([dicom_dir])  # File ▸ Open with a study already on screen
    shown = window.current_study()
    assert shown is not None and shown.key != first  # what was just opened is displayed ...
    assert window.browser.current_key() == shown.key  # ... and its row is the selected one
    wait_all_finished(qtbot, window, expected_images=9, timeout=180000)
    [patient2] = [s for s in window.studies.values() if len(s.images) == 4]  # test1, test4, test5, test6
    titled = patient2.title(False)
    assert titled == patient2.images[0].path.name
    assert {img.state for img in patient2.images} >= {State.DONE, State.REJECTED}
    window.browser.set_current(first)
    window.browser.set_current(patient2.key)
    image = window.current_image()
    assert image is patient2.images[0] and image.path.name == titled  # the row opens the image it is named after
    combo = window.image_combo.currentText()
    assert combo.startswith("Image 1 of 4") and titled in combo, combo

    # a file that joins a listed study: that study is displayed, on the image the file added
    window.browser.set_current(first)
    extra = copy_file(dicom_dir / "udacity_nih_test1.dcm", "another_copy.dcm")
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths([extra])
    assert len(patient2.images) == 5
    assert window.current_study() is patient2 and window.browser.current_key() == patient2.key
    assert window.current_image() is patient2.images[4]
    assert window.image_combo.currentText().startswith("Image 5 of 5")
    wait_all_finished(qtbot, window, expected_images=10, timeout=60000)


def test_an_onnx_model_gives_findings_with_torch_broken(dicom_dir: Path) -> None:
    from cxrviewer.model.weights import bundled_card_path

    card = bundled_card_path()
    if json.loads(card.read_text(encoding="utf-8")).get("onnx") is None:
        pytest.skip("the bundled model has no ONNX export")
    result = probe(dicom_dir / "udacity_nih_test3.dcm", card, "--broken", "torch")
    assert result["film"] and result["engine"], result
    assert result["image_state"] == State.DONE.value, result
    assert not result["torch"], result


def test_lung_outline_is_found_for_films_on_screen_only(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    files = [dicom_dir / f"udacity_nih_test{i}.dcm" for i in (1, 2, 3)]
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    wait_all_finished(qtbot, window, expected_images=3, timeout=120000)
    shown = window.current_study()
    others = [s for s in window.studies.values() if s is not shown]
    assert shown is not None and shown.images[0].prediction.lung_outline  # found with the displayed film's analysis
    assert all(s.images[0].prediction.lung_outline == [] for s in others)  # nobody looked at these
    window.table["lungs"].setChecked(True)
    window.browser.set_current(others[0].key)
    prediction = others[0].images[0].prediction
    qtbot.waitUntil(lambda: len(prediction.lung_outline) == 2 and window.canvas.lung_outline_shown(), timeout=20000)


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="per-thread priority is a Linux feature")
def test_worker_threads_yield_to_the_event_loop() -> None:
    import os

    seen: list[int] = []

    def worker() -> None:
        priorities.background_priority()
        priorities.background_priority()  # once: a second call does not lower it further
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [os.getpriority(os.PRIO_PROCESS, 0) + priorities.BACKGROUND_NICE]  # this (GUI) thread's + 5


def test_only_a_model_that_needs_torch_waits_for_the_first_film(tiny_model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrviewer.model.weights import bundled_card_path

    assert backend.loads_torch(backend.ModelSource(tiny_model, "test"))  # no ONNX export
    assert backend.loads_torch(backend.ModelSource(tiny_model.parent / "missing.json", "test"))
    bundled = backend.ModelSource(None, "bundled")
    if json.loads(bundled_card_path().read_text(encoding="utf-8")).get("onnx"):
        assert not backend.loads_torch(bundled)
    # the card names an export that is not beside it: the engine falls back to torch, so it counts as torch
    card = bundled_card_path()
    copy = tmp_path / card.name
    shutil.copyfile(card, copy)
    assert backend.loads_torch(backend.ModelSource(copy, "test"))
    monkeypatch.setenv("CXRVIEWER_BACKEND", "torch")
    assert backend.loads_torch(bundled)


def test_films_decoded_ahead_are_prepared_beside_the_analysis(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                              copy_file, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Once the model is loaded, a film waiting for the analysis slot is prepared on the prepare lane (its own
    thread) and the analysis runs the network on that preparation; the opinions are the engine's own."""
    from cxrviewer.imaging import load_image
    from cxrviewer.model.inference import Engine

    threads: dict[str, set[int]] = {"prepare": set(), "analysis": set()}
    used: list[bool] = []
    real_prepare, real_predict = Engine.prepare, Engine.predict

    def prepare(self: Engine, image: object) -> object:
        threads["prepare"].add(threading.get_ident())
        return real_prepare(self, image)

    def predict(self: Engine, image: object, force: bool = False, prepared: object = None) -> object:
        threads["analysis"].add(threading.get_ident())
        used.append(prepared is not None)
        return real_predict(self, image, force, prepared)

    monkeypatch.setattr(Engine, "prepare", prepare)
    monkeypatch.setattr(Engine, "predict", predict)
    window.pipeline.load_model()
    qtbot.waitUntil(lambda: window.pipeline.model_loaded, timeout=60000)
    files = [copy_file(dicom_dir / f"udacity_nih_test{i % 3 + 1}.dcm", f"film{i}.dcm") for i in range(6)]
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    wait_all_finished(qtbot, window, expected_images=6, timeout=120000)
    assert len(used) == 6 and sum(used) >= 2  # the films behind the first ones came prepared
    assert threads["prepare"] and threads["prepare"].isdisjoint(threads["analysis"])
    engine = window.engine
    for study in window.studies.values():
        image = study.images[0]
        expected = real_predict(engine, load_image(image.path))
        assert [(f.label, f.probability) for f in image.prediction.findings] == \
            [(f.label, f.probability) for f in expected.findings]


def test_the_prepare_lane_leaves_the_cores_to_a_film_switch() -> None:
    """After the user moves to another film the lane starts nothing for a moment; an analysis that comes for the
    film meanwhile takes it over (prepares it itself) instead of waiting."""
    import time
    from types import SimpleNamespace

    from cxrviewer.gui.workers import Ahead

    calls: list[object] = []
    engine = SimpleNamespace(prepare=lambda image: calls.append(image) or ("prepared", image))
    image = SimpleNamespace(path=Path("film.dcm"))
    until = time.monotonic() + 0.4
    held = Ahead(engine, image, lambda: max(0.0, until - time.monotonic()))  # type: ignore[arg-type]
    lane = threading.Thread(target=held.run)
    lane.start()
    time.sleep(0.1)
    assert calls == []  # still held
    assert held.take() is None  # the analysis takes over at once, without waiting for the hold
    lane.join(2)
    assert calls == []  # and the lane never prepared it
    free = Ahead(engine, image, lambda: 0.0)  # type: ignore[arg-type]
    free.run()
    assert free.take() == ("prepared", image) and len(calls) == 1
