"""Counterfactual devices painted on a film: the film's findings do not change, only the hardware on it.

Placement follows the thorax box of the lung-field localiser (`paint.Frame`); image left is the patient's
right on a frontal film. Sizes are fractions of the thorax width (W) or of the film's longer side (S):

- ECG leads: 3-5 electrodes (ring of radius 0.035 W with a bright snap) at the shoulders and the lower lateral
  chest, each with a wire (0.004 S) curving off the film.
- Central line: a thin catheter (0.004 S) from the right or left internal jugular or subclavian entry, its
  tip in the superior vena cava (right of the midline, a third of the way down the thorax), with its external
  tubing running off the top of the film.
- Tubes: an endotracheal tube (two walls 0.03 W apart plus a radio-opaque stripe) down the midline to above
  the carina, and a nasogastric tube down the oesophagus, under the left hemidiaphragm into the stomach.
- Clips: 3-8 surgical clips (short dense bars, 0.03 W long) clustered in the upper mediastinum, an axilla or
  the upper abdomen.
- Chest drain (a diagnostic: NIH's Pneumothorax labels are known to follow drains): a wide tube (0.04 W)
  from the lateral chest wall toward the apex, with a radio-opaque stripe.

Each function returns the painted film and the coverage (float32 0..1; > 0 exactly where pixels changed).
"""

from __future__ import annotations

import numpy as np

from cxrviewer.train.shift.paint import Canvas, Frame, Point, bezier, offset, paint

Painted = tuple[np.ndarray, np.ndarray]


def _jitter(rng: np.random.Generator, p: Point, frame: Frame, amount: float) -> Point:
    return (p[0] + rng.uniform(-amount, amount) * frame.bw, p[1] + rng.uniform(-amount, amount) * frame.bh)


def _edge_exit(rng: np.random.Generator, frame: Frame, start: Point) -> Point:
    """A point just outside the film edge nearest to `start` (top or the nearer side)."""
    x, y = start
    if y < frame.y0 + 0.45 * frame.bh and rng.random() < 0.6:
        return x + rng.uniform(-0.2, 0.2) * frame.bw, -5.0
    return (-5.0 if x < frame.width / 2 else frame.width + 5.0), y + rng.uniform(-0.25, 0.15) * frame.bh


def _wire(rng: np.random.Generator, frame: Frame, start: Point, end: Point) -> np.ndarray:
    """A slack wire from start to end: a cubic curve with random sag."""
    (x0, y0), (x1, y1) = start, end
    bend = frame.bw * 0.15
    c1 = (x0 + (x1 - x0) * 0.3 + rng.uniform(-bend, bend), y0 + (y1 - y0) * 0.3 + rng.uniform(-bend, bend))
    c2 = (x0 + (x1 - x0) * 0.7 + rng.uniform(-bend, bend), y0 + (y1 - y0) * 0.7 + rng.uniform(-bend, bend))
    return bezier([start, c1, c2, end], 64)


def _union(*alphas: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum.reduce(alphas), dtype=np.float32)


def ecg_leads(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> Painted:
    sites = [(0.05, 0.02), (0.95, 0.02), (0.9, 0.78), (0.12, 0.82), (0.65, 0.6)]
    chosen = rng.choice(len(sites), size=int(rng.integers(3, 6)), replace=False)
    wire_t, radius = frame.stroke(0.004), 0.035 * frame.bw
    rings, snaps, wires = Canvas(film.shape), Canvas(film.shape), Canvas(film.shape)
    for i in sorted(int(c) for c in chosen):
        centre = _jitter(rng, frame.at(*sites[i]), frame, 0.05)
        rings.circle(centre, radius, max(1, wire_t))
        snaps.circle(centre, 0.35 * radius, -1)
        wires.polyline(_wire(rng, frame, centre, _edge_exit(rng, frame, centre)), wire_t)
    opacity = min(1.0, 0.8 * severity)
    out = paint(film, rings.alpha, 0.9, opacity)
    out = paint(out, wires.alpha, 0.95, opacity)
    out = paint(out, snaps.alpha, 1.0, min(1.0, 0.95 * severity))
    return out, _union(rings.alpha, snaps.alpha, wires.alpha)


def central_line(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> Painted:
    right = rng.random() < 0.7  # patient's right (image left) is the usual side
    jugular = rng.random() < 0.5
    sx = -1.0 if right else 1.0  # image direction of the patient's side
    tip = frame.at(0.5 - rng.uniform(0.04, 0.08), rng.uniform(0.25, 0.35))
    if jugular:
        entry = (frame.mid + sx * 0.12 * frame.bw, frame.y0 - 0.04 * frame.bh)
        ctrl = [(entry[0], frame.y0 + 0.1 * frame.bh), (tip[0], frame.y0 + 0.1 * frame.bh)]
    else:
        entry = (frame.mid + sx * 0.3 * frame.bw, frame.y0 + 0.06 * frame.bh)
        ctrl = [(frame.mid + sx * 0.18 * frame.bw, frame.y0 + 0.02 * frame.bh),
                (tip[0], frame.y0 + 0.08 * frame.bh)]
    inside = bezier([entry, *ctrl, tip], 64)
    outside = _wire(rng, frame, entry, (entry[0] + sx * rng.uniform(0.1, 0.3) * frame.bw, -5.0))
    canvas = Canvas(film.shape).polyline(inside, frame.stroke(0.004)).polyline(outside, frame.stroke(0.006))
    return paint(film, canvas.alpha, 0.95, min(1.0, 0.8 * severity)), canvas.alpha


def tubes(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> Painted:
    thin = frame.stroke(0.004)
    # Endotracheal tube: from above the film to 3-7 cm above the carina (about 0.12-0.22 of the thorax height).
    ett_x = frame.mid + rng.uniform(-0.02, 0.02) * frame.bw
    ett_tip = (ett_x + rng.uniform(-0.01, 0.01) * frame.bw, frame.y0 + rng.uniform(0.12, 0.22) * frame.bh)
    ett = bezier([(ett_x + rng.uniform(-0.04, 0.04) * frame.bw, -5.0), (ett_x, frame.y0 - 0.1 * frame.bh),
                  ett_tip], 48)
    half = 0.015 * frame.bw
    walls = Canvas(film.shape).polyline(offset(ett, -half), thin).polyline(offset(ett, half), thin)
    stripe = Canvas(film.shape).polyline(offset(ett, half * 0.6), thin)
    # Nasogastric tube: down the oesophagus (just left of the midline), under the left hemidiaphragm.
    oes = frame.mid + rng.uniform(0.0, 0.03) * frame.bw
    stomach = (frame.mid + rng.uniform(0.18, 0.3) * frame.bw, frame.y1 + rng.uniform(0.04, 0.1) * frame.bh)
    ngt = bezier([(oes - 0.03 * frame.bw, -5.0), (oes, frame.y0 + 0.3 * frame.bh), (oes, frame.y1 - 0.05 * frame.bh),
                  (stomach[0] - 0.1 * frame.bw, frame.y1 + 0.1 * frame.bh), stomach], 96)
    ng = Canvas(film.shape).polyline(ngt, thin)
    opacity = min(1.0, 0.85 * severity)
    out = paint(film, walls.alpha, 0.85, 0.5 * opacity)
    out = paint(out, stripe.alpha, 1.0, opacity)
    out = paint(out, ng.alpha, 0.95, opacity)
    return out, _union(walls.alpha, stripe.alpha, ng.alpha)


def clips(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> Painted:
    sites = [(0.42, 0.12), (0.1, 0.22), (0.9, 0.22), (0.65, 1.02)]
    centre = frame.at(*sites[int(rng.integers(len(sites)))])
    length, thick = 0.03 * frame.bw, max(2, frame.stroke(0.008))
    canvas = Canvas(film.shape)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = centre[0] + rng.normal(0, 0.05) * frame.bw, centre[1] + rng.normal(0, 0.05) * frame.bh
        angle = rng.uniform(0, np.pi)
        dx, dy = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
        canvas.polyline(np.array([[cx - dx, cy - dy], [cx + dx, cy + dy]]), thick)
    return paint(film, canvas.alpha, 1.0, min(1.0, 0.95 * severity)), canvas.alpha


def chest_drain(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> Painted:
    right = rng.random() < 0.5

    def fx(f: float) -> float:  # the path for the patient's right, mirrored for the left
        return f if right else 1.0 - f

    entry = frame.at(fx(0.02), rng.uniform(0.6, 0.75))
    apex = frame.at(fx(rng.uniform(0.22, 0.32)), rng.uniform(0.08, 0.16))
    body = bezier([entry, frame.at(fx(0.08), 0.35), apex], 64)
    ext = _wire(rng, frame, entry, (-5.0 if right else frame.width + 5.0, entry[1] + 0.15 * frame.bh))
    half, thin = 0.02 * frame.bw, frame.stroke(0.004)
    walls = Canvas(film.shape).polyline(offset(body, -half), thin).polyline(offset(body, half), thin)
    walls.polyline(ext, frame.stroke(0.012))
    stripe = Canvas(film.shape).polyline(offset(body, 0.3 * half), thin)
    opacity = min(1.0, 0.85 * severity)
    out = paint(film, walls.alpha, 0.85, 0.6 * opacity)
    out = paint(out, stripe.alpha, 1.0, opacity)
    return out, _union(walls.alpha, stripe.alpha)
