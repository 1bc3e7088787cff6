"""The viewer's one doorway to the headless layers (imaging, model); no Qt here.

Heavy modules (pydicom, torch) are imported on first use, inside worker threads, so the window shows
before they load. Only `load_engine` imports torch: scanning and decoding never do, so a film is shown
while the model loads, and a broken torch install costs the findings, never the viewing (`model_failure`
says what failed). Everything returned is plain Python / numpy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrviewer.gui.priorities import build_with_niced_helpers, inference_threads

if TYPE_CHECKING:  # the headless types at the seam; the modules themselves load on first use
    from cxrviewer.imaging.guarded import GuardedLoader
    from cxrviewer.imaging.image import Image, WindowPreset
    from cxrviewer.model.card import ModelCard
    from cxrviewer.model.inference import Engine, Prediction

log = logging.getLogger(__name__)

#: Environment variable naming a model card to use instead of the bundled model.
MODEL_ENV = "CXRVIEWER_MODEL"
#: Set to 1 to load a model card that does not match its seal (like ``cxrviewer --allow-modified-card``).
ALLOW_MODIFIED_CARD_ENV = "CXRVIEWER_ALLOW_MODIFIED_CARD"
THUMBNAIL_SIDE = 96


# --- scanning ---------------------------------------------------------------------------------------------


@dataclass
class ScannedImage:
    path: Path
    label: str = ""
    view: str = ""


@dataclass
class ScannedStudy:
    """A study found by the header scan (identifiers included; never log them)."""

    key: str
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    accession: str = ""
    study_date: str = ""
    description: str = ""
    modality: str = ""
    view: str = ""
    source_name: str = ""
    dicom: bool = False  # DICOM files (SR / Secondary Capture exports apply)
    images: list[ScannedImage] = field(default_factory=list)

    def describing_fields(self) -> dict[str, str]:
        """Everything but the images, by name (the study list's record has the same fields)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "images"}


@dataclass
class ScanOutcome:
    studies: list[ScannedStudy] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)  # (file, user-readable message)


def scan(paths: list[Path]) -> ScanOutcome:
    """Header-only scan of files and folders, grouped by study (imaging's `scan_paths`; never raises)."""
    from cxrviewer.imaging.study import scan_paths

    result = scan_paths([Path(p) for p in paths])
    outcome = ScanOutcome()
    for study in result.studies:
        refs = study.images
        if not refs:
            continue
        first = refs[0].meta
        views = [ref.meta.view_position for ref in refs]
        scanned = ScannedStudy(
            key=study.key,
            patient_name=study.patient_name,
            patient_id=study.patient_id,
            birth_date=first.patient_birth_date,
            accession=first.accession_number,
            study_date=study.study_date,
            description=study.description,
            modality=study.modality or ("" if first.source_format == "dicom" else first.source_format.upper()),
            view="/".join(dict.fromkeys(v for v in views if v)),
            source_name=refs[0].path.name,
            dicom=all(ref.meta.source_format == "dicom" for ref in refs),
        )
        for ref in refs:
            parts = [ref.meta.view_position, ref.series_description]
            if ref.frames > 1:
                parts.append(f"{ref.frames} frames")
            label = " · ".join(p for p in parts if p)  # no file name: it may hold identifiers
            scanned.images.append(ScannedImage(ref.path, label, ref.meta.view_position))
        outcome.studies.append(scanned)
    for err in result.errors:
        outcome.errors.append((Path(getattr(err, "path", "") or ""), str(err)))
    return outcome


# --- images -----------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """A decoded image plus what the canvas and the study list need to show it at once."""

    image: Image
    display: np.ndarray  # uint8 (h, w) at the file's own window, display polarity
    window: WindowPreset  # the window of `display`
    thumbnail: np.ndarray  # uint8, longest side THUMBNAIL_SIDE
    rgb32: np.ndarray | None = None  # `display` as 0xFFgggggg words, ready for the canvas (handed over once)
    presets: list[WindowPreset] | None = None  # named windows (`window_presets`), computed in the worker


#: Helper processes that decode with a time limit (a decoder stuck on a hostile file is killed, not waited for).
DECODERS = 2
_decoder: GuardedLoader | None = None
_decoder_lock = threading.Lock()


def decoder() -> GuardedLoader:
    """The app's `GuardedLoader` (created on first use; replace it with `set_decoder`)."""
    global _decoder
    with _decoder_lock:
        if _decoder is None:
            from cxrviewer.imaging.guarded import GuardedLoader

            _decoder = GuardedLoader(size=DECODERS)
        return _decoder


def set_decoder(loader: GuardedLoader | None) -> GuardedLoader | None:
    """Use `loader` from now on (None: a default one on next use); returns the previous one (not closed)."""
    global _decoder
    with _decoder_lock:
        previous, _decoder = _decoder, loader
    return previous


def warm_decoder() -> None:
    """Start a decoding helper process ahead of the first file (its imports take about 0.5 s) and import what
    `decode` runs here; never raises."""
    try:
        decoder().start()
        import cv2  # noqa: F401  (thumbnails)

        from cxrviewer.imaging import display, presets  # noqa: F401
    except Exception:  # the first load starts one (or decodes in this process) and reports real problems
        log.warning("decoding helper could not be started ahead of time", exc_info=True)


def close_decoder() -> None:
    """Stop the decoding helper processes (at shutdown; a later load starts new ones)."""
    previous = set_decoder(None)
    if previous is not None:
        previous.close()


def load(path: Path) -> Image:
    """Decode one file under the time limit (raises ImageLoadError with a readable message)."""
    return decoder().load(path)


def window_presets(image: Image) -> list[WindowPreset]:
    """File default, Lung, Mediastinum, Bone ... in the image's own units (`cxrviewer.imaging.presets`)."""
    from cxrviewer.imaging.presets import window_presets as _presets

    return _presets(image)


def default_window(image: Image) -> WindowPreset:
    from cxrviewer.imaging.display import default_window as _default

    return _default(image)


def to_display(image: Image, window: WindowPreset | None = None, invert: bool = False) -> np.ndarray:
    from cxrviewer.imaging.display import to_display as _to_display

    return _to_display(image, window, invert)


def pixel_value(image: Image, x: int, y: int) -> float | None:
    from cxrviewer.imaging.display import pixel_value as _pixel_value

    try:
        return _pixel_value(image, x, y)
    except (IndexError, ValueError, TypeError):
        return None


def thumbnail(display: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    import cv2

    h, w = display.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(display, size, interpolation=cv2.INTER_AREA))


def decode(path: Path, image: Image | None = None, screen_ready: bool = True) -> Decoded:
    """Load (unless already loaded) and prepare the first display and the thumbnail; `screen_ready` also
    converts the display to the canvas's pixel format (for the image about to be shown)."""
    image = image if image is not None else load(path)
    window = default_window(image)
    display = np.ascontiguousarray(to_display(image, None))
    rgb32 = gray_to_rgb32(display) if screen_ready else None
    return Decoded(image, display, window, thumbnail(display), rgb32, window_presets(image))


def image_errors() -> tuple[type[BaseException], ...]:
    """What decoding raises for a file that cannot be shown (the message names the file and why)."""
    from cxrviewer.imaging.errors import ImageLoadError

    return ImageLoadError, OSError


def gray_to_rgb32(gray: np.ndarray) -> np.ndarray:
    """8-bit grey (h, w) -> uint32 (h, w) 0xFFgggggg, the pixel format a screen pixmap uses natively."""
    out = gray.astype(np.uint32)
    out *= 0x010101
    out |= 0xFF000000
    return out


def lung_outline(image: Image) -> list[np.ndarray]:
    """The lung fields' outline for View ▸ Lung outline (N x 2 int32 (x, y) contours in original pixels; [] when
    none is found): the localiser the engine uses, on the same model input, about 10-15 ms per film."""
    from cxrviewer.imaging.anatomy import find_lung_fields
    from cxrviewer.imaging.display import model_input

    return list(find_lung_fields(model_input(image)).outline())


def heat_map(prediction: Prediction, label: str, max_side: int = 768) -> np.ndarray | None:
    """A finding's heat map on the engine's fixed [0, 1] scale, at most `max_side` pixels per side.

    The same computation as `Prediction.cam` (bilinear resampling of the logit CAM through the
    letterbox, then the fixed sigmoid scale; no map below the cutoff), done directly at display
    resolution: the maps come from a coarse grid, so nothing is lost, and no full-resolution float
    map is kept per finding.
    """
    from cxrviewer.model.cam import local_probability

    finding = prediction.finding(label)
    labels = list(getattr(prediction, "labels", []) or [])
    shown = finding is not None and (finding.positive or getattr(finding, "triage", False))
    if not shown or label not in labels or prediction.cams_logit.size == 0:
        return None
    width, height = prediction.image_size
    scale = min(1.0, max_side / max(width, height))
    box = prediction.letterbox.resized(max(1, round(width * scale)), max(1, round(height * scale)))
    return local_probability(box.map_to_original(prediction.cams_logit[labels.index(label)]))


# --- model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: a card path given by the user, or the bundled one (path None)."""

    path: Path | None
    origin: str  # "command line", "CXRVIEWER_MODEL", "bundled"
    #: Load a card that does not match its seal (shown as "modified model card" everywhere).
    allow_modified_card: bool = False


def model_source(cli_path: str | Path | None, allow_modified_card: bool = False) -> ModelSource:
    """The model the user asked for; `allow_modified_card` also when CXRVIEWER_ALLOW_MODIFIED_CARD=1."""
    allow = allow_modified_card or os.environ.get(ALLOW_MODIFIED_CARD_ENV, "").strip().lower() in ("1", "yes", "true")
    if cli_path:
        return ModelSource(Path(cli_path), "command line", allow)
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        return ModelSource(Path(env), MODEL_ENV, allow)
    return ModelSource(None, "bundled", allow)


def card_warning(engine: Engine) -> str:
    """The "modified model card" warning for a loaded engine ("" when its card is sealed)."""
    card = getattr(engine, "card", None)
    note = card.integrity_note() if card is not None and hasattr(card, "integrity_note") else None
    return note or ""


NO_MODEL_HINT = (
    "Start with --model CARD.json or set CXRVIEWER_MODEL to a model card (see the README for the bundled model)."
)
#: How a torch that does not import is reported (`load_engine`); its message says how to fix it.
TORCH_FAILED = "PyTorch could not be loaded"


def no_model_hint(message: str) -> str:
    """What to do about a model that did not load: choosing another card does not mend a broken torch."""
    return "Images can still be viewed." if message.startswith(TORCH_FAILED) else NO_MODEL_HINT


class TorchUnavailable(RuntimeError):
    """torch / torchvision cannot be imported (a broken or mismatched install); the message says so."""


def _importing_torch(exc: BaseException) -> bool:
    """`exc` was raised while torch or torchvision was being imported (a broken or mismatched install: a missing
    library, torchvision's operators missing from torch ...), not by a model file or a later computation."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not any(f.filename.startswith("<frozen importlib") for f in frames):
        return False
    for before, frame in zip([None, *frames], frames, strict=False):
        if {"torch", "torchvision"} & set(Path(frame.filename).parts):
            return True
        line = before.line if before is not None else ""
        if frame.filename.startswith("<frozen importlib") and re.search(r"\b(import|from)\s+torch", line or ""):
            return True
    return False


def load_engine(source: ModelSource) -> Engine:
    """Load the inference engine; raises ModelError with a readable message (TorchUnavailable when torch
    itself does not import: only the torch network needs it, an ONNX model runs without)."""
    from cxrviewer.model.card import ModelError

    def build(threads: int) -> Engine:
        from cxrviewer.model.inference import Engine

        kwargs: dict[str, Any] = {"threads": threads,  # no lung outlines: `lung_outline` finds those on screen
                                  "allow_modified_card": source.allow_modified_card}
        engine = Engine.from_card(source.path, **kwargs) if source.path is not None else Engine.bundled(**kwargs)
        if engine.runner.name == "torch" and threads > inference_threads():
            # ONNX Runtime failed and torch runs the card: its threads start later, unnamed and not niced
            import torch

            torch.set_num_threads(inference_threads())  # a core stays free for the event loop
        return engine

    try:
        # ONNX Runtime on Linux: every core, the helper threads niced; torch (threads it starts later, unnamed)
        # and elsewhere: all cores but one
        if hasattr(os, "setpriority") and not loads_torch(source):
            # what `build` imports is imported here, so no library's own thread pool is born on the named builder
            import cxrviewer.model.inference  # noqa: F401

            with contextlib.suppress(ImportError):  # a broken one: the engine falls back to torch and says so
                import onnxruntime  # noqa: F401
            engine = build_with_niced_helpers(build)
        else:
            engine = build(inference_threads())
    except Exception as exc:  # ImportError, OSError (a missing .so), RuntimeError (torchvision's operators)
        if isinstance(exc, ModelError) or not _importing_torch(exc):
            raise
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise TorchUnavailable(
            f"{TORCH_FAILED} ({type(exc).__name__}: {detail}). torch and torchvision must be a "
            "matched pair: reinstall them as the README's install section shows"
        ) from exc
    try:
        engine.warmup()
    except Exception:  # warm-up is an optimisation; a real prediction reports real problems
        log.warning("model warm-up failed", exc_info=True)
    return engine


def loads_torch(source: ModelSource) -> bool:
    """Loading this model imports torch (seconds of both cores and of Python's lock): not when its card names an
    ONNX export, present beside it, that ONNX Runtime runs (a missing export falls back to torch). A card that
    cannot be read counts as torch (its load reports why)."""
    import importlib.util

    if os.environ.get("CXRVIEWER_BACKEND", "").strip().lower() == "torch":
        return True
    try:
        from cxrviewer.model.weights import bundled_card_path

        path = Path(source.path if source.path is not None else bundled_card_path())
        card = json.loads(path.read_text(encoding="utf-8"))
        export = path.parent / str(card["onnx"]["file"])
    except Exception:  # missing, unreadable, no export named: torch runs it, or the load says what is wrong
        return True
    return not (export.is_file() and importlib.util.find_spec("onnxruntime"))


def model_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for the user (a model or an image that cannot be used). Never imports
    torch, so it works in the very handler that reports a broken torch install."""
    from cxrviewer.imaging.errors import ImageLoadError
    from cxrviewer.model.card import ModelError

    return ModelError, ImageLoadError, OSError


def model_failure(exc: BaseException) -> str:
    """What the findings panel says when the model could not be loaded."""
    if isinstance(exc, (TorchUnavailable, *model_errors())):
        return str(exc)
    log.error("model load failed", exc_info=exc)
    return f"the model could not be loaded ({type(exc).__name__}: {exc})"


def validation_table(card: ModelCard | None) -> dict[str, dict[str, Any]]:
    """Per-label validation metrics of a `ModelCard` ({label: {auroc, auroc_std, n_pos, ...}}; {} without one).

    ``auroc_std`` is the spread of the label's AUROC across cross-validation folds, when the card records it.
    """
    from cxrviewer.model.card import ModelCard

    if not isinstance(card, ModelCard):
        return {}
    table: dict[str, dict[str, Any]] = {}
    for label in card.labels:
        metrics = card.label_metrics(label)
        if metrics is None:
            continue
        row = {k: v for k, v in metrics.to_json().items() if v is not None}
        spread = card.auroc_fold_std(label)
        if spread is not None:
            row["auroc_std"] = spread
        table[label] = row
    return table


def metric(entry: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in entry and entry[name] is not None:
            return entry[name]
    return None
