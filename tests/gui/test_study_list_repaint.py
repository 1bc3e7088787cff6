"""The worklist repaints only the card that changed, and sorting still follows the change (issue 20: in the running
viewer Qt's list view repainted all ten visible cards on each change of one, about 5 ms of Python on the GUI thread
each time, four times per analysed film; this test window does not show that repaint, so the test guards the
behaviour rather than reproducing the cost)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cxrviewer.gui import study_browser
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.gui.study_browser import MOST_ABNORMAL

from .conftest import wait_all_finished


@pytest.fixture
def painted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The study keys of the cards painted (patched before the window exists: Qt binds the delegate's paint then)."""
    keys: list[str] = []
    paint = study_browser.StudyDelegate.paint

    def counting(self, p, option, index) -> None:  # noqa: ANN001
        keys.append(index.data(study_browser.KEY_ROLE))
        paint(self, p, option, index)

    monkeypatch.setattr(study_browser.StudyDelegate, "paint", counting)
    return keys


def test_a_changed_card_repaints_alone_and_sorting_follows(qtbot, painted: list[str],  # noqa: ANN001
                                                           make_window: Callable[..., MainWindow],
                                                           shared_data: Path) -> None:
    window = make_window()
    films = sorted((shared_data / "nih" / "demo").iterdir())[:12]  # more cards than the list shows
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(films)
    wait_all_finished(qtbot, window, expected_images=len(films), timeout=60000)
    model = window.browser.model
    shown = window.browser.keys_in_order()[1]
    qtbot.wait(100)
    painted.clear()
    model.changed(shown)
    qtbot.waitUntil(lambda: shown in painted)
    qtbot.wait(100)
    assert set(painted) == {shown}

    window.browser.set_sort_mode(MOST_ABNORMAL)
    last = window.browser.keys_in_order()[-1]
    record = model.record(last)
    top = max(model.records, key=lambda r: r.abnormality())
    record.images[0].prediction, record.images[0].state = top.images[0].prediction, State.DONE  # as abnormal as the top
    model.changed(last)
    assert window.browser.keys_in_order().index(last) < len(model.records) - 1
