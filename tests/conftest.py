"""Shared test configuration: headless Qt, paths to the real shared data and the pydicom-data corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    """The read-only shared data: $CXR_SHARED_DATA, else ../shared/data beside the checkout, else /work/shared."""
    candidates = [os.environ.get("CXR_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


def _pydicom_data_dir() -> Path | None:
    try:
        import data_store  # the pydicom-data package (files ship inside the wheel)
    except ImportError:
        return None
    path = Path(data_store.__file__).parent / "data"
    return path if path.is_dir() else None


PYDICOM_DATA = _pydicom_data_dir()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module's tests: on a machine whose cores are shared with other jobs,
    OpenMP threads spinning on a busy core make a 30 ms forward pass take over a second."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pydicom_data() -> Path:
    if PYDICOM_DATA is None:
        pytest.fail("pydicom-data is not installed (pip install -e '.[dev]')")
    return PYDICOM_DATA


#: Probabilities of one film as a reader met them (issue 20): Lung Opacity 46 % is below its 50 % cutoff,
#: Atelectasis 24 % just above its 23.5 % one, Pneumothorax above its triage point only, Edema under 1 %.
READING_CASE = {"Cardiomegaly": 0.40, "Lung Opacity": 0.46, "No Finding": 0.30, "Atelectasis": 0.24,
                "Pneumothorax": 0.10, "Pleural Effusion": 0.05, "Edema": 0.003}


@pytest.fixture(scope="session")
def bundled_card():  # noqa: ANN201
    """The shipped model card (operating points, triage points and validation sensitivities)."""
    from cxrviewer.model.card import ModelCard
    from cxrviewer.model.weights import bundled_card_path

    return ModelCard.read(bundled_card_path())


@pytest.fixture
def reading_findings(bundled_card) -> list:  # noqa: ANN001
    """`READING_CASE` as the engine makes findings: the bundled card's cutoffs and triage points, highest
    probability first."""
    from cxrviewer.model.inference import Finding, consistent_findings

    triage = dict(bundled_card.triage_thresholds or {})
    findings = []
    for label, p in sorted(READING_CASE.items(), key=lambda item: -item[1]):
        threshold = bundled_card.thresholds[label]
        positive = p >= threshold
        findings.append(Finding(label, p, threshold, positive, None,
                                triage=not positive and label in triage and p >= triage[label]))
    return consistent_findings(findings)
