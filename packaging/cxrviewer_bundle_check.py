"""Checks of a frozen cxrviewer bundle: Qt plugins, resources, model, torch without CUDA, DICOM decoders.

Run as ``cxrviewer --bundle-check [DICOM ...]``; prints one line per check and returns 1 if any failed.
Also runs unfrozen (``python packaging/cxrviewer_bundle_check.py FILE ...``) for comparison.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# Decoder plugin that must work inside the bundle, by transfer syntax (see DESIGN.md dependency notes).
REQUIRED_PLUGINS = {
    "1.2.840.10008.1.2.4.50": "gdcm",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "gdcm",  # JPEG Extended
    "1.2.840.10008.1.2.4.70": "gdcm",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.90": "pylibjpeg",  # JPEG 2000 lossless (pylibjpeg-openjpeg)
    "1.2.840.10008.1.2.4.91": "pylibjpeg",  # JPEG 2000
}
LEFT_OUT = ("cxrviewer.train", "sklearn", "scipy", "tkinter", "matplotlib", "triton", "pytest")
GPU_LIBRARY_MARKERS = ("libtorch_cuda", "libc10_cuda", "libcudart", "libcudnn", "libcublas", "libnccl", "libnvrtc")


def _platform_plugin_names() -> tuple[str, ...]:
    if sys.platform.startswith("linux"):
        return ("libqxcb.so", "libqoffscreen.so")
    if sys.platform == "win32":
        return ("qwindows.dll", "qoffscreen.dll")
    return ("libqcocoa.dylib", "libqoffscreen.dylib")


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def ok(self, what: str) -> None:
        print(f"ok      {what}", flush=True)

    def fail(self, what: str) -> None:
        print(f"FAILED  {what}", flush=True)
        self.failed.append(what)


def check_qt(checks: Checks) -> None:
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    for sub, names in (("platforms", _platform_plugin_names()), ("imageformats", ("qsvg",)),
                       ("iconengines", ("qsvgicon",))):
        present = {p.name for p in (plugins / sub).glob("*")} if (plugins / sub).is_dir() else set()
        for name in names:
            if any(name in p for p in present):
                checks.ok(f"Qt plugin {sub}/{name}")
            else:
                checks.fail(f"Qt plugin {sub}/{name} missing from {plugins / sub}")


def check_resources(checks: Checks) -> None:
    from importlib import resources

    root = resources.files("cxrviewer._resources")
    for rel in ("style.qss", "icons/app.svg", "demo/ATTRIBUTION.md"):
        item = root.joinpath(*rel.split("/"))
        if item.is_file() and item.read_bytes():
            checks.ok(f"resource {rel}")
        else:
            checks.fail(f"resource {rel} missing")


def check_model(checks: Checks) -> None:
    import torch

    from cxrviewer.model.weights import ModelError, bundled_card_path, load_bundle

    t0 = time.perf_counter()
    try:
        bundle = load_bundle(bundled_card_path())
    except ModelError as exc:
        checks.fail(f"bundled model: {exc}")
        return
    size = bundle.input_size
    with torch.inference_mode():
        logits, fmap = bundle.network.forward_features(torch.zeros(1, 1, size, size))
    ms = 1000 * (time.perf_counter() - t0)
    checks.ok(f"bundled model {bundle.name} ({bundle.card['architecture']}, {len(bundle.labels)} labels, "
              f"{size} px): loaded and ran in {ms:.0f} ms")
    cuda = torch.version.cuda
    checks.ok(f"torch {torch.__version__} (CUDA build: {cuda})") if cuda is None else checks.fail(
        f"torch {torch.__version__} is a CUDA {cuda} build")
    maps = Path("/proc/self/maps")
    if maps.exists():
        loaded = {line.split()[-1] for line in maps.read_text().splitlines() if "/" in line}
        gpu = sorted(p for p in loaded if any(m in Path(p).name for m in GPU_LIBRARY_MARKERS))
        if gpu:
            checks.fail("GPU libraries loaded: " + ", ".join(Path(p).name for p in gpu))
        else:
            checks.ok("no GPU library loaded in the process")


def check_left_out(checks: Checks) -> None:
    """Only meaningful frozen: what the spec excludes must really be absent from the bundle."""
    import importlib.util

    for name in LEFT_OUT:
        try:
            present = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # parent package absent
            present = False
        if present:
            checks.fail(f"{name} is in the bundle (the spec excludes it)")
        else:
            checks.ok(f"{name} left out")


def check_dicom(checks: Checks, files: list[Path]) -> None:
    import pydicom
    from pydicom.pixels import get_decoder, pixel_array

    from cxrviewer.imaging import load_image

    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
        name = getattr(ds.file_meta.TransferSyntaxUID, "name", ts)
        decoder = get_decoder(ts)
        plugins = sorted(decoder.available_plugins)
        for plugin in plugins:
            try:
                arr = pixel_array(path, decoding_plugin=plugin)
                checks.ok(f"{path.name}: {name} decoded by {plugin} {arr.shape}")
            except Exception as exc:  # report every plugin's failure, go on with the others
                checks.fail(f"{path.name}: {name} decoding with {plugin} failed: {exc}")
        required = REQUIRED_PLUGINS.get(ts)
        if required and required not in plugins:
            missing = sorted(set(decoder.missing_dependencies) if hasattr(decoder, "missing_dependencies") else [])
            checks.fail(f"{path.name}: {name} decoder plugin {required} not available {missing}")
        try:
            image = load_image(path)
            checks.ok(f"{path.name}: cxrviewer loads it ({image.pixels.shape[1]}x{image.pixels.shape[0]})")
        except Exception as exc:  # the app's own loader must handle the file
            checks.fail(f"{path.name}: cxrviewer.imaging.load_image failed: {exc}")


def main(argv: list[str]) -> int:
    checks = Checks()
    frozen = getattr(sys, "frozen", False)
    print(f"bundle-check: frozen={frozen} python={sys.version.split()[0]} platform={sys.platform}", flush=True)
    areas = [("Qt", check_qt), ("resources", check_resources), ("model", check_model)]
    if frozen:
        areas.append(("left out", check_left_out))
    for name, check in areas:
        try:
            check(checks)
        except Exception as exc:  # one broken area must not hide the others
            checks.fail(f"{name} check raised {type(exc).__name__}: {exc}")
    try:
        check_dicom(checks, [Path(a) for a in argv])
    except Exception as exc:
        checks.fail(f"DICOM check raised {type(exc).__name__}: {exc}")
    print(f"bundle-check: {len(checks.failed)} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
