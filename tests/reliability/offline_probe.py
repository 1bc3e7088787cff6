"""Exercise cxrviewer with network access trapped (see `netguard`), in a fresh interpreter.

    python tests/reliability/offline_probe.py --model CARD --images DIR [--out FILE]

Installs the guard *before* anything of cxrviewer is imported, then: imports every module of the
package (GUI modules included, Qt offscreen), loads every file of DIR with `load_image`, scans DIR
with `scan_paths`, and runs `cxrviewer-predict`'s ``main`` on DIR with the root logger at DEBUG on
stderr. Prints one JSON object on stdout: the attempts caught, and what ran.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import netguard  # noqa: E402

netguard.install()


def import_everything() -> tuple[list[str], list[str]]:
    import importlib
    import pkgutil

    import cxrviewer

    names = ["cxrviewer"] + [m.name for m in pkgutil.walk_packages(cxrviewer.__path__, "cxrviewer.")]
    imported, failed = [], []
    for name in names:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as exc:  # reported, judged by the test
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return imported, failed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    report: dict[str, object] = {"guard_live": netguard.self_test()}

    imported, failed = import_everything()
    report.update(modules=len(imported), import_errors=failed)

    from cxrviewer.imaging import ImageLoadError, load_image, scan_paths

    folder = Path(args.images)
    loaded = refused = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                load_image(path)
                loaded += 1
            except ImageLoadError as exc:
                logging.getLogger("probe").info("refused: %s", exc)
                refused += 1
    scan = scan_paths([folder])
    report.update(loaded=loaded, refused=refused, scan_images=scan.image_count, scan_errors=len(scan.errors))

    from cxrviewer.predict import main as predict_main

    out = Path(args.out) if args.out else folder.parent / "predict.json"
    report["predict_rc"] = predict_main(["--model", args.model, "--output", str(out), "--verbose", str(folder)])
    results = json.loads(out.read_text())["results"] if out.exists() else []
    report["predict_statuses"] = sorted(r["status"] for r in results)
    report["attempts"] = list(netguard.ATTEMPTS)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
