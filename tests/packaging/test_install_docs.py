"""README's install and test commands work on a fresh Debian machine, CI runs exactly them, and the
CPU-only torch path is documented and used by the desktop build.

What is checked here and what is not: no package is installed (PyTorch's CPU index is not reachable from the
test machines), so the CPU-only recipe is checked for what can be checked offline: its commands parse as bash,
it pins one torch and one torchvision that fit the project's bounds and are a matched pair per torchvision's
published compatibility table (and, where this environment has the pinned torchvision, per that wheel's own
metadata), and it installs torch before the app."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI = (REPO / ".ci" / "run").read_text(encoding="utf-8")
PACKAGING_README = (REPO / "packaging" / "README.md").read_text(encoding="utf-8")
BUILD = (REPO / "packaging" / "build.sh").read_text(encoding="utf-8")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
QT_DESKTOP_LIBS = {"libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-render-util0",
                   "libxkbcommon-x11-0", "libegl1", "libfontconfig1", "libdbus-1-3"}


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def steps(command: str) -> list[str]:
    return [s.strip() for s in command.split("&&")]


#: How README runs a command as root: `sudo` for a user, nothing as root on an image without sudo.
AS_ROOT = ("$(command -v sudo) ", "sudo ")


def without_sudo(step: str) -> str:
    for prefix in AS_ROOT:
        step = step.replace(prefix, "", 1) if step.startswith(prefix) else step
    return step


def apt_installs(command: str) -> list[list[str]]:
    """The package lists of every `apt-get install` in a command line."""
    out = []
    for step in steps(command):
        words = shlex.split(without_sudo(step))
        if words[:2] == ["apt-get", "install"]:
            out.append([w for w in words[2:] if not w.startswith("-")])
    return out


def test_every_apt_install_is_preceded_by_apt_get_update() -> None:
    """A fresh Debian has empty package lists: `apt-get install` alone finds nothing."""
    lines = [line for block in bash_blocks(README) for line in block.splitlines()]
    lines += [line for line in CI.splitlines() if not line.lstrip().startswith("#")]
    checked = 0
    for line in lines:
        line_steps = [without_sudo(s) for s in steps(line)]
        for i, step in enumerate(line_steps):
            if step.startswith("apt-get install"):
                assert any(s.startswith("apt-get update") for s in line_steps[:i]), line
                checked += 1
    assert checked >= 3  # README's install and test commands, .ci/run


def test_both_readme_commands_install_python3_venv_and_qt_libraries() -> None:
    (install, *_) = bash_blocks(section("Install and run"))
    (develop,) = bash_blocks(section("Develop and test"))
    (desktop,) = apt_installs(install)
    (tests,) = apt_installs(develop)
    assert "python3-venv" in desktop and "python3-venv" in tests
    assert QT_DESKTOP_LIBS <= set(desktop)  # what a desktop user needs to open Qt's window
    assert {"libegl1", "libgl1", "libfontconfig1", "libxkbcommon0"} <= set(tests)  # Qt off screen
    assert "python3 -m venv .venv" in install and "python3 -m venv .venv" in develop
    for lib in QT_DESKTOP_LIBS:  # packaging/README lists the same libraries for the build machine
        assert lib in PACKAGING_README


def test_ci_runs_exactly_readmes_test_command() -> None:
    (develop,) = bash_blocks(section("Develop and test"))
    ci_lines = [line.strip() for line in CI.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    parts = steps(develop)
    pytest_step = parts[-1]
    env = [w for w in shlex.split(pytest_step) if "=" in w]
    setup = " && ".join(parts[:-1])
    # .ci/run spreads README's one line over its setup lines, then exports the environment and runs pytest.
    ci_setup = " && ".join(line for line in ci_lines[: ci_lines.index(f"export {' '.join(env)}")]
                           if not line.startswith(("set ", "cd ")))
    assert ci_setup == setup
    assert any(line.startswith("python -m pytest") for line in ci_lines)
    assert 'pip install -e ".[dev]"' in setup  # CI installs the dev extra (pytest, ruff, mypy, ...)


#: torchvision's published compatibility table (its README, "Installation"): the torch release each torchvision
#: release is built for. From torch 2.0 on, torchvision 0.N pairs with torch 2.(N - 15), patch for patch.
TORCHVISION_FOR_TORCH = {(2, minor): (0, minor + 15) for minor in range(0, 15)}


def matched_pair(torch: Version, torchvision: Version) -> bool:
    expected = TORCHVISION_FOR_TORCH.get((torch.major, torch.minor))
    return expected == (torchvision.major, torchvision.minor) and torch.micro == torchvision.micro


def cpu_recipe() -> list[str]:
    cpu = [b for b in bash_blocks(section("Install and run")) if CPU_INDEX in b]
    assert cpu, "README shows no CPU-only install"
    return steps(cpu[0])


def pinned(words: list[str]) -> dict[str, Version]:
    """name -> version of every `name==version` requirement in a pip command's words."""
    out = {}
    for word in words:
        if "==" in word:
            req = Requirement(word)
            (spec,) = req.specifier
            out[req.name] = Version(spec.version)
    return out


def test_cpu_only_torch_path_pins_a_matched_pair_within_the_projects_bounds() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    bounds = {req.name: req.specifier for req in (Requirement(d.split("#")[0]) for d in deps)}
    parts = cpu_recipe()
    (torch_step,) = [s for s in parts if CPU_INDEX in s]
    words = shlex.split(torch_step)
    assert words[words.index("--index-url") + 1] == CPU_INDEX
    pins = pinned(words)
    assert set(pins) == {"torch", "torchvision"}, words  # both pinned: open ranges let pip mix releases
    assert pins["torch"] in bounds["torch"] and pins["torchvision"] in bounds["torchvision"]
    assert matched_pair(pins["torch"], pins["torchvision"]), pins
    assert parts.index("pip install .") > parts.index(torch_step)  # torch first, so pip keeps the CPU build
    assert CPU_INDEX in PACKAGING_README


def test_the_pair_check_knows_published_pairs_and_mismatches() -> None:
    for torch, vision in (("2.4.1", "0.19.1"), ("2.6.0", "0.21.0"), ("2.9.1", "0.24.1"), ("2.13.0", "0.28.0")):
        assert matched_pair(Version(torch), Version(vision))
    for torch, vision in (("2.14.1", "0.28.0"), ("2.13.0", "0.29.0"), ("2.9.1", "0.24.0"), ("1.13.1", "0.14.1")):
        assert not matched_pair(Version(torch), Version(vision))


def test_pinned_torchvision_wheel_accepts_the_pinned_torch() -> None:
    """Where this environment has the pinned torchvision, its own metadata must accept the pinned torch."""
    pins = pinned(shlex.split(next(s for s in cpu_recipe() if CPU_INDEX in s)))
    try:
        installed = Version(importlib.metadata.version("torchvision"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("torchvision is not installed here")
    if Version(installed.base_version) != pins["torchvision"]:
        pytest.skip(f"torchvision {installed} here, README pins {pins['torchvision']}")
    requires = [Requirement(r) for r in importlib.metadata.requires("torchvision") or []]
    (torch_req,) = [r for r in requires if r.name == "torch" and not r.marker]
    assert torch_req.specifier.contains(pins["torch"], prereleases=True), torch_req


def test_readme_commands_parse_as_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    for block in bash_blocks(README):
        proc = subprocess.run([bash, "-n", "-c", block], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{block}\n{proc.stderr}"


def test_build_scripts_default_torch_is_a_matched_pair() -> None:
    default = re.search(r'TORCH_REQ="\$\{CXR_TORCH:-([^}]*)\}"', BUILD)
    assert default is not None
    pins = {name: Version(v.base_version) for name, v in pinned(default.group(1).split()).items()}
    assert matched_pair(pins["torch"], pins["torchvision"]), pins


def test_build_script_installs_a_cpu_torch_and_refuses_a_cuda_one() -> None:
    assert f'TORCH_INDEX_URL="${{TORCH_INDEX_URL-{CPU_INDEX}}}"' in BUILD
    assert '--extra-index-url "$TORCH_INDEX_URL"' in BUILD
    default = re.search(r'TORCH_REQ="\$\{CXR_TORCH:-([^}]*)\}"', BUILD)
    assert default is not None and "+cpu" in default.group(1)
    assert "torch.version.cuda" in BUILD and "exit 1" in BUILD  # a CUDA torch stops the build
