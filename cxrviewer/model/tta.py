"""Test-time augmentation: small zooms and shifts of the letterboxed input, logits averaged.

No flips: chest anatomy is not left-right symmetric (heart, aortic knob). The views are resampled from the
normalised model input with black (not grey) padding, like the letterbox margins the network was trained on.
Class-activation maps always come from the identity view, so their geometry is the plain letterbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrviewer.model.preprocess import MEAN, STD

if TYPE_CHECKING:  # torch loads when a view is computed, not for a card that names views
    import torch

#: name -> (zoom, shift x, shift y); shifts as fractions of the input side, zoom > 1 magnifies.
VIEWS: dict[str, tuple[float, float, float]] = {
    "identity": (1.0, 0.0, 0.0),
    "zoom_in": (1.1, 0.0, 0.0),
    "zoom_out": (0.9, 0.0, 0.0),
    "shift_left": (1.0, -0.05, 0.0),
    "shift_right": (1.0, 0.05, 0.0),
    "shift_up": (1.0, 0.0, -0.05),
    "shift_down": (1.0, 0.0, 0.05),
}
BLACK = (0.0 - MEAN) / STD  # a letterbox margin in normalised units


def tta_views(views: tuple[str, ...] | list[str]) -> list[str]:
    """The views to run, identity first (its feature map gives the CAMs); unknown names raise ValueError."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown test-time augmentation views: {', '.join(unknown)}")
    return ["identity", *[v for v in views if v != "identity"]]


def view_grid(views: list[str], x: torch.Tensor) -> torch.Tensor:
    """The sampling grid of `view_batch` for inputs shaped like `x` (a constant of the ONNX export)."""
    import torch
    from torch.nn import functional as F

    b = x.shape[0]
    thetas = []
    for name in views:
        zoom, sx, sy = VIEWS[name]
        # affine_grid maps output to input coordinates in [-1, 1]: input = out / zoom - 2 * shift
        thetas.append(torch.tensor([[1 / zoom, 0.0, -2 * sx], [0.0, 1 / zoom, -2 * sy]], dtype=x.dtype))
    theta = torch.stack(thetas).to(x.device).repeat_interleave(b, dim=0)
    return F.affine_grid(theta, [len(views) * b, *x.shape[1:]], align_corners=False)


def sample_views(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) -> (V * B, 1, S, S) resampled on `view_grid`'s grid, black outside the film."""
    from torch.nn import functional as F

    views = grid.shape[0] // x.shape[0]
    shifted = x.repeat(views, 1, 1, 1) - BLACK  # so that zero padding is black
    return F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + BLACK


def view_batch(x: torch.Tensor, views: list[str]) -> torch.Tensor:
    """(B, 1, S, S) normalised inputs -> (V * B, 1, S, S), view-major."""
    return sample_views(x, view_grid(views, x))


def tta_logits(net: torch.nn.Module, x: torch.Tensor, views: list[str]) -> torch.Tensor:
    """Mean logits over `views` (B, L); the identity view alone when `views` is ["identity"]."""
    if views == ["identity"]:
        return net(x)
    out = net(view_batch(x, views))
    return out.view(len(views), x.shape[0], -1).mean(0)
