"""Classical lung-field localiser: where the two lungs (and so the thorax) are on a frontal chest film.

No learned weights: intensity and geometry priors only, so it works on any film the model can read and
fails safe (``found=False``, the whole image as the box) on anything it cannot explain.

Method (on a 256 px working copy of the non-padded content, aspect not kept; the threshold ladder on a
128 px copy of it, for speed: about 10 ms of one CPU core per film at any input size):

1. Letterbox padding (exactly black rows/columns at the edges) is cut off. A film has large-scale
   structure; a blank image or noise does not (grey-level spread of a 16 x 16 summary).
2. Light smoothing, a short vertical grey opening (removes the ribs' bright bands across the lungs), and
   the large-scale trend subtracted (soft tissue over the bases, uneven exposure), so that the lungs are
   dark relative to what surrounds them.
3. The mediastinum column is the brightest column of the central band (spine + heart): the two sides
   are searched separately, cut apart along that column so the trachea cannot join the lungs.
4. For a ladder of dark thresholds (percentiles of the film), the dark regions are opened and labelled;
   regions touching the film border are air outside the body (or collimation), not lung. On each side the
   largest plausible region (size, height, not a thin strip), weighted by a prior on where a lung's centre
   lies, is the lung candidate at that threshold.
5. Per side, the ladder is climbed while the candidate keeps growing continuously and stays plausible; a
   size jump, a sudden drop of its base (a leak below the diaphragm) or its disappearance (merged with
   the air outside the body) stops the climb. A lung whose base lies far below the other's is stepped
   back down its ladder path.
6. If only one lung is found and it is large, the other hemithorax is taken to be opaque (whiteout,
   large effusion, collapse): the found lung mirrored about the mediastinum stands in (`reason` says so).
7. Outlines are smoothed (closing bridges rib notches, holes filled, thin tails cut). Each lung must be
   3-40 % of the content, taller than wide and compact; the two must overlap in height; the thorax box
   (both lungs plus a margin: 5 % of their box each side, 3 % above, 10 % below for the bases behind the
   diaphragm domes) must be 25-95 % of the content. Otherwise the result is the fallback.

Measured (tests/bench/bench_lungs.py, shared data): lungs found on 96 % of NIH and ~92 % of Kermany
films; 99.6 % of the 720 NIH radiologist boxes have their centre inside the thorax box, whose mean area
is about 0.55 of the image. Known weak spot: smooth random textures can pass as lungs (~15 % of them).

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
MARGIN = (0.05, 0.03, 0.10)  # thorax box margin: sides, top, bottom (fractions of the lungs' box)
_JUMP = 2.5
_DROP = 0.25  # a held lung whose base drops by more than this (fraction of the size) in one step leaked
_KEEP = 0.06  # ... but never below this share of the image
_CY = (0.15, 0.7)  # a lung's centroid lies between these heights (fractions of the size)
_CX = 0.08  # ... and at least this far from the side edges
_ASPECT = 5.0  # ... and is at most this many times taller than wide
_EXPECT_Y, _SPREAD = 0.42, 0.15  # prior on a lung's centre: height, spread (fractions of the size)
_MIRROR_MIN = 0.07  # a lung this large (share of the image) may stand in, mirrored, for a missing one
_MIN_STRUCTURE = 0.05  # least grey-level std of the 16 x 16 summary of a film
_MIN_TALL = 1.1  # a lung field is taller than wide (1st percentile on the shared films: 1.19)
_MIN_SOLID = 0.5  # ... and nearly convex: area / hull area (1st percentile: 0.64)
_OVERLAP = 0.5  # the two lungs overlap in height by at least this share of the shorter one
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
    the whole image when not found. `found`: whether both lungs were found; `reason` says why not (or,
    when found, how the result was completed, e.g. a mirrored lung; empty otherwise).
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
    # a film has large-scale structure (lungs, mediastinum, abdomen, background): on a 16 x 16 summary its
    # grey levels still spread (std >= 0.097 on every shared film); blank images and noise do not
    if float(cv2.resize(work, (16, 16), interpolation=cv2.INTER_AREA).std()) < _MIN_STRUCTURE:
        return None, "no large-scale structure (blank or noise)"
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


def _candidates(dark: np.ndarray, mid: int) -> dict[str, list[_Cand]]:
    """The plausible dark regions on each side of the midline (not touching the film border), best first:
    the largest, discounted away from where a lung's centre usually is."""
    n = dark.shape[0]
    count, labels, stats, cents = cv2.connectedComponentsWithStats(dark, connectivity=4)
    best: dict[str, list[_Cand]] = {"r": [], "l": []}
    if count < 2:
        return best
    x, y, w, h, area = (stats[1:, k] for k in range(5))
    cx, cy = cents[1:, 0], cents[1:, 1]
    edge = _EDGE * n
    ok = (
        (area >= 0.01 * n * n)
        & (x > edge) & (y > edge) & (x + w < n - edge) & (y + h < n - edge)  # else air outside the body
        & (cy > _CY[0] * n) & (cy < _CY[1] * n) & (h >= 0.18 * n)
        & (w >= 0.06 * n) & (h <= _ASPECT * w)  # not a thin strip (air between arm and chest)
    )
    right = ok & (cx > _CX * n) & (cx < mid - 0.04 * n)
    left = ok & (cx > mid + 0.04 * n) & (cx < (1 - _CX) * n)
    # the largest region, discounted away from where a lung's centre usually is (midway between the
    # mediastinum and the side of the film, a little above the middle)
    prior = np.exp(-0.5 * ((cy / n - _EXPECT_Y) / _SPREAD) ** 2)
    for side, sel, ex in (("r", right, mid / 2), ("l", left, (mid + n) / 2)):
        score = np.where(sel, area * prior * np.exp(-0.5 * ((cx - ex) / (_SPREAD * n)) ** 2), -1.0)
        order = [int(i) for i in np.argsort(-score)[:_MAX_CANDS] if score[i] > 0]
        best[side] = [_Cand(labels, i + 1, int(area[i]), (int(x[i]), int(y[i]), int(w[i]), int(h[i]))) for i in order]
    return best


def _plausible(c: _Cand, n: int) -> bool:
    x, y, w, h = c.box
    return (
        c.area <= _MAX_LUNG * n * n
        and h <= 0.9 * n
        and w <= 0.5 * n
        and c.area >= 0.3 * w * h  # compact: not a thin ribbon leaked along the chest wall
    )


def _climb(per_t: list[list[_Cand]], n: int) -> list[_Cand]:
    """Walk up the threshold ladder, following the held candidate's continuation (the region that
    contains it) where there is one, else the best region. Once a lung-sized candidate is held, stop at
    the first threshold where it turns implausible, jumps in size, drops suddenly downwards (a leak below
    the diaphragm) or vanishes. Returns the path of held candidates, the last one the lung."""
    path: list[_Cand] = []
    for cands in per_t:
        chosen = path[-1] if path else None
        settled = chosen is not None and chosen.area >= _SETTLED * n * n
        c = cands[0] if cands else None
        if chosen is not None:
            c = next((d for d in cands if _overlaps(chosen, d)), c)
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

    paths = {side: _climb(per_side[side], _COARSE) for side in ("r", "l")}
    names = {"r": "right", "l": "left"}
    missing = [side for side in ("r", "l") if not paths[side]]
    if len(missing) == 2:
        return _fallback(shape, "no lung field found")
    lungs = _pair(paths, _COARSE) if not missing else {side: paths[side][-1] for side in paths if paths[side]}

    masks: dict[str, np.ndarray] = {}
    for side, c in lungs.items():
        m = (c.label_img == c.label).astype(np.float32)
        m = (cv2.resize(m, (n, n), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.uint8)
        masks[side] = _smooth_lung(m)
    for side, m in masks.items():
        reason = _lung_shape(m)
        if reason:
            return _fallback(shape, f"{names[side]} lung field {reason}")
    note = ""
    if missing:
        # one hemithorax shows no aerated lung (whiteout, large effusion, collapse): if the other lung is
        # convincing, its mirror image about the mediastinum stands in for the missing field
        (side,) = missing
        other = "l" if side == "r" else "r"
        if masks[other].sum() < _MIRROR_MIN * n * n:
            return _fallback(shape, f"no {names[side]} lung field found")
        masks[side] = _mirror(masks[other], mid)
        note = f"{names[side]} lung field not visible: mirrored from the {names[other]}"
    right, left = masks["r"], masks["l"]
    ar, al = right.sum() / n**2, left.sum() / n**2
    if not (_MIN_LUNG <= ar <= _MAX_LUNG and _MIN_LUNG <= al <= _MAX_LUNG):
        return _fallback(shape, f"implausible lung sizes ({ar:.0%}, {al:.0%} of the image)")
    ry = np.flatnonzero(right.any(axis=1))
    ly = np.flatnonzero(left.any(axis=1))
    overlap = min(ry[-1], ly[-1]) - max(ry[0], ly[0])
    if overlap < _OVERLAP * min(ry[-1] - ry[0], ly[-1] - ly[0]):
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
    return LungFields(full, box, True, note)


_MAX_CANDS = 4  # regions per side and threshold considered
_COARSE = 128  # size of the threshold ladder's copy
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # opening of the dark masks (coarse pixels)
_SMOOTH_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
_SMOOTH_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_RIBS = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 9))


def _ladder(smooth: np.ndarray, mid: int) -> list[tuple[np.ndarray, dict[str, list[_Cand]]]]:
    """Per threshold of the ladder (on a _COARSE x _COARSE copy, for speed): the opened dark mask and the
    lung candidate on each side."""
    coarse = cv2.resize(smooth, (_COARSE, _COARSE), interpolation=cv2.INTER_AREA)
    mid = mid * _COARSE // smooth.shape[0]
    out = []
    for t in np.percentile(coarse, _PERCENTILES):
        dark = (coarse < t).astype(np.uint8)
        dark[:, max(mid - 1, 0) : mid + 1] = 0
        dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, _KERNEL)
        out.append((dark, _candidates(dark, mid)))
    return out


def _lung_shape(m: np.ndarray) -> str:
    """Why a (working-size) lung mask is not lung-shaped, or "" when it is."""
    pts = cv2.findNonZero(m)
    if pts is None:
        return "empty"
    x, y, w, h = cv2.boundingRect(pts)
    if h < _MIN_TALL * w:
        return f"wider than tall ({w} x {h})"
    hull = cv2.contourArea(cv2.convexHull(pts))
    solidity = float(m.sum()) / max(hull, 1.0)
    if solidity < _MIN_SOLID:
        return f"not compact (solidity {solidity:.2f})"
    return ""


def _mirror(mask: np.ndarray, mid: int) -> np.ndarray:
    """The mask reflected about column `mid` (what falls outside the image is dropped)."""
    n = mask.shape[1]
    src = 2 * mid - np.arange(n)
    valid = (src >= 0) & (src < n)
    out = np.zeros_like(mask)
    out[:, valid] = mask[:, src[valid]]
    return out


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
