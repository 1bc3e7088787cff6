#!/usr/bin/env bash
# Add (or with --remove, take away) a start-menu entry for this cxrviewer bundle, for the current user.
# Run from the unpacked bundle folder: ./install-desktop-entry.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor/scalable/apps"

if [[ "${1:-}" == "--remove" ]]; then
    rm -f "$APPS/cxrviewer.desktop" "$ICONS/cxrviewer.svg"
    echo "removed the cxrviewer menu entry"
    exit 0
fi
[[ -x "$HERE/cxrviewer" ]] || { echo "install-desktop-entry.sh: $HERE/cxrviewer not found" >&2; exit 1; }
mkdir -p "$APPS" "$ICONS"
cp "$HERE/cxrviewer.svg" "$ICONS/cxrviewer.svg"
# The template says Exec=cxrviewer %F; point it at this bundle (quoted: the path may hold spaces).
sed "s|^Exec=cxrviewer |Exec=\"$HERE/cxrviewer\" |" "$HERE/cxrviewer.desktop" > "$APPS/cxrviewer.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$APPS" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q "$DATA/icons/hicolor" 2>/dev/null || true
echo "installed $APPS/cxrviewer.desktop -> $HERE/cxrviewer"
