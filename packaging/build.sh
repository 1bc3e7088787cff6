#!/usr/bin/env bash
# Build the cxrviewer desktop bundle (PyInstaller, one folder) into dist/cxrviewer/.
#
#   packaging/build.sh [--clean] [--archive] [--skip-env]
#
# 1. prepares a separate build environment (build/pkg-venv) with a CPU-only torch, so that no CUDA
#    library (about 2.4 GB with torch's default Linux wheel) ends up in the bundle;
# 2. installs cxrviewer into it non-editable (models/ and resources/ as package data);
# 3. runs PyInstaller on packaging/cxrviewer.spec at the lowest CPU priority;
# 4. adds the .desktop file, the icon and install-desktop-entry.sh, and prints the bundle's size.
#
# Options:  --clean     drop PyInstaller's cache (build/pyinstaller) first
#           --archive   also write dist/cxrviewer-VERSION-linux-x86_64.tar.gz
#           --skip-env  use the build environment as it is (no pip at all)
# Environment:
#   PYTHON            base interpreter for the build environment (default python3.11; needs libpython)
#   CXR_TORCH         torch requirement(s) (default "torch==2.13.0+cpu torchvision==0.28.0")
#   TORCH_INDEX_URL   extra index for the torch step (default PyTorch's CPU index,
#                     https://download.pytorch.org/whl/cpu; set it empty to use pip's own indexes only)
#   CXR_BUILD_VENV    build environment folder (default build/pkg-venv)
#   CXR_MODELS_DIR    bundle this model folder instead of models/ (trial builds)
#   CXR_NICE          nice level for PyInstaller (default 19)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
VENV="${CXR_BUILD_VENV:-$REPO/build/pkg-venv}"
DIST="$REPO/dist"
WORK="$REPO/build/pyinstaller"
TORCH_REQ="${CXR_TORCH:-torch==2.13.0+cpu torchvision==0.28.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"  # README's CPU-only install path
NICE=(nice -n "${CXR_NICE:-19}")

clean=0 archive=0 skip_env=0
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        --archive) archive=1 ;;
        --skip-env) skip_env=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }

# --- 1. build environment ------------------------------------------------------------------------
if [[ $skip_env -eq 0 ]]; then
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating build environment $VENV"
        shared=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED") or 0)')
        if [[ "$shared" != "1" ]]; then
            echo "build.sh: $PYTHON has no shared libpython, which PyInstaller needs (pyenv: build with" \
                 "PYTHON_CONFIGURE_OPTS=--enable-shared)" >&2
            exit 1
        fi
        "$PYTHON" -m venv "$VENV"
    fi
    stamp="$VENV/.cxr-torch"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$TORCH_REQ" ]]; then
        say "installing $TORCH_REQ"
        # shellcheck disable=SC2086  # TORCH_REQ holds several requirements
        "${NICE[@]}" "$VENV/bin/pip" install --quiet ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} $TORCH_REQ
        echo "$TORCH_REQ" > "$stamp"
    fi
    # torchvision's PyPI Linux wheel has CUDA-linked ops, which a CPU torch cannot load, and then
    # `import torchvision` fails; the bundle's runtime hook fixes that, and this .pth does the same
    # for the build environment itself (so that it can run the app and the checks unfrozen).
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp "$REPO/packaging/hooks/rthook_torchvision_ops.py" "$site/cxr_torchvision_ops.py"
    echo "import cxr_torchvision_ops" > "$site/cxr_torchvision_ops.pth"
    say "installing cxrviewer (non-editable, with the 'package' extra)"
    constraints="$VENV/.cxr-constraints.txt"
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(*(f"{d}=={m.version(d)}" for d in ("torch", "torchvision")), sep="\n")' > "$constraints"
    (cd "$REPO" && "${NICE[@]}" "$VENV/bin/pip" install --quiet --constraint "$constraints" ".[package]")
    # pip skips a reinstall of the same version: force the package itself so that models/ is current,
    # and drop setuptools' build/lib, which keeps files deleted from the tree (e.g. a replaced model)
    rm -rf "$REPO/build/lib" "$REPO/build/bdist."*
    (cd "$REPO" && "${NICE[@]}" "$VENV/bin/pip" install --quiet --no-deps --force-reinstall .)
fi

cuda=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')
if [[ -n "$cuda" && "${CXR_ALLOW_CUDA:-0}" != "1" ]]; then
    echo "build.sh: torch in $VENV is a CUDA $cuda build; install a CPU-only torch (CXR_TORCH, TORCH_INDEX_URL)" >&2
    exit 1
fi

# --- 2. PyInstaller ------------------------------------------------------------------------------
[[ $clean -eq 1 ]] && rm -rf "$WORK"
say "PyInstaller (nice ${CXR_NICE:-19})"
start=$(date +%s)
# Run outside the repository root: there, ./cxrviewer (the source tree, without _models/_resources)
# would shadow the installed package.
mkdir -p "$WORK"
(cd "$WORK" && "${NICE[@]}" "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" "$REPO/packaging/cxrviewer.spec")
echo "PyInstaller took $(( $(date +%s) - start )) s"

# --- 3. desktop integration, permissions, size ---------------------------------------------------
BUNDLE="$DIST/cxrviewer"
cp "$REPO/packaging/cxrviewer.desktop" "$BUNDLE/cxrviewer.desktop"
cp "$REPO/resources/icons/app.svg" "$BUNDLE/cxrviewer.svg"
cp "$REPO/packaging/install-desktop-entry.sh" "$BUNDLE/install-desktop-entry.sh"
chmod -R a+rX "$BUNDLE"  # readable by every user when installed system-wide (the weights are written 0600)

version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cxrviewer"))')
say "bundle: $BUNDLE (cxrviewer $version)"
du -sh "$BUNDLE"
if [[ $archive -eq 1 ]]; then
    tarball="$DIST/cxrviewer-$version-linux-$(uname -m).tar.gz"
    "${NICE[@]}" tar -C "$DIST" -czf "$tarball" cxrviewer
    du -sh "$tarball"
fi
echo "next: packaging/smoke.sh --no-build   (headless check of the bundle)"
