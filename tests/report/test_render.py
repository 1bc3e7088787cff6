"""The annotated image: heat map on the fixed scale, colour bar, panel and footer, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.imaging import to_display
from cxrviewer.model import colormap
from cxrviewer.report.reading import reading_order
from cxrviewer.report.render import (
    BACKGROUND,
    DEFAULT_ALPHA,
    colour_bar,
    colour_bar_geometry,
    overlay,
    render,
    render_figure,
    scale_colours,
    working_scale,
)


def test_scale_runs_from_dark_to_red() -> None:
    lo, mid, hi = scale_colours(np.array([0.0, 0.5, 1.0])).astype(int)
    assert lo.max() < 80  # dark at 0
    assert hi[0] > 100 and hi[2] < 50  # dark red at 1
    assert mid[1] > 200  # green-ish in the middle


def test_overlay_leaves_cold_pixels_and_colours_hot_ones() -> None:
    gray = np.full((8, 8), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 3] = 1.0
    out = overlay(gray, heat, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert (out[heat == 0] == 100).all()  # value 0: untouched grey
    expected = np.rint(0.5 * 100 + 0.5 * scale_colours(np.array([1.0]))[0].astype(float))
    assert np.array_equal(out[2, 3], expected.astype(np.uint8))
    with pytest.raises(ValueError, match="shape"):
        overlay(gray, heat[:4])


@pytest.mark.parametrize("opacity", [0.1, DEFAULT_ALPHA, 1.0])
def test_colour_bar_pixels_are_the_viewers_scale(opacity: float) -> None:
    """One scale everywhere: every row of the exported bar is colormap's bar colour for its value (the
    viewer's ColourBar paints the same colours), plain backdrop grey below the 50 % floor."""
    bar = colour_bar(1024, opacity=opacity)
    geo = colour_bar_geometry(1024)
    rows = np.arange(geo.top, geo.bottom)
    values = np.array([geo.value_at(r) for r in rows], dtype=np.float32)
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.0)
    inside = bar[geo.top:geo.bottom, geo.x0:geo.x0 + geo.width].astype(int)
    expected = colormap.bar_colours(values, opacity).astype(int)
    assert np.abs(inside - expected[:, None, :]).max() == 0
    below = values < colormap.ALPHA_LOW - 0.01
    assert (inside[below] == np.array(colormap.BAR_BACKDROP)).all()  # nothing is drawn below 50 %
    top = inside[0, 0]
    assert top[0] > top[2] + 25  # red at 100 % (at the opacity the heat map is drawn with)
    assert not (inside[..., 2] > inside[..., 0] + 60).any()  # no blue end of a rainbow


def test_exports_carry_the_same_bar(udacity, udacity_prediction) -> None:
    display = to_display(udacity)
    label = next(f.label for f in udacity_prediction.findings if f.positive)
    figure = render_figure(display, udacity_prediction.cam(label), alpha=DEFAULT_ALPHA)
    height = figure.shape[0]
    bar = colour_bar(height, opacity=DEFAULT_ALPHA)
    assert np.array_equal(figure[:, -bar.shape[1]:], bar)


def test_working_scale_keeps_text_legible() -> None:
    assert working_scale(256, 256) == pytest.approx(4.0)
    assert working_scale(1024, 1024) == 1.0
    assert working_scale(1841, 1955) == 1.0
    assert working_scale(4096, 3000) == pytest.approx(0.5)


def test_render_shows_the_selected_map_and_panel(udacity, udacity_prediction) -> None:
    display = to_display(udacity)
    positive = [f.label for f in udacity_prediction.findings if f.positive]
    negative = [f.label for f in udacity_prediction.findings if not f.positive]
    with_map = render(display, udacity_prediction, label=positive[0], model_name="m 1")
    no_map = render(display, udacity_prediction, label=negative[0], model_name="m 1")  # below its cutoff
    h, w = display.shape
    assert with_map.dtype == np.uint8 and with_map.ndim == 3 and with_map.shape[2] == 3
    assert with_map.shape[0] > h and with_map.shape[1] > w  # footer below, colour bar + panel beside
    grey_region = no_map[:h, :w]
    assert (grey_region[..., 0] == grey_region[..., 1]).all()  # no map drawn: pure grey
    assert np.array_equal(grey_region[..., 0], display)
    # The image part is exactly the engine's map for that label blended over the display.
    heat = udacity_prediction.cam(positive[0])
    assert np.array_equal(with_map[:h, :w], overlay(display, heat, DEFAULT_ALPHA))
    assert np.abs(with_map[:h, :w].astype(int) - grey_region.astype(int)).max() > 50
    # The panel and footer hold text: not a blank background.
    panel = with_map[:h, w + 60:]
    assert (np.abs(panel.astype(int) - np.array(BACKGROUND)).sum(axis=2) > 100).mean() > 0.005
    footer = with_map[h:]
    assert (np.abs(footer.astype(int) - np.array(BACKGROUND)).sum(axis=2) > 100).any()


def test_render_default_map_is_the_first_finding_of_the_reading_order(udacity, udacity_prediction) -> None:
    display = to_display(udacity)
    top = reading_order(udacity_prediction.findings)[0].label  # flagged furthest above its cutoff; never No Finding
    assert top != "No Finding"
    assert np.array_equal(render(display, udacity_prediction), render(display, udacity_prediction, label=top))


def test_render_of_a_rejected_image_draws_no_map(engine, dicom_dir) -> None:
    from cxrviewer.imaging import load_image

    ct = load_image(dicom_dir / "edge_cases" / "udacity_nih_test5.dcm")
    pred = engine.predict(ct)
    assert pred.gate.status == "rejected"
    display = to_display(ct)
    out = render(display, pred)
    h, w = display.shape
    assert np.array_equal(out[:h, :w, 1], display)


def test_small_images_are_enlarged(udacity) -> None:
    import cv2

    small = cv2.resize(to_display(udacity), (256, 200), interpolation=cv2.INTER_AREA)
    fig = render_figure(small, None)
    assert fig.shape[0] == 800  # long side 256 -> 1024
    out = render(small, None)
    assert out.shape[0] > 800


def test_render_rejects_non_grey_input() -> None:
    with pytest.raises(ValueError, match="8-bit grey"):
        render(np.zeros((10, 10, 3), np.uint8), None)
