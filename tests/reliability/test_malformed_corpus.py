"""The malformed-DICOM corpus (generated from real files) through `load_image` and `scan_paths`.

Every case runs in a child process with a time limit and a measured memory peak (see `case_worker`):
an ImageLoadError with a specific plain message, or a correct image; never another exception, a hang,
a crash or a large allocation. The hand-run `run_corpus.py` runs the bigger corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from case_worker import Outcome, Worker
from malformed_dicom import Case, build, default_sources
from run_corpus import MEMORY_LIMIT_MB, Result, raster_samples, references, run_cases, scan_problems, summary

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CATEGORIES = ("truncated", "header_flips", "tiny_foreign", "transfer_syntax", "size_claims", "bits", "fragments",
              "special")


@dataclass
class CorpusRun:
    folder: Path
    cases: list[Case]
    results: list[Result]
    scan: Outcome
    restarts: int


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, pydicom_data: Path) -> CorpusRun:
    folder = tmp_path_factory.mktemp("corpus")
    sources = default_sources(shared_data / "dicom", pydicom_data)
    rasters = raster_samples(shared_data)
    cases = build(folder, sources, png=rasters.get("png"), jpeg=rasters.get("jpeg"))
    with Worker(timeout=20) as worker:
        refs = references(worker, sources, rasters)
        results = run_cases(cases, worker, refs)
        scan = worker.scan([folder], timeout=300)
        restarts = worker.restarts
    print("\n" + "\n".join(summary(results)))
    return CorpusRun(folder, cases, results, scan, restarts)


def test_corpus_covers_every_family(corpus_run: CorpusRun) -> None:
    counts = {c: sum(r.case.category == c for r in corpus_run.results) for c in CATEGORIES}
    assert all(n >= 8 for n in counts.values()), counts
    assert len(corpus_run.results) >= 400
    # Both outcomes occur: damage that is refused, and damage that leaves a usable image.
    outcomes = {r.outcome.outcome for r in corpus_run.results}
    assert {"error", "image"} <= outcomes


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_case_is_handled(corpus_run: CorpusRun, category: str) -> None:
    bad = [f"{r.case.name} [{r.case.note}]: {r.problem}" for r in corpus_run.results
           if r.case.category == category and r.problem]
    assert not bad, f"{len(bad)} case(s) mishandled:\n" + "\n".join(bad)


def test_no_hang_and_no_crash(corpus_run: CorpusRun) -> None:
    assert corpus_run.restarts == 0
    assert max(r.outcome.seconds for r in corpus_run.results) < 20


def test_size_claims_allocate_little(corpus_run: CorpusRun) -> None:
    """Headers claiming up to 8192 x 8192 x 3 x 16 bit (or 2^31 frames) over 1 MB of data: no big buffers."""
    claims = [r for r in corpus_run.results if r.case.big_claim]
    assert len(claims) >= 10
    worst = max(claims, key=lambda r: r.outcome.peak_mb)
    assert worst.outcome.peak_mb < MEMORY_LIMIT_MB, f"{worst.case.name}: {worst.outcome.peak_mb:.0f} MB"
    for r in claims:
        assert r.outcome.outcome == "error" or r.case.expect != "error", r.case.name


def test_memory_measurement_is_live(pydicom_data: Path, shared_data: Path) -> None:
    """The harness sees a real allocation: a 1955 x 1841 16-bit J2K image needs more than 5 MB."""
    with Worker(timeout=60) as worker:
        out = worker.load(shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm")
    assert out.outcome == "image"
    assert out.peak_mb > 5


def test_worker_reports_a_hang() -> None:
    """The time limit bites: a call that does not answer in time is reported as a hang, not waited for."""
    with Worker(timeout=1) as worker:
        out = worker.call({"op": "sleep", "seconds": 30})
        assert out.outcome == "hang" and out.seconds < 10
        assert worker.restarts == 1


def test_scan_of_the_corpus_reports_every_broken_file(corpus_run: CorpusRun) -> None:
    problems = scan_problems(corpus_run.cases, corpus_run.scan)
    assert not problems, "\n".join(problems)
    assert corpus_run.scan.peak_mb < MEMORY_LIMIT_MB
    extra = corpus_run.scan.extra or {}
    # The special folder: its good file is found once, through its real path, despite the loop and the
    # second link into the same folder.
    good = [p for p in extra["images"] if Path(p).name == "good.dcm"]
    assert len(good) == 1
    reported = {Path(p).name for p, _, _ in extra["errors"]}
    assert {"pipe.dcm", "socket.dcm", "dangling_link.dcm", "self_link.dcm", "empty.dcm"} <= reported


def test_kept_errors_do_not_hold_the_decoder_frames(corpus_run: CorpusRun) -> None:
    """A scan's error list (and a caught load error) must not keep data sets alive through tracebacks."""
    import traceback

    from cxrviewer.imaging import ImageLoadError, load_image, scan_paths

    scan = scan_paths([corpus_run.folder / "size_claims", corpus_run.folder / "tiny_foreign"])
    assert len(scan.errors) >= 20
    assert all(e.__traceback__ is None and e.__context__ is None for e in scan.errors)
    truncated = next(c.path for c in corpus_run.cases if c.category == "truncated" and c.must)
    with pytest.raises(ImageLoadError) as info:
        load_image(truncated)
    assert info.value.__context__ is None and info.value.__cause__ is None
    frames = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert not any("pydicom" in f or f.endswith("dicom.py") for f in frames), frames


def test_a_length_swallowing_the_pixels_is_not_converted(corpus_run: CorpusRun) -> None:
    """A 1 MB file whose Rows (or a text element) length covers the pixel data: a few MB at most.

    Converting that megabyte to Python numbers would cost ~25 MB here, and ~25x the file size in general.
    """
    cases = [r for r in corpus_run.results if "swallows" in r.case.name]
    assert len(cases) >= 2
    for r in cases:
        assert r.outcome.outcome == "error" and r.outcome.traced_peak_mb < 8, (r.case.name, r.outcome)
