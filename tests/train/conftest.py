"""Small real subsets of the shared data, written as CSVs in each dataset format."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cxrviewer.train.datasets import write_rows as write_csv


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))




@pytest.fixture(scope="session")
def kermany_rows(shared_data: Path) -> list[dict[str, str]]:
    return _rows(shared_data / "kermany" / "labels.csv")


@pytest.fixture(scope="session")
def nih_entry_rows(shared_data: Path) -> list[dict[str, str]]:
    return _rows(shared_data / "nih" / "Data_Entry_2017_subset.csv")


@pytest.fixture()
def kermany_subset(tmp_path: Path, kermany_rows, shared_data: Path):
    """A plain-CSV spec over 160 normal + 160 pneumonia Kermany images (whole patients)."""
    normal = [r for r in kermany_rows if r["NORMAL"] == "1"][:160]
    pneu = [r for r in kermany_rows if r["PNEUMONIA"] == "1"][:160]
    csv_path = write_csv(tmp_path / "kermany.csv", normal + pneu)
    return (f"plain,csv={csv_path},root={shared_data},mapping={shared_data / 'label_map_to_chexpert.csv'},"
            f"name=kermany")
