"""Architecture names a model card may give (no torch here: reading a card must not load torch).

`cxrviewer.model.network` builds them; an ensemble is a base architecture and a member count
("efficientnet_lite0_os16x3").
"""

from __future__ import annotations

ARCHITECTURES = ("resnet18", "resnet18_os16", "resnet34", "resnet50", "densenet121", "efficientnet_b0",
                 "mobilenet_v3_large", "efficientnet_lite0", "efficientnet_lite0_os16", "efficientnet_lite2",
                 "efficientnet_lite2_os16")

#: An ensemble architecture is a base architecture and a member count: "efficientnet_lite0_os16x2".
ENSEMBLE_MAX = 8


def split_ensemble(arch: str) -> tuple[str, int]:
    """(base architecture, members): ("resnet18", 1) for a plain one, ("efficientnet_lite0_os16", 2) for ...x2."""
    base, sep, count = arch.rpartition("x")
    if sep and count.isdigit() and base in ARCHITECTURES and 2 <= int(count) <= ENSEMBLE_MAX:
        return base, int(count)
    return arch, 1


def is_known_architecture(arch: str) -> bool:
    return split_ensemble(arch)[0] in ARCHITECTURES
