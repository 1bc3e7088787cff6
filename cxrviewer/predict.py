"""`cxrviewer-predict`: second opinions for files and folders, headless, as JSON (or CSV).

Output (JSON, the contract in DESIGN.md)::

    {"model": {"name", "sha256", "labels", "card_sha256", "card": "sealed" | "modified"},
     "results": [{"path", "status": "ok" | "rejected" | "error", "message",
                  "image_size": [width, height], "view": "frontal" | "lateral" | "unknown",
                  "findings": [{"label", "probability", "threshold", "positive", "cam_peak": [x, y] | null}]}]}

``sha256`` identifies the weights, ``card_sha256`` the model card's canonical content. A card edited after the
trainer sealed it is refused (exit status 2) unless ``--allow-modified-card`` is given; ``card`` is then
"modified" and ``card_note`` carries the "modified model card" warning.

Probabilities and thresholds are calibrated when the model card carries a calibration. A finding may also carry
``"triage": true`` (above the label's high-sensitivity triage point but below its finding point: "check for",
not a finding) and ``"note"`` (why a label above its cutoff is not asserted: "No Finding" is never positive beside
a flagged finding). ``findings`` lists every label of the model, highest probability first, for "ok" results;
it is empty for "rejected" (the gate's reasons are in ``message``; ``--force`` runs the model anyway) and
"error" results (``image_size`` null, ``view`` "unknown"). ``cam_peak`` is in original image pixels. An "ok" result
also carries ``"abroad"`` where the model card has the abroad check's statistics: whether the film is unlike the
training films (``"warn"``), its scores, reasons and the findings that makes less reliable (``"less_reliable"``);
its sentence is then in ``message``. The entries are built by `cxrviewer.report.json_report`, shared with the
viewer's JSON export.

CSV (``--format csv``): one row per finding (path, status, message, width, height, view, label, probability,
threshold, positive, cam_x, cam_y); a result without findings gives one row with those fields empty.

Without ``--export`` only the model sees the pixels, so a large JPEG 2000 film is decoded at a lower resolution
level (long side >= 768 px, resampled to its stored size: `cxrviewer.imaging.j2k_reduced`, about 3x faster to
decode a 2k CR); its probabilities may then differ from the viewer's, which decodes the whole film, by about 0.01.
Fitting site operating points reads whole films, as the viewer that applies them does.

``--cams DIR`` writes one 8-bit PNG per label per "ok" image, ``DIR/<image>/<Label_Name>.png``, at the
original image size: grey level = 255 x local probability, the fixed colour scale of `cxrviewer.model.cam`.

Site operating points (`cxrviewer.model.site`): ``--site NAME`` (a profile stored under
``$XDG_DATA_HOME/cxrviewer/sites/``) or ``--site-profile FILE`` replaces the card's default operating points with
those fitted at this site; a profile fitted for another model (weights or card) is refused (exit status 2). The
JSON always carries ``"operating_points"``: ``"source": "model card"`` or ``"site profile"`` with its name, how
and when it was fitted; with a profile, a line on stderr says so too (CSV has no room for it). Fitting one:
``--fit-site NAME --site-films PATH...`` (an unlabelled batch of the site's films: quantile matching) or
``--fit-site NAME --site-feedback FILE`` (the viewer's feedback log, ``feedback.jsonl`` in the same folder),
``--site-first N`` to use only the first N films or records; ``--list-sites``, ``--delete-site NAME``.

Exit status: 0 when every input was handled (ok, rejected or error entries); 2 for a usage error or an
unusable model (message on stderr, no traceback); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrviewer.imaging import ImageLoadError
from cxrviewer.imaging.guarded import DEFAULT_TIMEOUT_S, GuardedLoader
from cxrviewer.imaging.log_privacy import install_log_privacy
from cxrviewer.imaging.study import scan_paths
from cxrviewer.report.atomic import atomic_write_bytes
from cxrviewer.report.errors import ExportError
from cxrviewer.report.json_report import contract, dumps, error_entry, result_entry

if TYPE_CHECKING:  # torch is imported only in main(), after OMP_WAIT_POLICY is set
    from cxrviewer.model.inference import Engine, Prediction

log = logging.getLogger("cxrviewer.predict")

PROG = "cxrviewer-predict"
#: The decoding function when only the model sees the pixels (see `cxrviewer.imaging.loader.load_for_model`).
MODEL_LOADER = "cxrviewer.imaging.loader:load_for_model"
PROGRESS_MIN_FILES = 4
CSV_COLUMNS = ("path", "status", "message", "width", "height", "view", "label", "probability", "threshold",
               "positive", "cam_x", "cam_y")


class UsageError(Exception):
    """Bad arguments or an unusable model: reported in one line, exit status 2."""


@dataclass
class Item:
    """One input to process: an image file found by the scan, or a scan error for a path."""

    path: Path
    root: Path | None  # the folder it was found under (None when named directly)
    error: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Second opinion (multi-label chest X-ray findings) for image files and folders. "
                    "Not for diagnostic use.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files (DICOM, PNG, JPEG, TIFF, BMP) "
                        "or folders (scanned recursively)")
    parser.add_argument("--model", metavar="FILE", help="model card (JSON) to use instead of the bundled model")
    parser.add_argument("--allow-modified-card", action="store_true",
                        help="load a model card that does not match its seal (edited after training); the output "
                             "then says so (model.card 'modified')")
    parser.add_argument("--output", "-o", metavar="FILE", help="write the results here instead of stdout")
    parser.add_argument("--format", choices=("json", "csv"), default="json", help="output format (default json)")
    parser.add_argument("--cams", metavar="DIR", help="write one PNG heat map per label per image into DIR")
    parser.add_argument("--force", action="store_true",
                        help="run the model even where the input gate rejects an image (reasons kept in message)")
    parser.add_argument("--operating-point", choices=("default", "high_sensitivity"), default="default",
                        help="which thresholds of the model card decide 'positive'")
    parser.add_argument("--export", metavar="DIR", help="also write per-image reports into DIR (see --formats)")
    parser.add_argument("--formats", default="png,json", metavar="LIST",
                        help="report formats for --export, comma-separated (e.g. png,json,pdf,dcm)")
    parser.add_argument("--decode-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up on a file whose decoding takes longer (default {DEFAULT_TIMEOUT_S:g}; "
                             "0 = decode in this process, no limit)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for the network (default: all)")
    site = parser.add_argument_group("site operating points (see cxrviewer.model.site)")
    use = site.add_mutually_exclusive_group()
    use.add_argument("--site", metavar="NAME", help="use the operating points fitted at this site (a stored profile)")
    use.add_argument("--site-profile", metavar="FILE", help="use the operating points of this site profile file")
    site.add_argument("--fit-site", metavar="NAME", help="fit and store site operating points NAME (from "
                      "--site-films or --site-feedback), then exit")
    site.add_argument("--site-films", nargs="+", metavar="PATH", help="--fit-site: an unlabelled batch of the "
                      "site's films (files or folders)")
    site.add_argument("--site-feedback", metavar="FILE", help="--fit-site: the reader's feedback log "
                      "(the viewer's feedback.jsonl)")
    site.add_argument("--site-first", type=int, metavar="N", help="--fit-site: only the first N films / records")
    site.add_argument("--list-sites", action="store_true", help="list the stored site profiles and exit")
    site.add_argument("--delete-site", metavar="NAME", help="delete a stored site profile and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar, errors only")
    parser.add_argument("--verbose", "-v", action="store_true", help="log each file")
    return parser


# --- inputs -----------------------------------------------------------------------------------------------

def collect(paths: Sequence[str]) -> list[Item]:
    """Image files under the given paths, in argument order (folders recursively), plus scan errors."""
    items: list[Item] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        root = path if path.is_dir() else None
        scan = scan_paths([path])
        found = [Item(ref.path, root) for study in scan.studies for ref in study.images]
        found += [Item(Path(err.path), root, err.reason) for err in scan.errors]
        for item in sorted(found, key=lambda it: str(it.path)):
            key = item.path.resolve() if item.path.exists() else item.path
            if key in seen:
                continue
            seen.add(key)
            items.append(item)
    return items


# --- results ----------------------------------------------------------------------------------------------

def to_csv(results: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        size = r["image_size"] or ["", ""]
        head = [r["path"], r["status"], r["message"] or "", size[0], size[1], r["view"] or ""]
        if not r["findings"]:
            writer.writerow(head + [""] * 6)
        for f in r["findings"]:
            peak = f["cam_peak"] or ["", ""]
            writer.writerow(head + [f["label"], f["probability"], f["threshold"], int(f["positive"]),
                                    peak[0], peak[1]])
    return buf.getvalue()


# --- CAM files --------------------------------------------------------------------------------------------

def _cam_folder_name(item: Item) -> str:
    if item.root is not None:
        try:
            rel = item.path.relative_to(item.root)
            return "__".join(rel.with_suffix("").parts) or item.path.stem
        except ValueError:
            pass
    return item.path.stem or item.path.name


def write_cams(prediction: Prediction, folder: Path) -> None:
    """One 8-bit PNG per label (fixed scale: 255 x local probability) at the original image size."""
    import cv2

    from cxrviewer.model.cam import heatmap_uint8

    folder.mkdir(parents=True, exist_ok=True)
    for label in prediction.labels:
        heat = prediction.cam(label, below_cutoff=True)
        if heat is None:
            continue
        ok, buf = cv2.imencode(".png", heatmap_uint8(heat))
        if not ok:
            raise OSError(f"PNG encoding failed for {label}")
        buf.tofile(str(folder / f"{label.replace(' ', '_')}.png"))


class CamWriter:
    """Chooses a unique sub-folder of ``--cams DIR`` per image and writes its maps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.used: set[str] = set()

    def write(self, item: Item, prediction: Prediction) -> None:
        base = _cam_folder_name(item)
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}-{n}"
        self.used.add(name)
        write_cams(prediction, self.root / name)


# --- export hook ------------------------------------------------------------------------------------------

def _exporter(out_dir: str, formats: str) -> tuple[Any, list[str]]:
    """The report writers' entry point and the checked format list (UsageError when unusable).

    Calls ``cxrviewer.report.export_prediction(image, prediction, engine, out_dir, formats)`` per image.
    """
    from cxrviewer.report import ALIASES, export_prediction
    from cxrviewer.report.errors import ExportError
    from cxrviewer.report.export import parse_formats

    wanted = [f.strip().lower() for f in formats.split(",") if f.strip()]
    try:
        parse_formats([n for f in wanted for n in ALIASES.get(f, (f,))])
    except ExportError as exc:
        raise UsageError(f"--formats: {exc}") from None
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the export folder {out_dir}: {exc.strerror or exc}") from None
    return export_prediction, wanted


# --- main -------------------------------------------------------------------------------------------------

def _load_engine(args: argparse.Namespace) -> Engine:
    from cxrviewer.model.inference import Engine
    from cxrviewer.model.weights import ModelError

    kwargs: dict[str, Any] = {"operating_point": args.operating_point, "threads": args.threads,
                              "allow_modified_card": args.allow_modified_card}
    try:
        engine = Engine.from_card(args.model, **kwargs) if args.model else Engine.bundled(**kwargs)
    except ModelError as exc:
        hint = "" if args.model else " (give one with --model FILE)"
        raise UsageError(f"model unusable: {exc}{hint}") from None
    if args.site or args.site_profile:
        from cxrviewer.model import site

        try:
            profile = site.read(args.site_profile) if args.site_profile else site.load(args.site)
            site.apply(engine, profile)
        except site.SiteError as exc:
            raise UsageError(str(exc)) from None
        log.warning("operating points: %s", profile.describe())
    return engine


def _progress(items: list[Item], quiet: bool) -> Iterator[Item]:
    if quiet or len(items) < PROGRESS_MIN_FILES:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=PROG, unit="image", file=sys.stderr, dynamic_ncols=True)


def _export(exporter: tuple[Any, list[str]], image: Any, prediction: Prediction, engine: Engine,
            out_dir: Path) -> None:
    """Write the reports of one image; a failure is logged and does not change its result entry."""
    try:
        exporter[0](image, prediction, engine, out_dir, exporter[1])
    except Exception as exc:
        log.debug("export failed for %s", image.path.name, exc_info=True)
        log.error("%s: reports not written (%s)", image.path.name, exc)


def _write_cams(cams: CamWriter, item: Item, prediction: Prediction) -> None:
    try:
        cams.write(item, prediction)
    except (OSError, ValueError) as exc:
        log.error("%s: heat maps not written (%s)", item.path.name, exc)


def _process(item: Item, loader: GuardedLoader, engine: Engine, args: argparse.Namespace,
             cams: CamWriter | None, exporter: tuple[Any, list[str]] | None, results: list[dict[str, Any]]) -> None:
    """One input: its result (or error) entry, heat maps and reports; never raises for a bad file."""
    if item.error is not None:
        results.append(error_entry(item.path, item.error))
        log.info("%s: %s", item.path.name, item.error)
        return
    try:
        image = loader.load(item.path)
        prediction = engine.predict(image, force=args.force)
        results.append(result_entry(item.path, prediction))
        if prediction.findings and cams is not None:
            _write_cams(cams, item, prediction)
        if exporter is not None:
            _export(exporter, image, prediction, engine, Path(args.export))
        log.info("%s: %s", item.path.name, prediction.gate.status.value)
    except ImageLoadError as exc:
        results.append(error_entry(item.path, exc.reason))
        log.info("%s: %s", item.path.name, exc.reason)
    except Exception as exc:  # one bad file must not stop the run
        log.debug("failure on %s", item.path.name, exc_info=True)
        results.append(error_entry(item.path, f"could not be processed ({type(exc).__name__}: {exc})"))
        log.warning("%s: could not be processed (%s)", item.path.name, type(exc).__name__)


# --- site operating points ---------------------------------------------------------------------------------

def _site_probabilities(engine: Engine, paths: Sequence[str], args: argparse.Namespace) -> tuple[Any, str]:
    """Calibrated probabilities (films x labels) of the site's films the gate accepts, and what was skipped."""
    import numpy as np

    items = collect(paths)
    if args.site_first is not None:
        items = items[: max(0, args.site_first)]
    rows, rejected, unreadable = [], 0, 0
    with GuardedLoader(args.decode_timeout) as loader:  # whole films, as the viewer that applies the points reads them
        for item in _progress(items, args.quiet):
            try:
                if item.error is not None:
                    raise ImageLoadError(item.path, item.error)
                prediction = engine.predict(loader.load(item.path))
            except Exception as exc:  # one bad file must not stop the fit
                unreadable += 1
                log.info("%s: not used (%s)", item.path.name, getattr(exc, "reason", type(exc).__name__))
                continue
            if not prediction.findings:
                rejected += 1
                continue
            probs = {f.label: f.probability for f in prediction.findings}
            rows.append([probs[lab] for lab in engine.labels])
    skipped = ", ".join(f"{n} {what}" for n, what in ((rejected, "refused by the input check"),
                                                       (unreadable, "unreadable")) if n)
    return np.array(rows, dtype=np.float64).reshape(-1, len(engine.labels)), skipped


def _site_summary(profile: Any, path: Path) -> str:
    rate = "flag rate" if profile.method == "unlabelled" else "rate on films without the finding"
    lines = [f"{profile.describe()}", f"saved to {path}",
             f"{'label':<18} {'card':>7} {'site':>7}   {rate}: validation / here at card point / here at site point"]
    for label, fit in profile.labels.items():
        rates = " / ".join("n/a" if r is None else f"{r:.2f}" for r in (fit.target, fit.rate_at_card,
                                                                        fit.rate_at_site))
        lines.append(f"{label:<18} {fit.card_threshold:7.4f} {fit.threshold:7.4f}   {rates}"
                     + (f"  ({fit.note})" if fit.note else ""))
    return "\n".join(lines) + "\n"


def site_command(args: argparse.Namespace) -> int:
    """--fit-site / --list-sites / --delete-site: manage site profiles (output on stdout)."""
    from cxrviewer.model import feedback, site

    try:
        if args.list_sites:
            active = site.active_name()
            for profile in site.list_profiles():
                mark = " (the viewer's active profile)" if profile.name == active else ""
                print(f"{profile.name}: for {profile.model}, {profile.describe()}{mark}")
            return 0
        if args.delete_site:
            if not site.delete(args.delete_site):
                raise UsageError(f"no site profile named '{args.delete_site}' in {site.sites_dir()}")
            print(f"deleted site profile '{args.delete_site}'")
            return 0
        name = site.check_name(args.fit_site)
        if bool(args.site_films) == bool(args.site_feedback):
            raise UsageError("--fit-site needs either --site-films PATH... or --site-feedback FILE")
        if args.site or args.site_profile:
            raise UsageError("--fit-site fits against the model card's operating points; leave out --site")
        engine = _load_engine(args)
        if args.site_feedback:
            records = feedback.read_log(args.site_feedback)
            source = f"log {Path(args.site_feedback).name}"
            profile = site.fit_feedback(name, engine, records, args.site_first, source)
        else:
            probs, skipped = _site_probabilities(engine, args.site_films, args)
            source = ", ".join(Path(p).name for p in args.site_films[:3]) + (" ..." if len(args.site_films) > 3
                                                                             else "")
            profile = site.fit_unlabelled(name, engine, probs, source + (f"; skipped {skipped}" if skipped else ""))
        path = site.save(profile)
    except (site.SiteError, feedback.FeedbackError) as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(_site_summary(profile, path))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    if args.fit_site or args.list_sites or args.delete_site:
        return site_command(args)
    if args.site_films or args.site_feedback or args.site_first is not None:
        raise UsageError("--site-films, --site-feedback and --site-first go with --fit-site NAME")
    if not args.paths:
        raise UsageError("give at least one image file or folder (PATH)")
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: folder {output.parent} does not exist")
    exporter = _exporter(args.export, args.formats) if args.export else None
    engine = _load_engine(args)
    cams = CamWriter(Path(args.cams)) if args.cams else None
    items = collect(args.paths)
    if not items:
        log.warning("no images found in the given paths")
    results: list[dict[str, Any]] = []
    # without exports only the model sees the pixels: large JPEG 2000 films decode at a lower resolution level
    with GuardedLoader(args.decode_timeout, loader=None if exporter else MODEL_LOADER) as loader:
        for item in _progress(items, args.quiet):
            _process(item, loader, engine, args, cams, exporter, results)
    from cxrviewer.model.site import operating_points_entry

    text = to_csv(results) if args.format == "csv" else dumps(contract(engine.card, results,
                                                                        operating_points_entry(engine)))
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:  # temporary file + rename: a crash never leaves truncated results behind
            atomic_write_bytes(output, text.encode("utf-8"))
        except ExportError as exc:
            raise UsageError(str(exc)) from None
    return 0


def process_settings() -> None:
    """Process-wide settings, made before torch is imported or a decoding helper starts (a value the caller set
    wins)."""
    # Idle OpenMP threads sleep instead of spinning: on a machine whose cores are busy with other work,
    # spinning threads make a forward pass several times slower. Only effective before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from cxrviewer.model.abroad import BLUR_THREADS_ENV
    from cxrviewer.model.runners import available_cores

    cores = str(available_cores())
    # OpenJPEG (Pillow's, for the reduced-level JPEG 2000 decode) splits a film's code-blocks over this many threads,
    # same pixels: every core, since films are read one at a time, between forward passes (2k CR: 47-52 -> 29-35 ms)
    os.environ.setdefault("OPJ_NUM_THREADS", cores)
    # the abroad check's and harmonisation's octave blurs of a film on every core too (same numbers; 13 -> 7 ms)
    os.environ.setdefault(BLUR_THREADS_ENV, cores)


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # a frozen build re-enters here to start a decoding helper
    process_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not (args.fit_site or args.list_sites or args.delete_site):
        parser.error("give at least one image file or folder (PATH)")
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format=f"{PROG}: %(message)s", stream=sys.stderr)
    install_log_privacy()
    try:
        return run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
