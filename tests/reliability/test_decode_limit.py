"""Decoding under a wall-clock limit: hangs and crashes inside a decoder become errors, never a hang.

The helper processes run `misbehaving_decoder.load` (this folder is on the children's sys.path), so the
hang and the crash happen inside the decoding process exactly where a stuck or crashing C decoder would.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from misbehaving_decoder import SPEC

from cxrviewer import predict
from cxrviewer.imaging import ImageLoadError, guarded, load_image
from cxrviewer.imaging.display import to_display
from cxrviewer.imaging.guarded import GuardedLoader
from cxrviewer.predict import main as predict_main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode_limit")
    good = shared_data / "dicom" / "udacity_nih_test1.dcm"
    out = {"j2k": shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm",
           "png": shared_data / "nih" / "images" / "00000001_000.png", "good": good}
    for name in ("hang", "crash", "leak"):
        out[name] = root / f"{name}.dcm"
        shutil.copyfile(good, out[name])
    out["broken"] = root / "broken.dcm"
    out["broken"].write_bytes(b"DICM" * 40)
    return out


def test_helper_gives_the_same_image_and_errors_as_in_process(files: dict[str, Path]) -> None:
    with GuardedLoader(timeout=60) as loader:
        for key in ("j2k", "png", "good"):
            a, b = loader.load(files[key]), load_image(files[key])
            assert a.path == b.path and a.meta == b.meta and a.flags == b.flags
            assert np.array_equal(a.pixels, b.pixels) and np.array_equal(to_display(a), to_display(b))
        with pytest.raises(ImageLoadError) as guarded_error:
            loader.load(files["broken"])
    with pytest.raises(ImageLoadError) as direct_error:
        load_image(files["broken"])
    assert str(guarded_error.value) == str(direct_error.value)


def test_hang_is_stopped_at_the_limit_and_the_next_file_loads(files: dict[str, Path]) -> None:
    with GuardedLoader(timeout=1.5, loader=SPEC) as loader:
        loader.load(files["good"])  # helper started: the limit now measures the decode alone
        helper = loader._idle[0]
        t0 = time.monotonic()
        with pytest.raises(ImageLoadError) as err:
            loader.load(files["hang"])
        elapsed = time.monotonic() - t0
        assert 1.5 <= elapsed < 10
        assert str(err.value) == "hang.dcm: decoding took longer than 1.5 s and was stopped (damaged file or a " \
                                 "decoder fault)"
        assert not helper.process.is_alive()  # the stuck helper was killed, not left running
        assert loader.load(files["good"]).pixels.shape == load_image(files["good"]).pixels.shape


def test_crashing_decoder_is_an_error_and_the_next_file_loads(files: dict[str, Path]) -> None:
    with GuardedLoader(timeout=30, loader=SPEC) as loader:
        with pytest.raises(ImageLoadError, match=r"^crash\.dcm: the image decoder crashed on this file"):
            loader.load(files["crash"])
        with pytest.raises(ImageLoadError, match=r"^leak\.dcm: could not be opened"):
            loader.load(files["leak"])
        assert loader.load(files["png"]).width == load_image(files["png"]).width


def test_concurrent_loads_use_separate_helpers(files: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with GuardedLoader(timeout=1.5, size=2, loader=SPEC) as loader:
        with ThreadPoolExecutor(2) as pool:
            hang = pool.submit(loader.load, files["hang"])
            time.sleep(0.2)
            good = pool.submit(loader.load, files["good"])  # not stuck behind the hanging file
            assert good.result(timeout=20).pixels.size > 0
            with pytest.raises(ImageLoadError, match="longer than"):
                hang.result(timeout=20)


def test_predict_reports_the_hang_and_goes_on(files: dict[str, Path], tiny_card: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guarded, "DEFAULT_LOADER", SPEC)
    monkeypatch.setattr(predict, "MODEL_LOADER", SPEC)  # what the CLI decodes with when it exports nothing
    out = tmp_path / "results.json"
    code = predict_main([str(files["hang"]), str(files["crash"]), str(files["good"]), "--model", str(tiny_card),
                         "--decode-timeout", "2", "--output", str(out), "--quiet"])
    assert code == 0
    results = {Path(r["path"]).name: r for r in json.loads(out.read_text())["results"]}
    assert "decoding took longer than 2 s" in results["hang.dcm"]["message"]
    assert "decoder crashed" in results["crash.dcm"]["message"]
    assert results["udacity_nih_test1.dcm"]["status"] in ("ok", "rejected")
    assert results["udacity_nih_test1.dcm"]["findings"]


def test_helper_that_died_while_idle_is_replaced(files: dict[str, Path]) -> None:
    with GuardedLoader(timeout=30) as loader:
        loader.load(files["good"])
        idle = loader._idle[0]
        idle.process.kill()  # e.g. killed by the system between two files
        idle.process.join(5)
        assert loader.load(files["png"]).width == load_image(files["png"]).width
        assert loader._idle and loader._idle[0] is not idle
