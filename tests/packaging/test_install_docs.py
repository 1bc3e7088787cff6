"""README's install and test commands work on a fresh Debian machine, CI runs exactly them, and the
CPU-only torch path is documented and used by the desktop build (no package is installed here)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

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


def apt_installs(command: str) -> list[list[str]]:
    """The package lists of every `apt-get install` in a command line."""
    out = []
    for step in steps(command):
        words = shlex.split(step)
        words = words[1:] if words[:1] == ["sudo"] else words
        if words[:2] == ["apt-get", "install"]:
            out.append([w for w in words[2:] if not w.startswith("-")])
    return out


def test_every_apt_install_is_preceded_by_apt_get_update() -> None:
    """A fresh Debian has empty package lists: `apt-get install` alone finds nothing."""
    lines = [line for block in bash_blocks(README) for line in block.splitlines()]
    lines += [line for line in CI.splitlines() if not line.lstrip().startswith("#")]
    checked = 0
    for line in lines:
        line_steps = [s.removeprefix("sudo ") for s in steps(line)]
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


def test_cpu_only_torch_path_is_documented_with_the_projects_bounds() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    bounds = {re.match(r"[A-Za-z0-9_-]+", d).group(0): d for d in (d.split("#")[0].strip() for d in deps)}
    cpu = [b for b in bash_blocks(section("Install and run")) if CPU_INDEX in b]
    assert cpu, "README shows no CPU-only install"
    parts = steps(cpu[0])
    (torch_step,) = [s for s in parts if CPU_INDEX in s]
    words = shlex.split(torch_step)
    assert bounds["torch"].replace(" ", "") in words and bounds["torchvision"].replace(" ", "") in words
    assert words[words.index("--index-url") + 1] == CPU_INDEX
    assert parts.index("pip install .") > parts.index(torch_step)  # torch first, so pip keeps the CPU build
    assert CPU_INDEX in PACKAGING_README


def test_build_script_installs_a_cpu_torch_and_refuses_a_cuda_one() -> None:
    assert f'TORCH_INDEX_URL="${{TORCH_INDEX_URL-{CPU_INDEX}}}"' in BUILD
    assert '--extra-index-url "$TORCH_INDEX_URL"' in BUILD
    default = re.search(r'TORCH_REQ="\$\{CXR_TORCH:-([^}]*)\}"', BUILD)
    assert default is not None and "+cpu" in default.group(1)
    assert "torch.version.cuda" in BUILD and "exit 1" in BUILD  # a CUDA torch stops the build
