"""Test-time augmentation views: geometry, black padding, identity first."""

from __future__ import annotations

import pytest
import torch

from cxrviewer.model.tta import BLACK, tta_logits, tta_views, view_batch


def test_identity_view_is_the_input_and_zoom_scales_about_the_centre() -> None:
    x = torch.full((1, 1, 64, 64), BLACK)
    x[..., 24:40, 24:40] = 2.0  # a bright centred square of side 16
    out = view_batch(x, ["identity", "zoom_in", "zoom_out", "shift_right"])
    assert torch.allclose(out[0], x[0], atol=1e-5)
    side = [int((v[0, 32] > 0).sum()) for v in out]
    assert side[1] > side[0] > side[2]  # 1.1x larger, 0.9x smaller
    cols = torch.nonzero(out[3][0, 32] > 0).flatten()
    assert int(cols.min()) > 24  # shifted right
    assert torch.allclose(out[2][0, 0, 0], torch.tensor(BLACK))  # margins are black, not grey


def test_views_identity_first_and_unknown_refused() -> None:
    assert tta_views(("zoom_in", "identity")) == ["identity", "zoom_in"]
    assert tta_views(()) == ["identity"]
    with pytest.raises(ValueError, match="hflip"):
        tta_views(("hflip",))


def test_tta_logits_average_the_views() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.randn(3, 1, 4, 4)
    views = ["identity", "zoom_in"]
    expected = net(view_batch(x, views)).view(2, 3, 2).mean(0)
    assert torch.allclose(tta_logits(net, x, views), expected)
    assert torch.allclose(tta_logits(net, x, ["identity"]), net(x))
