"""The viewer's inference threads: with ONNX Runtime on Linux the analyses get every core, and every helper thread
ONNX Runtime starts runs niced, so the event loop, the decoding and other programs get a core back at once."""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.gui import backend, priorities
from cxrviewer.model.card import ModelError

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread names and nice are Linux's")


def threads_named(name: str) -> dict[int, int]:
    """{thread id: nice} of this process's threads called `name`."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                out[int(task.name)] = os.getpriority(os.PRIO_PROCESS, int(task.name))
        except OSError:
            continue
    return out


@linux
def test_onnx_engine_gets_every_core_and_its_helpers_are_niced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(priorities.THREADS_ENV, raising=False)
    monkeypatch.delenv("CXRVIEWER_BACKEND", raising=False)
    source = backend.model_source(None)
    assert not backend.loads_torch(source)  # the bundled card runs on its ONNX export
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    engine = backend.load_engine(source)
    assert engine.runner.name == "onnxruntime"
    cores = len(os.sched_getaffinity(0))
    assert engine.runner.session.get_session_options().intra_op_num_threads == cores
    helpers = threads_named(priorities.HELPER_NAME)
    if cores > 1:  # ONNX Runtime starts its pool while the session is made: each inherited the name
        assert helpers and set(helpers.values()) == {before + priorities.HELPER_NICE}
    # the caller keeps its priority, and the engine works
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert threading.current_thread().name != priorities.HELPER_NAME
    assert len(engine.predict_array(np.full((300, 280), 0.4, np.float32), force=True).findings) > 0


@linux
def test_a_failing_build_is_reported_as_it_was_raised() -> None:
    def build(threads: int) -> object:
        raise ModelError(f"bad card (asked for {threads} threads)")

    with pytest.raises(ModelError, match=r"bad card \(asked for \d+ threads\)") as info:
        priorities.build_with_niced_helpers(build)
    assert any(frame.name == "build" for frame in traceback.extract_tb(info.tb))


def test_threads_setting_and_the_torch_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(priorities.THREADS_ENV, "3")
    assert priorities.inference_threads() == 3 and priorities.inference_threads(niced_helpers=True) == 3
    monkeypatch.delenv(priorities.THREADS_ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert priorities.inference_threads() == max(1, cores - 1)  # torch, or no niced helpers: a core for the GUI
    assert priorities.inference_threads(niced_helpers=True) == cores


@linux
def test_only_threads_born_in_the_build_are_niced() -> None:
    """A thread of the same name that existed before (another engine's, or anything else) is left as it was."""
    ready, stop = threading.Event(), threading.Event()

    def older() -> None:
        priorities._name_this_thread(priorities.HELPER_NAME)
        ready.set()
        stop.wait(30)

    old = threading.Thread(target=older)
    old.start()
    ready.wait(10)
    try:
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        born: list[int] = []

        def build(threads: int) -> int:
            child = threading.Thread(target=lambda: (born.append(threading.get_native_id()), stop.wait(30)))
            child.start()
            while not born:
                pass
            return threads

        priorities.build_with_niced_helpers(build)
        assert os.getpriority(os.PRIO_PROCESS, born[0]) == base + priorities.HELPER_NICE  # inherited the name
        assert os.getpriority(os.PRIO_PROCESS, old.native_id) == base  # older: untouched
    finally:
        stop.set()
        old.join(10)


@linux
def test_a_card_that_falls_back_to_torch_leaves_a_core_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime present but failing for this card (the runner falls back to torch): torch's threads are not
    niced, so it gets all cores but one as before."""
    import torch

    from cxrviewer.model import runners

    monkeypatch.delenv(priorities.THREADS_ENV, raising=False)
    monkeypatch.setattr(runners, "_onnx_runner", lambda bundle, threads, required: None)
    previous = torch.get_num_threads()
    try:
        engine = backend.load_engine(backend.model_source(None))
        assert engine.runner.name == "torch"
        seen: list[int] = []  # torch's setting reaches threads on their first use (the analysis thread is new)
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert seen == [max(1, len(os.sched_getaffinity(0)) - 1)]
    finally:
        torch.set_num_threads(previous)
