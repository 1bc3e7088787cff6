"""How many threads the viewer's inference uses (issue 20): both of two cores, all but one of more."""

from __future__ import annotations

import os

import pytest

from cxrviewer.gui import backend


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (3, 2), (8, 7)])
def test_inference_threads_by_cores(monkeypatch: pytest.MonkeyPatch, cores: int, threads: int) -> None:
    monkeypatch.delenv(backend.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert backend.inference_threads() == threads


def test_the_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.THREADS_ENV, "1")
    assert backend.inference_threads() == 1
