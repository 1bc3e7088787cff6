#!/usr/bin/env bash
# Smoke check of the desktop bundle: builds it (unless told not to), then, headless:
#   - files a frozen PySide6/torch app most often lacks: Qt platform plugins xcb AND offscreen, the
#     SVG image/icon plugins, the model card + weights; and no CUDA library in the folder;
#   - `cxrviewer --bundle-check`: Qt plugins, resources, the bundled model loads and runs, torch is
#     CPU-only and loads no GPU library, the JPEG 2000 (pylibjpeg-openjpeg) and JPEG baseline (gdcm)
#     decoders work, and the trainer/scipy/tkinter/matplotlib are not in the bundle;
#   - `cxrviewer --self-test FILE` on real DICOMs (JPEG 2000, JPEG baseline, uncompressed), timed;
#   - under Xvfb (when installed) the same with the xcb platform plugin, and time to first frame.
# Exits non-zero on the first thing missing.
#
#   packaging/smoke.sh [--build | --no-build] [BUNDLE_DIR]
#     default: build only when BUNDLE_DIR (dist/cxrviewer) has no executable yet
# Environment: CXR_SMOKE_DATA  folder holding the shared DICOMs (default: dicom/ in $CXR_SHARED_DATA,
#              ../shared/data beside the checkout, or /work/shared/data)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=auto
BUNDLE="$REPO/dist/cxrviewer"
for arg in "$@"; do
    case "$arg" in
        --build) build=yes ;;
        --no-build) build=no ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) BUNDLE="$(cd "$arg" && pwd)" ;;
    esac
done
EXE="$BUNDLE/cxrviewer"
if [[ $build == yes || ( $build == auto && ! -x "$EXE" ) ]]; then
    "$REPO/packaging/build.sh"
fi
[[ -x "$EXE" ]] || { echo "smoke: no bundle at $BUNDLE (run packaging/build.sh)" >&2; exit 1; }

DATA="${CXR_SMOKE_DATA:-}"
if [[ -z "$DATA" ]]; then  # as the tests find the shared data: $CXR_SHARED_DATA, beside the checkout, /work
    for root in "${CXR_SHARED_DATA:-}" "$REPO/../shared/data" /work/shared/data; do
        [[ -n "$root" && -d "$root/dicom" ]] && { DATA="$root/dicom"; break; }
    done
fi
J2K="$DATA/pydicom-data_RG1_J2KI.dcm"
JPEG="$DATA/siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
PLAIN="$REPO/resources/demo/udacity_nih_test1.dcm"
for f in "$J2K" "$JPEG" "$PLAIN"; do
    [[ -f "$f" ]] || { echo "smoke: test file $f not found (set CXR_SMOKE_DATA)" >&2; exit 1; }
done

fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- files ---------------------------------------------------------------------------------------
say "bundle contents ($BUNDLE)"
for lib in libqxcb.so libqoffscreen.so libqsvg.so libqsvgicon.so; do
    found=$(find "$BUNDLE" -name "$lib" -print -quit)
    [[ -n "$found" ]] || fail "$lib missing from the bundle"
    echo "ok      ${found#"$BUNDLE"/}"
done
models="$(find "$BUNDLE" -path '*cxrviewer/_models/*' -name '*.json' | head -1)"
[[ -n "$models" ]] || fail "no model card (cxrviewer/_models/*.json) in the bundle"
echo "ok      model card ${models#"$BUNDLE"/}"
[[ -n "$(find "$BUNDLE" -path '*cxrviewer/_models/*' -name '*.safetensors' -print -quit)" ]] \
    || fail "no model weights (*.safetensors) in the bundle"
cuda=$(find "$BUNDLE" \( -name 'libtorch_cuda*' -o -name 'libc10_cuda*' -o -name 'libcudart*' -o -name 'libcudnn*' \
    -o -name 'libcublas*' -o -name 'libnccl*' -o -name 'libnvrtc*' -o -path '*/nvidia/*' -o -path '*/triton/*' \) -print)
[[ -z "$cuda" ]] || fail "CUDA libraries in the bundle: $cuda"
echo "ok      no CUDA library in the bundle"
for f in cxrviewer.desktop cxrviewer.svg install-desktop-entry.sh; do
    [[ -f "$BUNDLE/$f" ]] || fail "$f missing from the bundle folder"
done
echo "ok      desktop entry, icon, installer"
size=$(du -sh "$BUNDLE" | cut -f1)
echo "size    $size"

# --- headless runs (offscreen) -------------------------------------------------------------------
export QT_QPA_PLATFORM=offscreen
say "bundle check (offscreen)"
env -u DISPLAY -u WAYLAND_DISPLAY timeout 300 "$EXE" --bundle-check "$J2K" "$JPEG" \
    || fail "bundle check (see the FAILED lines above)"

self_test() {  # self_test LABEL FILE [env...]: run --self-test, require a finished analysis
    local label="$1" file="$2"; shift 2
    local out t0 t1 code=0
    t0=$(now)
    out=$(env "$@" timeout 300 "$EXE" --self-test "$file" 2>&1) || code=$?
    t1=$(now)
    echo "$out" | sed 's/^/    /'
    [[ $code -eq 0 ]] || fail "self-test on $(basename "$file") ($label) exited $code"
    grep -q '^state: done' <<<"$out" || fail "self-test on $(basename "$file") ($label): no finished analysis"
    grep -q '^model: ' <<<"$out" || fail "self-test on $(basename "$file") ($label): no model loaded"
    grep -qE '^  .+ [01]\.[0-9]{3}  threshold' <<<"$out" || fail "self-test ($label): no findings printed"
    echo "ok      self-test $label $(basename "$file"): $(elapsed "$t0" "$t1") s to the result"
}

say "self-tests (offscreen)"
self_test "offscreen" "$J2K" -u DISPLAY -u WAYLAND_DISPLAY
self_test "offscreen" "$JPEG" -u DISPLAY -u WAYLAND_DISPLAY
self_test "offscreen" "$PLAIN" -u DISPLAY -u WAYLAND_DISPLAY

# --- xcb under Xvfb ------------------------------------------------------------------------------
if command -v xvfb-run >/dev/null; then
    say "xcb platform plugin under Xvfb"
    self_test "xcb" "$J2K" QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24"
    t0=$(now)
    shown=$(QT_QPA_PLATFORM=xcb timeout 120 xvfb-run -a -s "-screen 0 1600x1000x24" "$EXE" --quit-after-show \
        | awk '/^shown /{print $2}') || true
    [[ -n "$shown" ]] || fail "xcb: the main window did not show"
    echo "ok      xcb: main window shown $(elapsed "$t0" "$shown") s after launch (includes Xvfb start)"
else
    echo "note    xvfb-run not installed: xcb plugin checked for presence only"
fi

say "smoke check passed (bundle $size)"
