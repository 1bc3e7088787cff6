"""Reports and exports: annotated PNG, JSON contract, PDF, DICOM SR (TID 1500) and Secondary Capture.

Headless (no Qt here). What a PDF page says is decided in `pdf_content` and laid out by `pdf_writer`
(ReportLab), which `export.export_study` loads only when a PDF is asked for.
Entry point: `cxrviewer.report.export.export_study`; `export_prediction` adapts it for
`cxrviewer-predict --export`. Importing this package is cheap: the writers load on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Format names accepted on the command line besides export.FORMATS ("dcm" = SR + Secondary Capture).
ALIASES = {"dcm": ("sr", "sc"), "dicom": ("sr", "sc")}


def export_prediction(image: Any, prediction: Any, engine: Any, out_dir: str | Path,
                      formats: str | Iterable[str], anonymise: bool = False) -> list[Path]:
    """Export one image for a batch caller: `export_study` with the engine's card.

    DICOM formats are skipped (logged, not an error) for PNG/JPEG inputs, which have no DICOM study to
    join. Raises `ExportError` for an unknown format or an unwritable folder.
    """
    from cxrviewer.report.export import DICOM_FORMATS, applicable_formats, export_study

    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n for f in items for n in ALIASES.get(str(f).strip().lower(), (str(f),))]
    chosen = applicable_formats(image, names)
    skipped = sorted(set(n.strip().lower() for n in names) & DICOM_FORMATS - chosen)
    if skipped:
        log.info("%s: not a DICOM file, %s not written", Path(image.path).name, "/".join(skipped).upper())
    from cxrviewer.model.site import operating_points_entry

    return export_study(image, prediction, engine.card, out_dir, formats=chosen, anonymise=anonymise,
                        operating_points=operating_points_entry(engine))
