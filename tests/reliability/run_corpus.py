"""Run the malformed-DICOM corpus through `load_image` and `scan_paths` and judge each outcome.

Used by tests/reliability/test_malformed_corpus.py (CI size) and run by hand for the full corpus::

    python tests/reliability/run_corpus.py            # full corpus (about 6500 cases, ~15 min on 2 cores)
    python tests/reliability/run_corpus.py --ci       # the CI-sized corpus
    python tests/reliability/run_corpus.py --keep DIR # keep the generated files in DIR

It prints one line per category (cases, handled, errors, images, slowest, peak memory) and every case
that was not handled as required.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from case_worker import Outcome, Worker  # noqa: E402
from malformed_dicom import Case, Source, build, default_sources  # noqa: E402

REPO = HERE.parents[1]
MEMORY_LIMIT_MB = 200.0  # no single case may raise the loader's peak memory by more than this
# A plain message names no Python exception and no internal detail.
_TECHNICAL = re.compile(r"Error\b|Exception\b|Traceback|\bNone\b|0x[0-9a-f]{4,}|\(\d+, \d+\)|\bb'|\\x", re.I)


@dataclass
class Result:
    case: Case
    outcome: Outcome
    problem: str  # "" when the case was handled as required


def plain_message_problem(case: Case, message: str) -> str:
    """'' if an ImageLoadError message is specific and plain, else what is wrong with it."""
    name = case.path.name if case.path else ""
    if not message.startswith(f"{name}: "):
        return f"message does not start with the file name: {message!r}"
    reason = message[len(name) + 2 :]
    if not reason.strip():
        return "empty reason"
    if _TECHNICAL.search(reason):
        return f"technical message: {reason!r}"
    if "damaged file or unsupported encoding" in reason:
        return f"unspecific (catch-all) message: {reason!r}"
    if "not enough memory" in reason:
        return f"ran out of memory: {reason!r}"
    if len(reason) > 160:
        return f"message too long ({len(reason)} chars)"
    if case.must and not any(word.lower() in reason.lower() for word in case.must):
        return f"message {reason!r} should mention one of {case.must}"
    return ""


def judge(case: Case, out: Outcome, refs: dict[str, str]) -> str:
    """'' if `out` is an acceptable outcome for `case`, else a description of the failure."""
    if out.outcome in ("hang", "crash"):
        return f"{out.outcome}: {out.detail}"
    if out.outcome == "exception":
        return f"raised {out.exc_type}: {out.message} | {out.detail[-600:]}"
    if out.peak_mb > MEMORY_LIMIT_MB:
        return f"peak memory {out.peak_mb:.0f} MB > {MEMORY_LIMIT_MB:.0f} MB"
    if out.outcome == "error":
        if case.expect == "same":
            return f"should load, got error: {out.message}"
        return plain_message_problem(case, out.message)
    # an image
    if out.detail:
        return f"loaded an unusable image: {out.detail}"
    if case.expect == "error":
        same = " (pixels identical to the source)" if out.digest == refs.get(case.reference or "") else ""
        return f"should be refused, loaded an image of shape {out.shape}{same}"
    if case.expect in ("same", "error_or_same"):
        ref = refs.get(case.reference or "")
        if ref is None:
            return f"no reference pixels for {case.reference}"
        if out.digest != ref:
            return f"loaded an image whose pixels differ from the source (shape {out.shape})"
    return ""


def references(worker: Worker, sources: list[Source], extra: dict[str, Path]) -> dict[str, str]:
    refs: dict[str, str] = {}
    for key, path in [(s.key, s.path) for s in sources] + list(extra.items()):
        out = worker.load(path, timeout=120)
        if out.outcome != "image":
            raise RuntimeError(f"source {path.name} does not load: {out.outcome} {out.message}")
        refs[key] = out.digest
    return refs


def run_cases(cases: list[Case], worker: Worker, refs: dict[str, str]) -> list[Result]:
    results = []
    for case in cases:
        assert case.path is not None
        out = worker.load(case.path)
        results.append(Result(case, out, judge(case, out, refs)))
    return results


def scan_problems(cases: list[Case], out: Outcome) -> list[str]:
    """What is wrong with a scan of the whole corpus folder (no crash; every broken image reported)."""
    if out.outcome != "image" or out.extra is None:
        return [f"scan {out.outcome}: {out.exc_type} {out.message} {out.detail[-600:]}"]
    problems = []
    errors = {Path(p).resolve() if Path(p).exists() else Path(p) for p, _, _ in out.extra["errors"]}
    error_names = {Path(p).name for p, _, _ in out.extra["errors"]}
    found = {Path(p).resolve() for p in out.extra["images"]}
    for path, reason, message in out.extra["errors"]:
        if _TECHNICAL.search(reason) or not message.startswith(Path(path).name + ": "):
            problems.append(f"scan message not plain: {message!r}")
    for case in cases:
        assert case.path is not None
        p = case.path
        if case.expect == "same" and p.resolve() not in found:
            problems.append(f"{p.name}: a good image was not found by the scan")
        # Every file that claims to be an image but is not readable must be reported, not dropped.
        special = case.category == "special"
        if case.expect == "error" and not special:
            resolved = p.resolve()
            if resolved not in errors and resolved not in found:
                problems.append(f"{p.name}: broken file neither reported nor listed by the scan")
    for name in ("pipe.dcm", "socket.dcm", "dangling_link.dcm", "self_link.dcm"):
        if any(c.name == name for c in cases) and name not in error_names:
            problems.append(f"{name}: special entry not reported by the scan")
    return problems


def summary(results: list[Result]) -> list[str]:
    by_cat: dict[str, list[Result]] = {}
    for r in results:
        by_cat.setdefault(r.case.category, []).append(r)
    lines = [f"{'category':16} {'cases':>5} {'handled':>7} {'errors':>6} {'images':>6} {'slowest s':>9} "
             f"{'peak MB':>7}"]
    for cat, rs in list(by_cat.items()) + [("TOTAL", results)]:
        ok = sum(not r.problem for r in rs)
        errs = sum(r.outcome.outcome == "error" for r in rs)
        imgs = sum(r.outcome.outcome == "image" for r in rs)
        slow = max((r.outcome.seconds for r in rs), default=0.0)
        peak = max((r.outcome.peak_mb for r in rs), default=0.0)
        lines.append(f"{cat:16} {len(rs):5d} {ok:7d} {errs:6d} {imgs:6d} {slow:9.2f} {peak:7.1f}")
    return lines


def raster_samples(shared_data: Path) -> dict[str, Path]:
    out = {}
    png = next(iter(sorted((shared_data / "nih" / "images").glob("*.png"))), None)
    jpeg = next(iter(sorted((shared_data / "kermany" / "images").glob("*.jp*g"))), None)
    if png:
        out["png"] = png
    if jpeg:
        out["jpeg"] = jpeg
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="the smaller corpus the tests use")
    parser.add_argument("--keep", metavar="DIR", help="write the corpus here and keep it")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import PYDICOM_DATA, SHARED_DATA

    if PYDICOM_DATA is None:
        print("pydicom-data is not installed", file=sys.stderr)
        return 2
    sources = default_sources(SHARED_DATA / "dicom", PYDICOM_DATA, full=not args.ci)
    rasters = raster_samples(SHARED_DATA)
    tmp = None
    if args.keep:
        folder = Path(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="cxr-corpus-")
        folder = Path(tmp)
    try:
        cases = build(folder / "corpus", sources, png=rasters.get("png"), jpeg=rasters.get("jpeg"),
                      full=not args.ci, seed=args.seed)
        with Worker(timeout=args.timeout) as worker:
            refs = references(worker, sources, rasters)
            results = run_cases(cases, worker, refs)
            scan = worker.scan([folder / "corpus"], timeout=600)
            restarts = worker.restarts
        print("\n".join(summary(results)))
        print(f"worker restarts (hangs/crashes): {restarts}")
        top = sorted(results, key=lambda r: -r.outcome.peak_mb)[:5]
        print("largest peaks: " + ", ".join(f"{r.case.name} {r.outcome.peak_mb:.0f} MB ({r.outcome.outcome})"
                                            for r in top))
        slow = sorted(results, key=lambda r: -r.outcome.seconds)[:3]
        print("slowest: " + ", ".join(f"{r.case.name} {r.outcome.seconds:.2f} s" for r in slow))
        probs = scan_problems(cases, scan)
        errors = len(scan.extra["errors"]) if scan.extra else "-"
        images = len(scan.extra["images"]) if scan.extra else "-"
        print(f"scan of the corpus folder: {scan.outcome}, {images} images, {errors} errors, "
              f"{scan.seconds:.1f} s, peak {scan.peak_mb:.0f} MB, problems {len(probs)}")
        bad = [r for r in results if r.problem]
        for r in bad:
            print(f"FAIL {r.case.category}/{r.case.name} ({r.case.note}): {r.problem}")
        for p in probs:
            print(f"SCAN {p}")
        return 1 if bad or probs else 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
