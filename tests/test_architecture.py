"""Project-wide rules checked in CI: Qt only under cxrviewer/gui (import-linter) and a ruff-clean tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def test_import_contracts_kept() -> None:
    proc = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout


def test_ruff_clean() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "cxrviewer", "tests"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def _layer_modules() -> list[str]:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [m.strip() for layer in layers for m in layer.replace(":", "|").split("|")]


def test_layers_contract_names_every_package() -> None:
    """A new package or top-level module must take its place in the layer order (pyproject.toml)."""
    package = REPO / "cxrviewer"
    found = {f"cxrviewer.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    found |= {f"cxrviewer.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    found -= {"cxrviewer._models", "cxrviewer._resources"}  # package data, no code
    assert found == set(_layer_modules())


def test_predict_pdf_export_never_imports_qt(tmp_path: Path, shared_data: Path) -> None:
    """`cxrviewer-predict --export DIR --formats pdf` writes the PDF without loading Qt (a string import of a
    GUI module escaped import-linter before; this checks what is really loaded)."""
    image = sorted((shared_data / "nih" / "images").glob("*.png"))[0]
    script = (
        "import sys\n"
        "from cxrviewer.predict import main\n"
        "code = main([sys.argv[1], '--export', sys.argv[2], '--formats', 'pdf', '--output', sys.argv[3],\n"
        "             '--quiet', '--threads', '1'])\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6') or\n"
        "            m.startswith('cxrviewer.gui'))\n"
        "print('LOADED', qt)\n"
        "sys.exit(code or (3 if qt else 0))\n"
    )
    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "-c", script, str(image), str(out), str(tmp_path / "r.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout
    (pdf,) = out.glob("*.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
