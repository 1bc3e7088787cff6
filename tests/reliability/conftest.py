"""Fixtures for the reliability tests: the helper modules of this folder on sys.path, a tiny model bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # malformed_dicom, case_worker, run_corpus, model_fixtures live beside the tests
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle (untrained ResNet-18 at 64 px, 5 labels) written with `save_bundle`."""
    from model_fixtures import write_tiny_bundle

    return write_tiny_bundle(tmp_path_factory.mktemp("tiny_model"))
