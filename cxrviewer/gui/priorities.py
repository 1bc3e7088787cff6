"""Thread priorities and inference thread counts of the viewer (Linux per-thread nice; elsewhere nothing changes).

The GUI thread and the decoding run at the process's priority. The analysis thread runs `BACKGROUND_NICE` nicer
(`background_priority`). With ONNX Runtime the engine gets every core, and the intra-op helper threads ONNX
Runtime starts while its session is made run `HELPER_NICE` nicer still (`build_with_niced_helpers`): on an idle
machine an analysis uses every core, and the helpers give a core back at once to anything else. Qt-free.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The analysis thread runs this much nicer than the GUI thread and the decoding (Linux), so that on 2 busy cores
#: the event loop and the film the user asks for get a core at once.
BACKGROUND_NICE = 5
_BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0


def background_priority() -> None:
    """Lower the calling thread's priority for good (once; Linux per-thread nice, elsewhere nothing): for a thread
    that only ever analyses."""
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < _BASE_NICE + BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, _BASE_NICE + BACKGROUND_NICE)
    except OSError:  # not allowed here: run at the normal priority
        pass


#: Environment variable overriding the number of inference threads.
THREADS_ENV = "CXRVIEWER_THREADS"
#: ONNX Runtime's helper threads (every inference thread but the analysis thread itself) run this much nicer than
#: the rest of the viewer: on an otherwise idle machine they give an analysis every core, and they yield a core at
#: once to the event loop, the decoding and any other program that wants it.
HELPER_NICE = 15
#: The name (Linux thread name, inherited by the threads it starts) of the thread that builds the engine.
HELPER_NAME = "cxr-inference"


def inference_threads(niced_helpers: bool = False) -> int:
    """Intra-op threads for inference: `THREADS_ENV` when set; else every core when the helper threads run at a
    low priority (`niced_helpers`), else all cores but one, which stays free for the event loop."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    from cxrviewer.model.runners import available_cores  # loaded with the model anyway

    cores = available_cores()
    return cores if niced_helpers else max(1, cores - 1)


def _name_this_thread(name: str) -> bool:
    """Give the calling thread a Linux thread name (threads it starts inherit it) and check that its priority can
    be set; False where either fails (not Linux, a sandbox that forbids it)."""
    tid = threading.get_native_id()
    try:
        Path(f"/proc/self/task/{tid}/comm").write_text(name[:15])
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid))
    except (OSError, AttributeError):
        return False
    return True


def _threads() -> set[int]:
    """Ids of this process's threads (Linux; empty elsewhere)."""
    try:
        return {int(task.name) for task in Path("/proc/self/task").iterdir()}
    except OSError:
        return set()


def _nice_threads_named(name: str, nice: int, among: set[int]) -> int:
    """Lower the priority of the threads in `among` named `name` to `nice` above the process's; how many."""
    done = 0
    for tid in among:
        try:
            if Path(f"/proc/self/task/{tid}/comm").read_text().strip() == name[:15]:
                os.setpriority(os.PRIO_PROCESS, tid, _BASE_NICE + nice)
                done += 1
        except OSError:  # the thread ended meanwhile, or renicing is not allowed
            continue
    return done


def build_with_niced_helpers(build: Callable[[int], T]) -> T:
    """`build(threads)` on a short-lived thread named `HELPER_NAME` with every core, then `HELPER_NICE` for the
    threads it left behind: ONNX Runtime's intra-op pool, started while its session is made, which inherits the
    name (the caller imports what `build` needs first, so no library's own pool is born there). The session itself
    is built at the normal priority (its graph optimisation is most of a model load). Where threads cannot be named
    and reniced (not Linux, a sandbox), `build` gets all cores but one and nothing is reniced."""
    outcome: list[tuple[bool, T | BaseException]] = []
    before = _threads()

    def run() -> None:
        named = _name_this_thread(HELPER_NAME)
        try:
            outcome.append((named, build(inference_threads(niced_helpers=named))))
        except BaseException as exc:  # handed to the caller below, traceback and all
            outcome.append((named, exc))

    thread = threading.Thread(target=run, name=HELPER_NAME)
    thread.start()
    thread.join()
    named, result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    if named:
        niced = _nice_threads_named(HELPER_NAME, HELPER_NICE, _threads() - before)
        log.debug("%d inference helper thread(s) at nice +%d", niced, HELPER_NICE)
    return result
