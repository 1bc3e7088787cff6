"""The canvas's radiologist tools, driven with the mouse on real DICOMs: distance ruler (mm, detector mm, px),
cardiothoracic ratio, flip with rotation, magnifier loupe; outlined corner text; the colour bar beside the film."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QAction, QFont, QImage, QKeySequence, QMouseEvent, QPainter, QPainterPath
from PySide6.QtWidgets import QApplication, QMainWindow

from cxrviewer.gui import backend
from cxrviewer.gui.image_view import CanvasTool, ImageCanvas
from cxrviewer.imaging import load_image

SIIM = "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"  # Pixel Spacing 0.168
LEFT, NONE = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton


@pytest.fixture
def make_canvas(qtbot) -> Callable[..., ImageCanvas]:  # noqa: ANN001
    def make(path: Path, size: tuple[int, int] = (900, 900)) -> ImageCanvas:
        canvas = ImageCanvas()
        qtbot.addWidget(canvas)
        canvas.resize(*size)
        canvas.show()
        qtbot.waitExposed(canvas)
        show(canvas, path)
        return canvas

    return make


def show(canvas: ImageCanvas, path: Path) -> None:
    decoded = backend.decode(path, load_image(path))
    canvas.set_image(decoded.image, decoded.display, decoded.window, rgb32=decoded.rgb32)


def send(canvas: ImageCanvas, kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton,
         buttons: Qt.MouseButton) -> None:
    vp = canvas.viewport()
    event = QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(vp, event)


def drag(canvas: ImageCanvas, a: QPointF, b: QPointF, steps: int = 5) -> None:
    send(canvas, QEvent.Type.MouseButtonPress, a, LEFT, LEFT)
    for i in range(1, steps + 1):
        send(canvas, QEvent.Type.MouseMove, a + (b - a) * (i / steps), NONE, LEFT)
    send(canvas, QEvent.Type.MouseButtonRelease, b, LEFT, NONE)


def click(canvas: ImageCanvas, at: QPointF) -> None:
    send(canvas, QEvent.Type.MouseButtonPress, at, LEFT, LEFT)
    send(canvas, QEvent.Type.MouseButtonRelease, at, LEFT, NONE)


def hover(canvas: ImageCanvas, at: QPointF) -> None:
    send(canvas, QEvent.Type.MouseMove, at, NONE, NONE)


def at_scene(canvas: ImageCanvas, x: float, y: float) -> QPointF:
    return QPointF(canvas.mapFromScene(QPointF(x, y)))


def film_on_screen(canvas: ImageCanvas) -> QRect:
    return canvas.mapFromScene(canvas.image_item().boundingRect()).boundingRect()


@pytest.mark.parametrize(
    ("name", "changes", "expected", "label"),
    [
        (SIIM, {}, "16.8 mm", "16.8 mm"),  # real Pixel Spacing 0.168
        ("udacity_nih_test1.dcm", {"PixelSpacing": [0.143, 0.143]}, "14.3 mm", "14.3 mm"),
        ("udacity_nih_test1.dcm", {"ImagerPixelSpacing": [0.143, 0.143]}, "14.3 mm at detector, not calibrated",
         "14.3 mm"),
        ("udacity_nih_test1.dcm", {}, "100.0 px, no spacing", "100.0 px"),  # the real file has no spacing
    ],
)
def test_ruler_drag_of_100_px_reads_the_spacing(qtbot, make_canvas, dicom_dir: Path, tmp_path: Path,  # noqa: ANN001
                                                name: str, changes: dict, expected: str, label: str) -> None:
    path = dicom_dir / name
    if changes:
        import pydicom

        ds = pydicom.dcmread(path)
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        path = tmp_path / "variant.dcm"
        ds.save_as(path)
    canvas = make_canvas(path)
    canvas.actual_size()  # one image pixel per screen pixel: a 100 px drag is 100 image pixels
    canvas.set_tool(CanvasTool.RULER)
    assert canvas.tool() is CanvasTool.RULER and "Ruler" in canvas.tool_hint()
    vp = canvas.viewport().rect()
    a = QPointF(vp.center().x() - 50, vp.center().y())
    with qtbot.waitSignal(canvas.measurementChanged, timeout=2000) as blocker:
        drag(canvas, a, a + QPointF(100, 0))
    assert blocker.args == [expected]
    assert canvas.measurements() == [label]


def test_ruler_by_two_clicks_at_fit_zoom_and_esc(qtbot, make_canvas, dicom_dir: Path) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM)
    assert canvas.fit_mode and canvas.zoom < 1
    canvas.set_tool(CanvasTool.RULER)
    a, b = at_scene(canvas, 200, 300), at_scene(canvas, 800, 300)
    results: list[str] = []
    canvas.measurementChanged.connect(results.append)
    click(canvas, a)
    hover(canvas, b)  # the line follows the mouse until the second click
    assert not results
    click(canvas, b)
    assert len(results) == 1
    mm = float(results[0].split()[0])
    assert mm == pytest.approx(600 * 0.168, abs=2 * 0.168 / canvas.zoom)  # screen rounding only
    # a quick second click arrives as a double click: it still ends the line (and does not re-fit)
    canvas.zoom_by(1.5)
    click(canvas, a)
    send(canvas, QEvent.Type.MouseButtonDblClick, a + QPointF(3, 60), LEFT, LEFT)
    send(canvas, QEvent.Type.MouseButtonRelease, a + QPointF(3, 60), LEFT, NONE)
    assert len(results) == 2 and not canvas.fit_mode
    assert float(results[1].split()[0]) == pytest.approx(60 / canvas.zoom * 0.168, abs=0.6)
    canvas.fit()

    # Esc drops a line being drawn and returns to pan; finished lines stay
    click(canvas, a)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert canvas.tool() is CanvasTool.PAN and canvas.tool_hint() == ""
    assert len(canvas.measurements()) == 2 and len(results) == 2
    # in pan mode a left drag pans again
    before = canvas.mapToScene(canvas.viewport().rect().center())
    drag(canvas, a, a + QPointF(40, 0))
    assert canvas.mapToScene(canvas.viewport().rect().center()).x() < before.x() - 10


def test_esc_reaches_the_canvas_before_a_window_shortcut(qtbot, dicom_dir: Path) -> None:  # noqa: ANN001
    window = QMainWindow()
    qtbot.addWidget(window)
    canvas = ImageCanvas()
    window.setCentralWidget(canvas)
    fired: list[bool] = []
    action = QAction("Escape elsewhere", window)
    action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
    action.triggered.connect(lambda: fired.append(True))
    window.addAction(action)
    window.resize(700, 700)
    with qtbot.waitActive(window):
        window.show()
        window.activateWindow()
    show(canvas, dicom_dir / SIIM)
    canvas.set_tool(CanvasTool.CTR)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert canvas.tool() is CanvasTool.PAN and not fired
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)  # in pan mode Esc is the window's again
    assert fired


def test_cardiothoracic_ratio_from_two_drags(qtbot, make_canvas, dicom_dir: Path) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM)
    canvas.actual_size()
    canvas.set_tool(CanvasTool.CTR)
    assert canvas.tool_hint().startswith("CTR 1/2")
    c = canvas.viewport().rect().center()
    results: list[str] = []
    canvas.measurementChanged.connect(results.append)
    drag(canvas, QPointF(c.x() - 150, c.y()), QPointF(c.x() + 150, c.y()))  # cardiac: 300 px
    assert not results and canvas.tool_hint().startswith("CTR 2/2")
    assert canvas.measurements() == ["cardiac 50.4 mm"]
    drag(canvas, QPointF(c.x() - 300, c.y() + 40), QPointF(c.x() + 300, c.y() + 40))  # thoracic: 600 px
    assert results == ["CTR 0.50 (cardiac 50.4 mm / thoracic 100.8 mm)"]
    assert canvas.measurements()[-1] == "thoracic 100.8 mm · CTR 0.50"
    # a third line starts a new ratio
    drag(canvas, QPointF(c.x() - 100, c.y()), QPointF(c.x() + 110, c.y()))
    assert canvas.measurements() == ["cardiac 35.3 mm"] and canvas.tool_hint().startswith("CTR 2/2")


def test_new_image_clears_measurements(qtbot, make_canvas, dicom_dir: Path) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM)
    canvas.set_tool(CanvasTool.RULER)
    drag(canvas, at_scene(canvas, 100, 100), at_scene(canvas, 400, 500))
    assert len(canvas.measurements()) == 1
    with qtbot.waitSignal(canvas.measurementChanged, timeout=1000) as blocker:
        show(canvas, dicom_dir / "udacity_nih_test2.dcm")
    assert blocker.args == [""] and canvas.measurements() == []
    assert canvas.tool() is CanvasTool.RULER  # the tool stays chosen
    drag(canvas, at_scene(canvas, 100, 100), at_scene(canvas, 100, 400))
    assert canvas.measurements()[0].endswith(" px")  # no spacing in this file


def test_flip_mirrors_on_screen_and_rotation_keeps_turning_clockwise(make_canvas, dicom_dir: Path) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM)
    vp = canvas.viewport().rect()

    def corner() -> str:  # where the image's top-left pixel is on screen
        p = canvas.mapFromScene(QPointF(0, 0))
        return ("top" if p.y() < vp.center().y() else "bottom") + "-" + ("left" if p.x() < vp.center().x() else "right")

    assert corner() == "top-left" and not canvas.flipped()
    canvas.flip_horizontal()
    assert canvas.flipped() and corner() == "top-right"
    assert "Flipped" in canvas.annotation_text()
    canvas.rotate_by(90)  # clockwise on screen: top-right goes to bottom-right
    assert corner() == "bottom-right"
    canvas.rotate_by(90)
    assert corner() == "bottom-left"
    canvas.rotate_by(-180)
    canvas.flip_horizontal()
    assert corner() == "top-left" and not canvas.flipped() and canvas.rotation == 0
    # the pixel readout and the ruler still use image coordinates on a flipped, rotated view
    canvas.flip_horizontal()
    canvas.rotate_by(90)
    seen: list[object] = []
    canvas.cursor_info.connect(seen.append)
    hover(canvas, at_scene(canvas, 300.5, 200.5))
    assert seen[-1][:2] == (300, 200)
    canvas.set_tool(CanvasTool.RULER)
    drag(canvas, at_scene(canvas, 100, 100), at_scene(canvas, 100, 700))
    assert float(canvas.measurements()[0].split()[0]) == pytest.approx(600 * 0.168, abs=0.6)
    canvas.reset_view()
    assert not canvas.flipped()


def test_magnifier_shows_the_film_under_the_cursor_enlarged(qtbot, make_canvas, dicom_dir: Path) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / "udacity_nih_test2.dcm")
    canvas.actual_size()
    loupe = canvas.findChild(type(canvas._input.magnifier))
    assert not canvas.magnifier_enabled() and not loupe.isVisible()
    canvas.set_magnifier(True)
    assert canvas.magnifier_enabled()
    display = canvas.display_array()
    c = canvas.viewport().rect().center()
    here = QPointF(c)
    hover(canvas, here)
    assert loupe.isVisible() and loupe.pos() + loupe.rect().center() + QPoint(1, 1) == c
    scene = canvas.mapToScene(c)
    shot = loupe.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    zoom = loupe.ZOOM * canvas.zoom

    def near(x: float, y: float) -> tuple[int, int]:
        xi, yi = int(np.floor(x)), int(np.floor(y))
        patch = display[yi - 1:yi + 2, xi - 1:xi + 2].astype(int)
        return patch.min() - 4, patch.max() + 4

    centre = loupe.rect().center()
    for dx, dy in ((0, 0), (30, 0), (-30, 0), (0, 30), (0, -45), (45, 45)):  # loupe pixels from its centre
        value = shot.pixelColor(centre.x() + dx, centre.y() + dy).red()
        lo, hi = near(scene.x() + dx / zoom, scene.y() + dy / zoom)
        assert lo <= value <= hi, (dx, dy, value, lo, hi)
    # flipped: what is right of the cursor on screen is left of it in the image
    canvas.flip_horizontal()
    canvas.centerOn(scene)
    hover(canvas, here)
    scene = canvas.mapToScene(c)
    shot = loupe.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    for dx in (30, 45, -45):
        value = shot.pixelColor(centre.x() + dx, centre.y()).red()
        lo, hi = near(scene.x() - dx / zoom, scene.y())
        assert lo <= value <= hi, (dx, value, lo, hi)
    canvas.set_magnifier(False)
    assert not loupe.isVisible()


def outline_ring(font: QFont, x: float, baseline: float, text: str, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Masks of the glyphs and of the one-pixel ring just outside them, where `text` is drawn."""
    mask = QImage(size[0], size[1], QImage.Format.Format_Grayscale8)
    mask.fill(0)
    p = QPainter(mask)
    path = QPainterPath()
    path.addText(QPointF(x, baseline), font, text)
    p.fillPath(path, Qt.GlobalColor.white)
    p.end()
    arr = np.array(mask.constBits(), dtype=np.uint8).reshape(size[1], mask.bytesPerLine())[:, : size[0]]
    glyph = arr > 127
    grown = glyph.copy()
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        grown |= np.roll(glyph, (dy, dx), axis=(0, 1))
    return glyph, grown & ~glyph


@pytest.mark.parametrize("film", ["white", "black"])
def test_corner_text_is_outlined_on_bright_and_dark_films(make_canvas, dicom_dir: Path, film: str) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM, size=(700, 500))
    canvas.set_window(-1000 if film == "white" else 5000, 1)  # the whole film white (or black)
    text = "WWWWMMMM Patient Name 123"
    canvas.set_annotations([text], [])
    shot = canvas.viewport().grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    w, h = shot.width(), shot.height()
    grey = np.array(shot.constBits(), dtype=np.uint8).reshape(h, shot.bytesPerLine())[:, :w]
    fm = canvas.fontMetrics()
    inside, ring = outline_ring(QFont(canvas.font()), 10, 10 + fm.ascent(), text, (w, h))
    assert ring.sum() > 200 and inside.sum() > 200
    # readable: bright letters, each wrapped all round in dark pixels (a drop shadow leaves the top-left open)
    assert grey[inside].mean() > 150, grey[inside].mean()
    assert grey[ring].mean() < 90, grey[ring].mean()
    assert np.percentile(grey[ring], 90) < 160


@pytest.mark.parametrize("size", [(560, 620), (760, 560), (420, 300)])
def test_colour_bar_stays_off_the_film(make_canvas, dicom_dir: Path, size: tuple[int, int]) -> None:  # noqa: ANN001
    canvas = make_canvas(dicom_dir / SIIM, size=size)
    canvas.set_overlay(np.zeros((16, 16, 4), np.uint8), "Cardiomegaly")
    assert canvas.colour_bar.isVisible() and canvas.fit_mode
    bar, film, vp = canvas.colour_bar.geometry(), film_on_screen(canvas), canvas.viewport().rect()
    assert vp.contains(bar) and not bar.intersects(film), (bar, film)
    assert film.left() >= 0 and film.top() >= -1 and film.bottom() <= vp.bottom() + 1
    canvas.set_overlay_visible(False)  # no bar: the film takes the room back
    assert film_on_screen(canvas).width() >= film.width()
    canvas.set_overlay_visible(True)
    assert film_on_screen(canvas) == film


def test_colour_bar_beside_the_film_in_a_1024x680_window(qtbot, make_window, dicom_dir: Path) -> None:  # noqa: ANN001
    window = make_window(size=(1024, 680))
    window.open_paths([dicom_dir / "udacity_nih_test2.dcm"])
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.overlay_shown() and canvas.colour_bar.isVisible(), timeout=60000)
    qtbot.wait(50)
    bar, film = canvas.colour_bar.geometry(), film_on_screen(canvas)
    assert canvas.viewport().rect().contains(bar)
    assert not bar.intersects(film), (bar, film, canvas.viewport().size())


def test_tool_enum_and_public_api() -> None:
    assert [t.name for t in CanvasTool] == ["PAN", "RULER", "CTR"]
    for name in ("set_tool", "tool", "flip_horizontal", "flipped", "set_magnifier", "magnifier_enabled"):
        assert callable(getattr(ImageCanvas, name))
    assert hasattr(ImageCanvas, "measurementChanged")
