"""What the export layer needs from a prediction, and the JSON contract's probability ranking.

`cxrviewer.model.inference.Prediction` satisfies `PredictionLike`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from cxrviewer.model.gate_status import GateStatus


class FindingLike(Protocol):
    """One finding (`cxrviewer.model.inference.Finding`); read-only, so any concrete type satisfies it."""

    @property
    def label(self) -> str: ...
    @property
    def probability(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def positive(self) -> bool: ...
    @property
    def cam_peak(self) -> Any: ...  # (x, y) in original pixels, or None


class GateLike(Protocol):
    @property
    def status(self) -> GateStatus: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def warnings(self) -> Sequence[str]: ...


class PredictionLike(Protocol):
    @property
    def findings(self) -> Sequence[FindingLike]: ...
    @property
    def gate(self) -> GateLike: ...
    @property
    def image_size(self) -> Any: ...  # (width, height)
    @property
    def view(self) -> str: ...

    def cam(self, label: str) -> np.ndarray | None: ...


NO_FINDING = "No Finding"


def is_rejected(prediction: PredictionLike | None) -> bool:
    """True when the input gate refused the image (the model's output must not be shown)."""
    if prediction is None or getattr(prediction, "gate", None) is None:
        return False
    return GateStatus(prediction.gate.status) is GateStatus.REJECTED


def ranked(prediction: PredictionLike) -> list[FindingLike]:
    """Findings, highest probability first (ties keep the model's label order): the order of the JSON contract.
    Readers see the reading order of `cxrviewer.report.reading` instead."""
    return sorted(prediction.findings, key=lambda f: -float(f.probability))


def gate_warnings(prediction: PredictionLike | None) -> list[str]:
    if prediction is None or getattr(prediction, "gate", None) is None:
        return []
    return [str(w) for w in prediction.gate.warnings]


def gate_reasons(prediction: PredictionLike | None) -> list[str]:
    if prediction is None or getattr(prediction, "gate", None) is None:
        return []
    return [str(r) for r in prediction.gate.reasons]
