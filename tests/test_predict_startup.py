"""`cxrviewer-predict` starts without torch: `--help` imports neither torch nor onnxruntime, and the bundled
model's findings, JSON and heat maps come from its ONNX export with torch made unimportable (issue 22)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)


def test_help_imports_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys\n"
            "from cxrviewer.predict import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'onnxruntime'))\n"
            "sys.exit(f'imported: {heavy[:5]}' if heavy else 0)\n")
    run = run_python(code)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage: cxrviewer-predict" in run.stdout


def test_one_dicom_to_json_and_maps_without_torch(shared_data: Path, tmp_path: Path) -> None:
    dcm = shared_data / "dicom" / "udacity_nih_test1.dcm"
    code = ("import sys\nsys.modules['torch'] = None  # any import of torch fails\n"
            "from cxrviewer.predict import main\n"
            f"sys.exit(main(['-q', '--threads', '1', '--cams', {str(tmp_path / 'maps')!r}, {str(dcm)!r}]))\n")
    run = run_python(code)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)["results"][0]
    assert result["status"] == "ok" and result["image_size"] == [1024, 1024]
    assert len(result["findings"]) == len(json.loads(run.stdout)["model"]["labels"])
    assert len(list((tmp_path / "maps").rglob("*.png"))) == len(result["findings"])
