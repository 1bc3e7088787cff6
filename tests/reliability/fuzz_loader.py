"""Coverage-guided fuzzing of `load_image` with atheris (libFuzzer), run by hand.

    pip install atheris                       # a manylinux wheel exists for CPython 3.11 on x86-64
    python tests/reliability/fuzz_loader.py -atheris_runs=3000            # a short run (~minutes)
    python tests/reliability/fuzz_loader.py -max_total_time=600 CORPUS/   # longer, keeping new inputs

Each input is written to a file (in /dev/shm when present) with a .dcm name and opened with
`load_image`; a loaded image then goes through `to_display` and `model_input`, as the viewer would.
The seeds are the small real DICOM files of pydicom-data plus the first 64 KiB of the shared chest
DICOMs (libFuzzer mutates from there). Options after the script name go to libFuzzer: ``-timeout=N``
(seconds per input: a slower input is reported as a hang), ``-rss_limit_mb=N`` (memory), ``-max_len``.

Expected exceptions (not findings):
  * `cxrviewer.imaging.ImageLoadError` -- the loader's only way to refuse a file.
Everything else is a finding and stops the run with the input saved as ``crash-*``: any other exception
type escaping `load_image` / `to_display` / `model_input`, a pixel array that is not 2-D or a model input
outside [0, 1], a hang past ``-timeout`` (default here 10 s), memory past ``-rss_limit_mb`` (default here
2048 MB), or a crash in a C decoder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["cxrviewer", "pydicom"]):
    import numpy as np

    from cxrviewer.imaging import ImageLoadError, load_image, model_input, to_display

EXPECTED = (ImageLoadError,)
_DIR = Path(tempfile.mkdtemp(prefix="cxr-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
_TARGET = _DIR / "input.dcm"


def test_one_input(data: bytes) -> None:
    _TARGET.write_bytes(data)
    try:
        image = load_image(_TARGET)
    except EXPECTED:
        return
    if image.pixels.ndim != 2 or image.pixels.size == 0:
        raise AssertionError(f"loaded pixels of shape {image.pixels.shape}")
    display = to_display(image)
    unit = model_input(image)
    if display.shape != image.pixels.shape or not np.isfinite(unit).all() or unit.min() < 0 or unit.max() > 1:
        raise AssertionError("display/model input violate their contracts")


def seed_folder() -> Path:
    """Seeds: small pydicom-data files and the heads of the shared chest DICOMs (written once)."""
    from conftest import PYDICOM_DATA, SHARED_DATA

    seeds = _DIR / "seeds"
    seeds.mkdir(exist_ok=True)
    if PYDICOM_DATA is not None:
        for path in sorted(PYDICOM_DATA.glob("*.dcm")):
            if path.stat().st_size <= 64 * 1024:
                (seeds / path.name).write_bytes(path.read_bytes())
    for path in sorted((SHARED_DATA / "dicom").glob("*.dcm")):
        (seeds / path.name).write_bytes(path.read_bytes()[: 64 * 1024])
    return seeds


def main() -> None:
    warnings.simplefilter("ignore")
    # libFuzzer leaves through C exit(): Python's atexit does not run, so say where the scratch files are.
    print(f"fuzz_loader: scratch folder {_DIR} (delete it afterwards)", file=sys.stderr)
    args = list(sys.argv)
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=10")
    if not any(a.startswith("-rss_limit_mb=") for a in args):
        args.append("-rss_limit_mb=2048")
    if not any(a.startswith("-max_len=") for a in args):
        args.append("-max_len=131072")
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given: use the seeds
        args.append(str(seed_folder()))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
