"""A decoder that misbehaves on request, run inside `GuardedLoader`'s helper processes by the tests.

Files whose name starts with "hang" never finish (as a C decoder stuck in a loop would), "crash" kills
the helper process (as a segfaulting decoder would), "leak" returns an image that cannot be sent back;
every other file is decoded normally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cxrviewer.imaging import load_image
from cxrviewer.imaging.image import Image

SPEC = "misbehaving_decoder:load"


def load(path: str | Path) -> Image:
    name = Path(path).name
    if name.startswith("hang"):
        while True:
            time.sleep(1)
    if name.startswith("crash"):
        os._exit(139)
    image = load_image(path)
    if name.startswith("leak"):
        image.display_lut = lambda values: values  # a lambda cannot be pickled
    return image
