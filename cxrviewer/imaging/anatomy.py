"""Classical lung-field localiser: where the two lungs (and so the thorax) are on a frontal chest film.

No learned weights: intensity and geometry priors only, so it works on any film the model can read and
fails safe (``found=False``, the whole image as the box) on anything it cannot explain.

Method (on a ~256 px working copy of the non-padded content, aspect not kept):

1. Letterbox padding (exactly black rows/columns at the edges) is cut off; the rest is smoothed and
   its robust intensity range checked (a uniform image or pure noise has no lungs to find).
2. The mediastinum column is the brightest column of the central band (spine + heart): the two sides
   are searched separately, cut apart along that column so the trachea cannot join the lungs.
3. For a ladder of dark thresholds (percentiles of the film), the dark regions are opened and labelled;
   regions touching the film border are air outside the body (or collimation), not lung. On each side the
   largest plausible region (position, height, size) is the lung candidate at that threshold.
4. Per side, the threshold ladder is climbed while the candidate keeps growing smoothly and stays
   plausible; a sudden jump (leak into the abdomen, the axilla or the other side) stops the climb.
5. Both lungs must be found, each 3-40 % of the content, their box 25-95 % of it, and they must lie
   left and right of the midline at overlapping heights; otherwise the result is the fallback.

`find_lung_fields` returns `LungFields`: the lung mask, the thorax box (bounding box of both lungs, so
it contains the heart and mediastinum), `thorax_mask()` (filled hull of both lungs) and `outline()`
(contours for an overlay). Image right = patient left on a PA/AP film: nothing here depends on which.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_TREND = 32.0  # sigma (working pixels) of the large-scale trend removed before thresholding
_SETTLED = 0.04
MARGIN = (0.04, 0.02, 0.12)  # thorax box margin: sides, top, bottom (fractions of the lungs' box)
_JUMP = 2.5
_DROP = 0.12  # a held lung whose base drops by more than this (fraction of the size) in one step leaked
_KEEP = 0.06  # ... but never below this share of the image
_BASES = 0.2  # the two lungs' bases differ by at most this much (fraction of the size)
_EDGE = 0.015  # regions this close (fraction of the size) to the film border count as touching it
WORK = 256  # the content is squashed to WORK x WORK working pixels (aspect not kept)
_PERCENTILES = tuple(range(8, 66, 3))  # dark-threshold ladder, percentiles of the smoothed film
_MIN_LUNG, _MAX_LUNG = 0.03, 0.40  # each lung, fraction of the content area
_MIN_BOX, _MAX_BOX = 0.25, 0.95  # thorax box, fraction of the content area
_PAD_LEVEL = 1.0 / 255.0  # letterbox padding is zero; anything at most one 8-bit step counts as padding


@dataclass(frozen=True)
class LungFields:
    """The localiser's answer, in input pixels.

    `mask`: bool, the input's shape, True on the two lung fields (empty when not found).
    `box`: (x0, y0, x1, y1), exclusive ends: the thorax (both lungs, heart and mediastinum between them);
    the whole image when not found. `found`: whether both lungs were found; `reason` says why not.
    """

    mask: np.ndarray
    box: tuple[int, int, int, int]
    found: bool
    reason: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    def thorax_mask(self, dilate: float = 0.02) -> np.ndarray:
        """Filled convex hull of both lungs, dilated by `dilate` x the image's longer side (bool, input shape).

        All True when the lungs were not found (the safe fallback: nothing is excluded)."""
        h, w = self.mask.shape
        if not self.found:
            return np.ones((h, w), dtype=bool)
        pts = cv2.findNonZero(self.mask.astype(np.uint8))
        out = np.zeros((h, w), dtype=np.uint8)
        if pts is None:
            return np.ones((h, w), dtype=bool)
        hull = cv2.convexHull(pts)
        cv2.fillConvexPoly(out, hull, 1)
        r = int(round(dilate * max(h, w)))
        if r > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            out = cv2.dilate(out, kernel)
        return out.astype(bool)

    def outline(self) -> list[np.ndarray]:
        """The lung outlines as a list of N x 2 int32 (x, y) contours in input pixels (empty when not found)."""
        if not self.found:
            return []
        contours, _ = cv2.findContours(self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return [c.reshape(-1, 2).astype(np.int32) for c in contours if len(c) >= 3]


def _fallback(shape: tuple[int, int], reason: str) -> LungFields:
    h, w = shape
    return LungFields(np.zeros((h, w), dtype=bool), (0, 0, w, h), False, reason)


def _content_box(image01: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the image without letterbox padding (rows/columns that are all black)."""
    live = image01 > _PAD_LEVEL
    rows = np.flatnonzero(live.any(axis=1))
    cols = np.flatnonzero(live.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _prepare(img: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int, int, int] | str]:
    """The smoothed, rib-suppressed, contrast-stretched WORK x WORK copy of the content and its box
    in input pixels; (None, reason) when there is nothing to analyse."""
    x0, y0, x1, y1 = _content_box(img)
    cw, ch = x1 - x0, y1 - y0
    if cw < 32 or ch < 32:
        return None, "no image content"
    content = img[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if max(cw, ch) > WORK else cv2.INTER_LINEAR
    work = cv2.resize(np.ascontiguousarray(content), (WORK, WORK), interpolation=interp)
    smooth = cv2.GaussianBlur(work, (0, 0), 1.5)
    # grey opening with a short vertical bar: removes the ribs (thin, roughly horizontal bright bands
    # across the lung) and keeps the chest wall, mediastinum and diaphragm
    smooth = cv2.morphologyEx(smooth, cv2.MORPH_OPEN, _RIBS)
    # flatten: subtract the large-scale trend (soft tissue over the bases, uneven exposure) so the lungs
    # are dark relative to what surrounds them; the trend is blurred at a quarter of the size (speed)
    small = cv2.resize(smooth, (WORK // 4, WORK // 4), interpolation=cv2.INTER_AREA)
    trend = cv2.resize(cv2.GaussianBlur(small, (0, 0), _TREND / 4), (WORK, WORK), interpolation=cv2.INTER_LINEAR)
    smooth = smooth - trend
    lo, hi = np.percentile(smooth, (1, 99))
    if hi - lo < 0.05:
        return None, "no contrast"
    return (smooth - lo) / (hi - lo), (x0, y0, x1, y1)


def _midline(smooth: np.ndarray) -> int:
    """Column of the mediastinum: brightest column of the central band over the chest's middle rows."""
    n = smooth.shape[1]
    prof = smooth[int(0.25 * n) : int(0.75 * n)].mean(axis=0)
    prof = np.convolve(prof, np.ones(9) / 9, mode="same")
    lo, hi = int(0.35 * n), int(0.65 * n)
    return lo + int(np.argmax(prof[lo:hi]))


@dataclass
class _Cand:
    label_img: np.ndarray
    label: int
    area: int
    box: tuple[int, int, int, int]  # x, y, w, h


def _candidates(dark: np.ndarray, mid: int) -> dict[str, _Cand | None]:
    """Largest plausible dark region on each side of the midline (not touching the film border)."""
    n = dark.shape[0]
    count, labels, stats, cents = cv2.connectedComponentsWithStats(dark, connectivity=4)
    best: dict[str, _Cand | None] = {"r": None, "l": None}
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < 0.01 * n * n:
            continue
        if x <= _EDGE * n or y <= _EDGE * n or x + w >= (1 - _EDGE) * n or y + h >= (1 - _EDGE) * n:
            continue  # air outside the body or collimation
        cx, cy = cents[i]
        if not (0.12 * n < cy < 0.75 * n) or h < 0.18 * n:
            continue
        side = "r" if cx < mid else "l"
        if side == "r" and not (0.04 * n < cx < mid - 0.04 * n):
            continue
        if side == "l" and not (mid + 0.04 * n < cx < 0.96 * n):
            continue
        cur = best[side]
        if cur is None or area > cur.area:
            best[side] = _Cand(labels, i, area, (x, y, w, h))
    return best


def _plausible(c: _Cand, n: int) -> bool:
    x, y, w, h = c.box
    return (
        c.area <= _MAX_LUNG * n * n
        and h <= 0.9 * n
        and w <= 0.5 * n
        and c.area >= 0.3 * w * h  # compact: not a thin ribbon leaked along the chest wall
    )


def _climb(per_t: list[_Cand | None], n: int) -> list[_Cand]:
    """Walk up the threshold ladder; once a lung-sized candidate is held, stop at the first threshold
    where it turns implausible, jumps in size, drops suddenly downwards (a leak below the diaphragm)
    or is replaced by another region. Returns the path of held candidates, the last one the lung."""
    path: list[_Cand] = []
    for c in per_t:
        chosen = path[-1] if path else None
        settled = chosen is not None and chosen.area >= _SETTLED * n * n
        if c is None or not _plausible(c, n):
            if settled:
                break
            continue
        if chosen is None:
            path.append(c)
            continue
        continuous = _overlaps(chosen, c)
        if settled and (c.area > _JUMP * chosen.area or not continuous or _bottom(c) - _bottom(chosen) > _DROP * n):
            break
        if continuous or c.area > chosen.area:
            if not continuous:
                path.clear()
            path.append(c)
    return path


def _bottom(c: _Cand) -> int:
    return c.box[1] + c.box[3]


def _pair(paths: dict[str, list[_Cand]], n: int) -> dict[str, _Cand]:
    """The two lungs' bases lie at similar heights: a lung reaching far below the other has leaked into
    the abdomen; step it back down its ladder path until its base is within _BASES of the other's."""
    right, left = paths["r"][-1], paths["l"][-1]
    for side, other in (("r", left), ("l", right)):
        path = paths[side]
        limit = _bottom(other) + _BASES * n
        while len(path) > 1 and _bottom(path[-1]) > limit and path[-2].area >= _KEEP * n * n:
            path.pop()
    return {side: paths[side][-1] for side in ("r", "l")}


def _overlaps(a: _Cand, b: _Cand) -> bool:
    ma = a.label_img == a.label
    return bool((b.label_img[ma] == b.label).mean() > 0.7)


def find_lung_fields(image01: np.ndarray) -> LungFields:
    """Locate the two lung fields on a frontal chest film (2-D float image in [0, 1], air dark)."""
    img = np.asarray(image01)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {img.shape}")
    shape = (int(img.shape[0]), int(img.shape[1]))
    if min(shape) < 32:
        return _fallback(shape, "image too small")
    img = np.nan_to_num(img.astype(np.float32, copy=False), nan=0.0)
    smooth, content = _prepare(img)
    if smooth is None:
        return _fallback(shape, content)
    x0, y0, x1, y1 = content
    cw, ch = x1 - x0, y1 - y0
    n = WORK

    mid = _midline(smooth)
    ladder = _ladder(smooth, mid)
    per_side = {side: [c[side] for _, c in ladder] for side in ("r", "l")}

    paths = {side: _climb(per_side[side], n) for side in ("r", "l")}
    if not paths["r"] or not paths["l"]:
        missing = " and ".join(name for side, name in (("r", "right"), ("l", "left")) if not paths[side])
        return _fallback(shape, f"no {missing} lung field found")
    lungs = _pair(paths, n)

    masks = []
    for side in ("r", "l"):
        c = lungs[side]
        assert c is not None
        m = (c.label_img == c.label).astype(np.uint8)
        m = _smooth_lung(m)
        masks.append(m)
    right, left = masks
    ar, al = right.sum() / n**2, left.sum() / n**2
    if not (_MIN_LUNG <= ar <= _MAX_LUNG and _MIN_LUNG <= al <= _MAX_LUNG):
        return _fallback(shape, f"implausible lung sizes ({ar:.0%}, {al:.0%} of the image)")
    ry = np.flatnonzero(right.any(axis=1))
    ly = np.flatnonzero(left.any(axis=1))
    overlap = min(ry[-1], ly[-1]) - max(ry[0], ly[0])
    if overlap < 0.5 * min(ry[-1] - ry[0], ly[-1] - ly[0]):
        return _fallback(shape, "lung fields at different heights")
    both = right | left
    ys = np.flatnonzero(both.any(axis=1))
    xs = np.flatnonzero(both.any(axis=0))
    # the thorax box: both lungs plus a margin (bases hidden behind the diaphragm domes, effusions)
    bx0, by0, bx1, by1 = xs[0], ys[0], xs[-1] + 1, ys[-1] + 1
    bw, bh = bx1 - bx0, by1 - by0
    bx0, bx1 = bx0 - MARGIN[0] * bw, bx1 + MARGIN[0] * bw
    by0, by1 = by0 - MARGIN[1] * bh, by1 + MARGIN[2] * bh
    bx0, by0, bx1, by1 = max(bx0, 0.0), max(by0, 0.0), min(bx1, float(n)), min(by1, float(n))
    box_frac = (bx1 - bx0) * (by1 - by0) / n**2
    if not (_MIN_BOX <= box_frac <= _MAX_BOX):
        return _fallback(shape, f"implausible thorax box ({box_frac:.0%} of the image)")
    sx, sy = cw / n, ch / n
    box = (
        x0 + max(0, int(np.floor(bx0 * sx))),
        y0 + max(0, int(np.floor(by0 * sy))),
        x0 + min(cw, int(np.ceil(bx1 * sx))),
        y0 + min(ch, int(np.ceil(by1 * sy))),
    )
    # back to input pixels
    full = np.zeros(shape, dtype=bool)
    up = cv2.resize(both.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR) >= 0.5
    full[y0:y1, x0:x1] = up
    if not full.any():
        return _fallback(shape, "lung fields vanished when scaled to the image")
    return LungFields(full, box, True, "")


_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_SMOOTH_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
_SMOOTH_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_RIBS = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 9))


def _ladder(smooth: np.ndarray, mid: int) -> list[tuple[np.ndarray, dict[str, _Cand | None]]]:
    """Per threshold of the ladder: the opened dark mask and the lung candidate on each side."""
    out = []
    for t in np.percentile(smooth, _PERCENTILES):
        dark = (smooth < t).astype(np.uint8)
        dark[:, max(mid - 1, 0) : mid + 2] = 0
        dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, _KERNEL)
        out.append((dark, _candidates(dark, mid)))
    return out


def _debug_ladder(image01: np.ndarray) -> tuple[np.ndarray, int, list[tuple[np.ndarray, dict[str, _Cand | None]]]]:
    """For tuning by eye: the working image, its midline and the threshold ladder."""
    smooth, _ = _prepare(np.asarray(image01, dtype=np.float32))
    assert smooth is not None
    mid = _midline(smooth)
    return smooth, mid, _ladder(smooth, mid)


def _smooth_lung(m: np.ndarray) -> np.ndarray:
    """Lung outline clean-up: bridge the rib notches, fill holes, cut thin tails; keep the largest part."""
    pad = _SMOOTH_CLOSE.shape[0]
    m = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _SMOOTH_CLOSE)
    m = _fill_holes(m)
    opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, _SMOOTH_OPEN)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=4)
    if count > 1:
        m = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    return np.ascontiguousarray(m[pad:-pad, pad:-pad])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a binary uint8 mask (flood the background from a padded border)."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), dtype=np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return (mask.astype(bool) | holes).astype(np.uint8)
