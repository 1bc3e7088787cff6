"""Entry script of the desktop bundle: `cxrviewer.gui.app:main`, plus a hidden `--bundle-check`.

``cxrviewer --bundle-check [DICOM ...]`` (used by packaging/smoke.sh) checks what a frozen bundle
most often lacks and exits non-zero, naming the problem, if anything is missing.
"""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the decoding helper processes re-enter the bundle's executable here
    if len(sys.argv) > 1 and sys.argv[1] == "--bundle-check":
        from cxrviewer_bundle_check import main as bundle_check

        sys.exit(bundle_check(sys.argv[2:]))

    from cxrviewer.gui.app import main

    sys.exit(main())
