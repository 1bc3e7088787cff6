"""The decoding pool: a load that finds no idle helper takes whichever comes first, a helper given back or one
started beside its wait (issue 20: the second film's decode no longer waits for a helper's start-up).

The helpers here are stand-ins in this process (no helper processes), so each step is under the test's control.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cxrviewer.imaging import guarded
from cxrviewer.imaging.guarded import GuardedLoader

WAIT_S = 30  # a safety net only: every wait below ends as soon as its event happens


class FakeHelper:
    """A helper whose start waits for `may_start` and whose load of a file named "slow*" waits for `release`."""

    may_start = threading.Event()
    release = threading.Event()
    started: list[FakeHelper] = []

    def __init__(self, spec: str) -> None:
        assert FakeHelper.may_start.wait(WAIT_S)
        FakeHelper.started.append(self)
        self.alive = True
        self.busy = threading.Event()

    def load(self, path: Path, timeout: float) -> object:
        self.busy.set()
        if path.name.startswith("slow"):
            assert FakeHelper.release.wait(WAIT_S)
        self.busy.clear()
        return (self, path.name)

    def close(self) -> None:
        self.alive = False

    def kill(self) -> None:
        self.alive = False


@pytest.fixture
def fake_helpers(monkeypatch: pytest.MonkeyPatch) -> type[FakeHelper]:
    monkeypatch.setattr(guarded, "_Helper", FakeHelper)
    FakeHelper.may_start = threading.Event()
    FakeHelper.release = threading.Event()
    FakeHelper.started = []
    return FakeHelper


def test_a_load_takes_the_helper_given_back_while_another_starts(fake_helpers: type[FakeHelper]) -> None:
    fake_helpers.may_start.set()
    loader = GuardedLoader(timeout=30, size=2)
    loader.start()
    assert len(fake_helpers.started) == 1
    first = fake_helpers.started[0]
    fake_helpers.may_start.clear()  # from now on a helper's start does not finish until the test says so

    slow: list[object] = []
    busy = threading.Thread(target=lambda: slow.append(loader.load(Path("slow.png"))))
    busy.start()
    assert first.busy.wait(WAIT_S)  # the only helper decodes the slow file
    quick: list[object] = []
    waiting = threading.Thread(target=lambda: quick.append(loader.load(Path("quick.png"))))
    waiting.start()  # no idle helper: a second one starts beside this wait (and cannot finish yet)

    fake_helpers.release.set()  # the first helper is given back ...
    waiting.join(WAIT_S)
    busy.join(WAIT_S)
    assert quick == [(first, "quick.png")]  # ... and serves the waiting load while the second is still starting
    assert slow == [(first, "slow.png")]
    assert len(fake_helpers.started) == 1

    fake_helpers.may_start.set()  # the second start finishes: it joins the pool for the next files
    loader.start(count=2)
    assert len(fake_helpers.started) == 2
    assert {id(h) for h in loader._idle} == {id(h) for h in fake_helpers.started}


def test_start_brings_up_helpers_one_after_the_other_up_to_the_pool_size(fake_helpers: type[FakeHelper]) -> None:
    fake_helpers.may_start.set()
    loader = GuardedLoader(timeout=30, size=2)
    loader.start(count=5)
    assert len(fake_helpers.started) == 2  # never more than the pool's size
    loader.start(count=2)
    assert len(fake_helpers.started) == 2  # both running: nothing more starts
    loader.close()
    assert not any(h.alive for h in fake_helpers.started)


def test_a_helper_that_cannot_start_means_decoding_in_this_process(fake_helpers: type[FakeHelper],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_start(spec: str) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(guarded, "_Helper", cannot_start)
    monkeypatch.setattr(guarded, "_resolve", lambda spec: lambda path: ("in process", Path(path).name))
    loader = GuardedLoader(timeout=30, size=2)
    assert loader.load(Path("a.png")) == ("in process", "a.png")  # the waiting load is told, not left waiting
