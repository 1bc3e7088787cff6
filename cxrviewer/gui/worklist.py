"""The worklist: the opened studies, their images and the state changes the pipeline reports. No Qt.

`Worklist` owns the `StudyRecord`s (in order of arrival) and an index from image key to its study and
image. Every state change takes an image key and returns the `Entry` it changed, or None when the key is
not (or no longer) listed — the one place that guards against results of removed studies. The window
turns the returned entries into repaints; the self-test and scripts read the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrviewer.gui.records import ImageRecord, State, StudyRecord

if TYPE_CHECKING:
    import numpy as np

    from cxrviewer.gui.backend import ScannedImage, ScannedStudy
    from cxrviewer.model.inference import Prediction

#: Image states in which the pipeline still owes a result.
PENDING = (State.QUEUED, State.ANALYSING)
CANCELLED = "analysis cancelled"


@dataclass(frozen=True)
class Entry:
    """One listed image and the study it belongs to."""

    study: StudyRecord
    image: ImageRecord

    @property
    def key(self) -> str:
        return self.image.key


class Worklist:
    """Studies and images, and their state machine (queued → analysing → done / rejected / error ...)."""

    def __init__(self) -> None:
        self.studies: dict[str, StudyRecord] = {}
        self._entries: dict[str, Entry] = {}
        self._next_number = 1

    # --- queries ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.studies)

    def __contains__(self, study_key: object) -> bool:
        return study_key in self.studies

    def study(self, key: str) -> StudyRecord | None:
        return self.studies.get(key)

    def entry(self, image_key: str) -> Entry | None:
        return self._entries.get(image_key)

    def unlisted_images(self, scanned: ScannedStudy) -> list[ScannedImage]:
        """The images of a scanned study that its row does not hold yet (all of a new study's)."""
        record = self.studies.get(scanned.key)
        known = {img.path for img in record.images} if record is not None else set()
        return [img for img in scanned.images if img.path not in known]

    @staticmethod
    def opening_image(study: StudyRecord) -> ImageRecord:
        """The image a study opens on: its first image, the one its row is named after (the next readable one
        when that file cannot be read). Always the same image, however far the analyses have got."""
        return next((img for img in study.images if img.state != State.ERROR), study.images[0])

    @staticmethod
    def pending(study: StudyRecord) -> bool:
        return any(img.state in PENDING for img in study.images)

    # --- adding and removing ------------------------------------------------------------------------------

    def _new_study(self, **fields: Any) -> StudyRecord:
        record = StudyRecord(number=self._next_number, **fields)
        self._next_number += 1
        return record

    def add_scanned(self, scanned: ScannedStudy) -> tuple[StudyRecord, list[ImageRecord], bool]:
        """List the new images of a scanned study: (its record, the images added, whether the study is new)."""
        record = self.studies.get(scanned.key)
        fresh = record is None
        if record is None:
            record = self._new_study(**scanned.describing_fields())
            self.studies[record.key] = record
        added = []
        for img in self.unlisted_images(scanned):
            image = ImageRecord(key=f"{record.key}|{img.path}", path=img.path, label=img.label)
            record.images.append(image)
            self._entries[image.key] = Entry(record, image)
            added.append(image)
        return record, added, fresh

    def add_error(self, path: Path, message: str) -> StudyRecord | None:
        """A row for a file that could not be opened (once per path; None when already listed)."""
        key = f"error:{path}"
        if key in self.studies:
            return None
        record = self._new_study(key=key, source_name=path.name or str(path))
        image = ImageRecord(key=key, path=path, state=State.ERROR, message=message)
        record.images.append(image)
        self.studies[key] = record
        self._entries[key] = Entry(record, image)
        return record

    def remove(self, study_key: str) -> StudyRecord | None:
        study = self.studies.pop(study_key, None)
        if study is not None:
            for image in study.images:
                self._entries.pop(image.key, None)
        return study

    # --- state changes (None: the key is not listed) --------------------------------------------------------

    def started(self, key: str) -> Entry | None:
        entry = self.entry(key)
        if entry is not None:
            entry.image.state = State.ANALYSING
        return entry

    def analysed(self, key: str, prediction: Prediction) -> Entry | None:
        entry = self.entry(key)
        if entry is None:
            return None
        image = entry.image
        image.prediction = prediction
        if prediction.gate.status == "rejected":
            image.state = State.REJECTED
            image.message = "; ".join(prediction.gate.reasons) or "rejected by the input check"
        else:
            image.state = State.DONE
            image.message = ""
        return entry

    def failed(self, key: str, message: str) -> Entry | None:
        entry = self.entry(key)
        if entry is not None:
            entry.image.state = State.ERROR
            entry.image.message = message
            entry.image.prediction = None
        return entry

    def unanalysed(self, key: str, message: str) -> Entry | None:
        entry = self.entry(key)
        if entry is not None:
            entry.image.state = State.NOT_ANALYSED
            entry.image.message = f"not analysed: no model ({message})"
        return entry

    def cancelled(self, key: str) -> Entry | None:
        """An analysis stopped before its result; None when nothing changed."""
        entry = self.entry(key)
        if entry is None or entry.image.state not in PENDING:
            return None
        entry.image.state = State.NOT_ANALYSED
        entry.image.message = CANCELLED
        return entry

    def requeue(self, key: str, force: bool) -> Entry | None:
        entry = self.entry(key)
        if entry is not None:
            image = entry.image
            image.forced = force
            image.state = State.QUEUED
            image.message = ""
            image.prediction = None
        return entry

    def loaded(self, key: str, width: int, height: int, thumbnail: np.ndarray, view: str) -> Entry | None:
        """An image was decoded: its size and thumbnail (and the study's view when it had none)."""
        entry = self.entry(key)
        if entry is None:
            return None
        image = entry.image
        image.width, image.height = width, height
        if image.thumbnail is None:
            image.thumbnail = thumbnail
        if not entry.study.view:
            entry.study.view = view
        return entry

    @staticmethod
    def thumbnail_image(study: StudyRecord) -> ImageRecord | None:
        """The image whose thumbnail stands for the study: the first one decoded so far, in study order."""
        return next((img for img in study.images if img.thumbnail is not None), None)
