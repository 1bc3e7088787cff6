"""What the viewer is showing, in plain Python (no Qt): the displayed study and image, the finding whose map is
shown, whether patient identifiers are hidden, and the model's status (loading, ready or failed, and why).

`ViewerState` is written by the window's helpers (`FilmDisplay` when a study, image or finding is shown, `Intake`
when the model settles) and by the "hide identifiers" switches (the toolbar action, the browser's button, the
stored setting), and read by anyone; `subscribe` hands every change to a listener as the set of field
names that changed, so a widget or a script can follow the viewer without reaching into the window. The model's
status is its own field because the film never waits for it: "loading" is an ordinary state of a viewer that
already shows films.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ModelPhase(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelStatus:
    phase: ModelPhase = ModelPhase.LOADING
    name: str = ""  # the model's name once ready
    message: str = ""  # why there is no model (failed)


Listener = Callable[[frozenset[str]], None]
FIELDS = ("displayed_study", "displayed_image", "selected_label", "hide_identifiers", "model")


class ViewerState:
    """The viewer's shown state; `update` changes fields and tells the listeners which ones changed."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {"displayed_study": "", "displayed_image": "", "selected_label": None,
                                        "hide_identifiers": False, "model": ModelStatus()}
        self._listeners: list[Listener] = []

    @property
    def displayed_study(self) -> str:
        """Key of the study on screen ("" for none)."""
        return str(self._values["displayed_study"])

    @property
    def displayed_image(self) -> str:
        """Key of the image on the canvas ("" for none)."""
        return str(self._values["displayed_image"])

    @property
    def selected_label(self) -> str | None:
        """The finding whose heat map is shown (None for none)."""
        label = self._values["selected_label"]
        return None if label is None else str(label)

    @property
    def hide_identifiers(self) -> bool:
        """Patient names, IDs, dates and file names are hidden everywhere, exports are anonymised."""
        return bool(self._values["hide_identifiers"])

    @property
    def model(self) -> ModelStatus:
        status = self._values["model"]
        assert isinstance(status, ModelStatus)
        return status

    def update(self, **changes: Any) -> frozenset[str]:
        """Set fields; listeners hear of those whose value changed (returned)."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise TypeError(f"ViewerState has no field {', '.join(sorted(unknown))}")
        if "model" in changes and not isinstance(changes["model"], ModelStatus):
            raise TypeError("model must be a ModelStatus")
        if "hide_identifiers" in changes and not isinstance(changes["hide_identifiers"], bool):
            raise TypeError("hide_identifiers must be a bool")
        changed = frozenset(name for name, value in changes.items() if self._values[name] != value)
        self._values.update(changes)
        if changed:
            for listener in list(self._listeners):
                listener(changed)
        return changed

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(changed field names)` after every change; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None
