"""The packaging files are valid and consistent with the code they bundle (no bundle is built here)."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "cxrviewer.spec"


def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def spec_list(name: str) -> list[str] | tuple[str, ...]:
    """The literal list (or tuple) assigned to `name` at the top of the spec."""
    for node in spec_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{SPEC.name} assigns no list {name}")


def spec_calls(func: str) -> list[ast.Call]:
    return [n for n in ast.walk(spec_tree()) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == func]


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(PACKAGING / "cxrviewer.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_launches_the_viewer_script_with_its_icon() -> None:
    entry = desktop_entry()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    command = entry["Exec"].split()[0]
    assert entry["Type"] == "Application"
    assert scripts[command] == "cxrviewer.gui.app:main"
    assert entry["Exec"].split()[1:] == ["%F"]  # opens the files a user drops on the menu entry
    assert entry["Icon"] == command  # build.sh ships resources/icons/app.svg as <command>.svg
    assert entry["Terminal"] == "false"
    assert "application/dicom" in entry["MimeType"].split(";")
    for key in ("Categories", "MimeType", "Keywords"):
        assert entry[key].endswith(";"), f"{key} list must end with ';'"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_entry_passes_desktop_file_validate() -> None:
    result = subprocess.run(["desktop-file-validate", str(PACKAGING / "cxrviewer.desktop")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower()


def test_build_script_copies_files_that_exist() -> None:
    text = (PACKAGING / "build.sh").read_text(encoding="utf-8")
    copied = [line.split()[1].strip('"').replace("$REPO/", "") for line in text.splitlines()
              if line.strip().startswith("cp \"$REPO/")]
    assert "resources/icons/app.svg" in copied and "packaging/cxrviewer.desktop" in copied
    for rel in copied:
        assert (REPO / rel).is_file(), f"build.sh copies {rel}, which does not exist"
    icon = ET.parse(REPO / "resources" / "icons" / "app.svg").getroot()
    assert icon.tag.endswith("svg")


@pytest.mark.parametrize("script", ["build.sh", "smoke.sh", "install-desktop-entry.sh"])
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = PACKAGING / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_spec_is_python_and_its_own_files_exist() -> None:
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")
    referenced = [n.right.value for n in ast.walk(spec_tree())
                  if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant)
                  and isinstance(n.left, ast.Name | ast.BinOp)]
    required = [r for r in referenced if not r.endswith((".ico", ".icns"))]  # icons are optional, checked
    assert "cxrviewer_launcher.py" in required and "rthook_torchvision_ops.py" in required
    for rel in required:
        assert list(PACKAGING.rglob(rel)), f"the spec references {rel}, not found under packaging/"


def test_spec_hidden_imports_exist() -> None:
    for module in spec_list("hiddenimports"):
        assert importlib.util.find_spec(module) is not None, f"hidden import {module} is not installed"


def test_spec_data_packages_exist_and_gdcm_dictionaries_are_there() -> None:
    packages = [c.args[0].value for c in spec_calls("collect_data_files") if isinstance(c.args[0], ast.Constant)]
    assert {"cxrviewer._models", "cxrviewer._resources", "highdicom", "_gdcm"} <= set(packages)
    for package in packages:
        assert importlib.util.find_spec(package) is not None, f"{package} (data files) is not installed"
    gdcm_root = Path(importlib.util.find_spec("_gdcm").submodule_search_locations[0])
    assert (gdcm_root / "XML" / "Part3.xml").is_file()  # collected as XML/* for GDCM_RESOURCES_PATH


def test_openjpeg_is_found_through_the_metadata_the_spec_copies() -> None:
    """pylibjpeg finds the JPEG 2000 decoder through entry points, i.e. through copied metadata."""
    copied = next(c for c in spec_calls("copy_metadata"))
    assert isinstance(copied.args[0], ast.Name)  # copy_metadata(dist) in the loop over distributions
    loop = next(n for n in ast.walk(spec_tree()) if isinstance(n, ast.For) and isinstance(n.target, ast.Name)
                and n.target.id == copied.args[0].id)
    dists = ast.literal_eval(loop.iter)
    assert {"pylibjpeg", "pylibjpeg-openjpeg", "python-gdcm"} <= set(dists)
    groups = {ep.group for ep in importlib.metadata.distribution("pylibjpeg-openjpeg").entry_points}
    assert "pylibjpeg.pixel_data_decoders" in groups


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_excluded_modules_are_not_imported_by_the_viewer() -> None:
    """The spec leaves out the trainer and what only it needs; no viewer module may import them."""
    excluded = set(spec_list("excludes"))
    assert {"cxrviewer.train", "tkinter", "matplotlib", "triton"} <= excluded
    offenders = []
    for path in sorted((REPO / "cxrviewer").rglob("*.py")):
        if "train" in path.relative_to(REPO / "cxrviewer").parts:
            continue
        for module in _imported_modules(path):
            if any(module == ex or module.startswith(ex + ".") for ex in excluded):
                offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offenders, "excluded from the bundle but imported by the viewer:\n" + "\n".join(offenders)


def test_runtime_hook_lets_torchvision_import_and_then_gets_out_of_the_way() -> None:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(PACKAGING / 'hooks' / 'rthook_torchvision_ops.py')!r})\n"
        "hook = [f for f in sys.meta_path if type(f).__name__ == '_DeclareTorchvisionOps']\n"
        "assert hook, 'hook not installed'\n"
        "import torchvision\n"
        "assert not [f for f in sys.meta_path if type(f).__name__ == '_DeclareTorchvisionOps']\n"
        "print(type(torchvision.models.resnet18(weights=None)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ResNet"


def test_bundle_check_decodes_the_shared_compressed_dicoms(shared_data: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(PACKAGING))
    try:
        import cxrviewer_bundle_check as bc
    finally:
        sys.path.remove(str(PACKAGING))
    j2k = shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm"
    jpeg = next((shared_data / "dicom").glob("siim-acr_*.dcm"))
    checks = bc.Checks()
    bc.check_dicom(checks, [j2k, jpeg])
    out = capsys.readouterr().out
    assert checks.failed == []
    assert "pydicom-data_RG1_J2KI.dcm: JPEG 2000 Image Compression decoded by pylibjpeg (1955, 1841)" in out
    assert "JPEG Baseline (Process 1) decoded by gdcm (1024, 1024)" in out
    assert bc.REQUIRED_PLUGINS["1.2.840.10008.1.2.4.50"] == "gdcm"


def test_spec_keeps_the_torch_helper_that_import_torch_requires() -> None:
    """The spec drops torch/bin (test programs) but `import torch` fails without torch_shm_manager."""
    needed = spec_list("TORCH_NEEDED")
    dropped = spec_list("TORCH_DEV_DIRS")
    torch_root = Path(importlib.util.find_spec("torch").submodule_search_locations[0])
    assert "torch/bin/" in dropped
    helper = "torch/bin/torch_shm_manager" + (".exe" if sys.platform == "win32" else "")
    assert helper in needed
    assert (torch_root.parent / helper).is_file()
    assert "torch_shm_manager" in (torch_root / "__init__.py").read_text(encoding="utf-8")
