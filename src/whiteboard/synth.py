"""Synthetic whiteboard frames with per-pixel labels.

generate(seed) renders one camera frame of a whiteboard scene and returns:
  image   HxWx3 uint8 RGB   the degraded camera frame
  label   HxW   uint8       CLASS_BOARD / CLASS_INK / CLASS_FOREGROUND
  clean   HxWx3 uint8 RGB   the ideal board behind any foreground (white board, true ink colours)
  regions dict of HxW bool  where a condition applies: glare, shadow, occluder, faint

Everything is drawn from np.random.default_rng(seed), so a seed always gives the same frame.

The scene is built like a photograph:
  board plane (ink layers, ghosts, stains) -> perspective onto the frame
  -> the room (wall, doors, windows, posters, furniture, floor), the board's frame and bevel, the marker tray
     with markers and erasers, magnets
  -> illumination (gradient, vignetting, colour cast), cast shadows, specular glare
  -> people (folded, patterned clothing, skin, hair, arms across the board, close-ups entering from a frame
     edge) and objects in front -> camera (blur, resampling, noise, JPEG).
Class "board" means static background that is not writing: board surface, its frame and tray (markers lying
on it included), the room; "foreground" means anything in front of the board (people, objects, magnets).

Ink label: a pixel is ink when the stroke covers at least half of it (the stroke's half-maximum width, so
label width does not depend on contrast) and the marker visibly darkens the board there: darkness of at
least INK_VISIBLE_DARKNESS after half-dry streaks and after glare has washed it out.

Colours are reflectances relative to a clean white board: after the board is normalised in real
photographs "black" marker lands around 40-120 of 255, red looks pinkish, teal/green are common.
"""
from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_BOARD, CLASS_INK, CLASS_FOREGROUND = 0, 1, 2
CLASS_NAMES = ("board", "ink", "foreground")
CONDITIONS = ("glare", "shadow", "occluder", "faint")

HERSHEY_FONTS = (
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
WORDS = ("the data model input output board GIT REPO json api cloud test build deploy cache "
         "layer train loss step sync note TODO idea plan draft final ok yes no why how who "
         "week mon tue fri Q1 Q2 v2 RAW JPEG HTTP notebook server client queue stream frame "
         "alpha beta gamma delta sigma error total cost price net gain risk user admin login").split()
MATHS = ("x^2 + y^2 = r^2", "f(x) = ax + b", "dy/dx = 2x", "E = mc^2", "a_n = a_n-1 + d", "3x - 7 = 11",
         "sin(t) + cos(t)", "P(A|B)", "lim x->0", "sum i = n(n+1)/2", "y = mx + c", "A = pi r^2",
         "2 + 2 = 4", "x = -b +/- sqrt(D)", "O(n log n)", "F = ma", "v = d / t", "1/2 + 1/3 = 5/6",
         "[1 0; 0 1]", "<x, y>", "|v| = 5", "n!", "x < 10", "30%", "$1,200", "9.81 m/s2")

# (weight, low RGB, high RGB) reflectance ranges, calibrated on real boards after normalisation
MARKER_COLOURS = {
    "black": (0.40, (0.14, 0.14, 0.14), (0.46, 0.46, 0.46)),
    "blue": (0.15, (0.12, 0.20, 0.42), (0.32, 0.42, 0.72)),
    "red": (0.16, (0.70, 0.16, 0.22), (0.92, 0.42, 0.50)),
    "green": (0.10, (0.12, 0.40, 0.22), (0.35, 0.62, 0.45)),
    "teal": (0.08, (0.08, 0.40, 0.42), (0.30, 0.62, 0.66)),
    "orange": (0.05, (0.86, 0.40, 0.12), (0.97, 0.62, 0.32)),
    "purple": (0.04, (0.35, 0.20, 0.45), (0.58, 0.40, 0.68)),
    "brown": (0.02, (0.35, 0.22, 0.15), (0.55, 0.40, 0.30)),
}
# Seed ranges: the held-out test set and the validation set never overlap training seeds.
TEST_SEEDS = range(0, 100_000)
VAL_SEEDS = range(100_000, 200_000)
TRAIN_SEED_START = 1_000_000

INK_VISIBLE_DARKNESS = 0.10  # below this a stroke pixel is too faint to call ink (matches ghost range)


@dataclass
class Sample:
    image: np.ndarray
    label: np.ndarray
    clean: np.ndarray
    regions: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- small helpers

@functools.lru_cache(maxsize=8)
def pixel_grid(h, w):
    """(yy, xx) float32 coordinate grids; cached because nearly every effect needs them."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def smooth_noise(rng, h, w, cells, channels=1):
    """Low-frequency noise in [-1, 1] made by upsampling a coarse random grid."""
    ch, cw = max(2, int(cells * h / max(h, w)) + 1), max(2, int(cells * w / max(h, w)) + 1)
    grid = rng.uniform(-1, 1, (ch, cw, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels) if channels > 1 else out.reshape(h, w)


def pick_marker_colour(rng):
    names = list(MARKER_COLOURS)
    weights = np.array([MARKER_COLOURS[n][0] for n in names])
    name = names[rng.choice(len(names), p=weights / weights.sum())]
    _, lo, hi = MARKER_COLOURS[name]
    if name == "black":  # keep black neutral-ish with a slight blue or brown tint
        colour = np.full(3, rng.uniform(lo[0], hi[0])) + rng.uniform(-0.04, 0.04, 3)
    else:
        colour = rng.uniform(lo, hi)
    return name, np.clip(colour, 0.02, 0.98).astype(np.float32)


def jitter_polyline(rng, points, amplitude, step=6.0):
    """Resample a polyline and add smooth hand tremor so geometry looks drawn by hand."""
    points = np.asarray(points, np.float32)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    length = float(seg.sum())
    if length < 1:
        return points
    n = max(2, int(length / step))
    t = np.concatenate([[0], np.cumsum(seg)]) / length
    s = np.linspace(0, 1, n)
    resampled = np.stack([np.interp(s, t, points[:, 0]), np.interp(s, t, points[:, 1])], 1)
    # a few random sinusoids give a smooth wobble along the stroke
    wobble = np.zeros_like(resampled)
    for _ in range(2):
        freq = rng.uniform(0.5, 3.0)
        phase = rng.uniform(0, 2 * np.pi, 2)
        wobble += np.stack([np.sin(2 * np.pi * freq * s + phase[0]), np.sin(2 * np.pi * freq * s + phase[1])], 1)
    return resampled + wobble * amplitude * 0.5


def draw_poly(mask, points, thickness, closed=False):
    pts = np.round(np.asarray(points) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], closed, 255, max(1, int(round(thickness))), cv2.LINE_AA, shift=4)


def ellipse_points(cx, cy, rx, ry, angle=0.0, start=0.0, end=2 * np.pi, n=48):
    t = np.linspace(start, end, n)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], 1)


def random_text(rng, words=(1, 4)):
    text = " ".join(rng.choice(WORDS, rng.integers(*words)))
    case = rng.random()
    return text.upper() if case < 0.35 else (text.capitalize() if case < 0.6 else text)


# ----------------------------------------------------------------------------- content on the board plane

class InkCanvas:
    """Draws marker content onto one uint8 coverage mask (one marker colour)."""

    def __init__(self, rng, h, w, scale, thickness):
        self.rng, self.h, self.w = rng, h, w
        self.mask = np.zeros((h, w), np.uint8)
        self.scale = scale          # handwriting x-height in pixels
        self.thickness = thickness  # marker line width in pixels

    def text(self, x, y, string=None, font=None):
        rng = self.rng
        string = string or random_text(rng)
        font = HERSHEY_FONTS[rng.integers(len(HERSHEY_FONTS))] if font is None else font
        if rng.random() < 0.25:
            font |= cv2.FONT_ITALIC
        font_scale = self.scale / 22.0
        thick = max(1, int(round(self.thickness)))
        (tw, th), base = cv2.getTextSize(string, font, font_scale, thick)
        pad = int(th + thick * 2 + 4)
        patch = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
        cv2.putText(patch, string, (pad, pad + th), font, font_scale, 255, thick, cv2.LINE_AA)
        # handwriting slant, rotation and a slanting baseline
        angle = rng.normal(0, 4)
        shear = rng.uniform(-0.35, 0.2)
        cx, cy = patch.shape[1] / 2, patch.shape[0] / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, rng.uniform(0.9, 1.1))
        m[0, 1] += shear
        m[0, 2] -= shear * cy
        m[:, 2] += (x - pad, y - pad - th)
        placed = cv2.warpAffine(patch, m, (self.w, self.h), flags=cv2.INTER_LINEAR)
        np.maximum(self.mask, placed, out=self.mask)
        return tw, th + base

    def cursive(self, x, y, length):
        """Cursive-like loops along a baseline: a fast stand-in for joined handwriting."""
        rng = self.rng
        h = self.scale
        x_pos = x
        while x_pos < x + length:
            word_len = rng.uniform(2, 7) * h
            n = int(word_len / 2) + 8
            t = np.linspace(0, 1, n)
            loops = rng.uniform(1.5, 4.0) * word_len / h
            phase = 2 * np.pi * loops * t
            height = h * (0.6 + 0.5 * np.abs(smooth_1d(rng, n, 5)))
            ascender = (rng.random(n) < 0.04).astype(np.float32)
            ascender = np.convolve(ascender, np.hanning(9), "same") * h * 1.2
            px = x_pos + t * word_len + 0.35 * h * np.cos(phase + np.pi / 2)
            py = y - (height + ascender) * (0.5 - 0.5 * np.cos(phase)) + rng.normal(0, 0.4, n).cumsum() * 0.05 * h
            draw_poly(self.mask, np.stack([px, py], 1), self.thickness)
            x_pos += word_len + rng.uniform(0.6, 1.5) * h
        return length, h * 2

    def box(self, x, y, bw, bh, rounded=False):
        rng = self.rng
        if rounded:
            r = min(bw, bh) * 0.2
            pts = np.concatenate([
                ellipse_points(x + bw - r, y + r, r, r, 0, -np.pi / 2, 0, 8),
                ellipse_points(x + bw - r, y + bh - r, r, r, 0, 0, np.pi / 2, 8),
                ellipse_points(x + r, y + bh - r, r, r, 0, np.pi / 2, np.pi, 8),
                ellipse_points(x + r, y + r, r, r, 0, np.pi, 1.5 * np.pi, 8)])
            pts = np.concatenate([pts, pts[:1]])
        else:
            overshoot = rng.uniform(0, 0.06) * min(bw, bh)
            pts = np.array([[x - overshoot, y], [x + bw, y], [x + bw, y + bh], [x, y + bh], [x, y - overshoot]])
        draw_poly(self.mask, jitter_polyline(rng, pts, self.scale * 0.08), self.thickness)

    def arrow(self, x0, y0, x1, y1, curved=False):
        rng = self.rng
        if curved:
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            nx, ny = -(y1 - y0), x1 - x0
            bend = rng.uniform(-0.4, 0.4)
            t = np.linspace(0, 1, 24)[:, None]
            ctrl = np.array([mx + nx * bend, my + ny * bend])
            pts = (1 - t) ** 2 * np.array([x0, y0]) + 2 * (1 - t) * t * ctrl + t ** 2 * np.array([x1, y1])
        else:
            pts = np.array([[x0, y0], [x1, y1]], np.float32)
        pts = jitter_polyline(rng, pts, self.scale * 0.06)
        draw_poly(self.mask, pts, self.thickness)
        direction = pts[-1] - pts[-4 if len(pts) > 4 else 0]
        direction /= np.linalg.norm(direction) + 1e-6
        head = self.scale * rng.uniform(0.5, 1.0)
        for sign in (-1, 1):
            a = sign * rng.uniform(0.4, 0.7)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            tip = pts[-1] - rot @ direction * head
            draw_poly(self.mask, [pts[-1], tip], self.thickness)

    def ellipse(self, cx, cy, rx, ry, hatch=False):
        rng = self.rng
        angle = rng.uniform(-0.3, 0.3)
        start = rng.uniform(0, 2 * np.pi)
        pts = ellipse_points(cx, cy, rx, ry, angle, start, start + 2 * np.pi + rng.uniform(0, 0.3), 64)
        draw_poly(self.mask, jitter_polyline(rng, pts, self.scale * 0.06), self.thickness)
        if hatch:
            region = np.zeros_like(self.mask)
            cv2.ellipse(region, (int(cx), int(cy)), (int(rx), int(ry)), np.degrees(angle), 0, 360, 255, -1)
            self.hatch(region, cx - rx, cy - ry, 2 * rx, 2 * ry)

    def hatch(self, region, x, y, w, h):
        rng = self.rng
        lines = np.zeros_like(self.mask)
        # real hatching leaves gaps a few stroke widths wide; tighter lines merge into a solid fill on camera
        spacing = max(3.0, self.scale * rng.uniform(0.3, 0.8), self.thickness * rng.uniform(2.5, 4.0) + 2)
        angle = rng.uniform(0, np.pi)
        directions = [angle] if rng.random() < 0.6 else [angle, angle + np.pi / 2]
        diag = np.hypot(w, h)
        for a in directions:
            d = np.array([np.cos(a), np.sin(a)])
            n = np.array([-d[1], d[0]])
            for off in np.arange(-diag / 2, diag / 2, spacing):
                c = np.array([x + w / 2, y + h / 2]) + n * off
                draw_poly(lines, [c - d * diag / 2, c + d * diag / 2], self.thickness * rng.uniform(0.6, 1.0))
        np.maximum(self.mask, np.minimum(lines, region), out=self.mask)

    def table(self, x, y, cols, rows, cw, rh):
        rng = self.rng
        for r in range(rows + 1):
            draw_poly(self.mask, jitter_polyline(rng, [[x, y + r * rh], [x + cols * cw, y + r * rh]], self.scale * 0.05), self.thickness)
        for c in range(cols + 1):
            draw_poly(self.mask, jitter_polyline(rng, [[x + c * cw, y], [x + c * cw, y + rows * rh]], self.scale * 0.05), self.thickness)
        for r in range(rows):
            for c in range(cols):
                if rng.random() < 0.7:
                    s = str(rng.integers(0, 999)) if rng.random() < 0.5 else str(rng.choice(WORDS))[:4]
                    self.text(x + c * cw + 3, y + r * rh + rh * 0.8, s)

    def plot(self, x, y, pw, ph):
        rng = self.rng
        self.arrow(x, y + ph, x + pw, y + ph)
        self.arrow(x, y + ph, x, y)
        t = np.linspace(0, 1, 40)
        kind = rng.integers(3)
        if kind == 0:
            curve = 0.5 + 0.4 * np.sin(2 * np.pi * t * rng.uniform(0.5, 2.5) + rng.uniform(0, 6))
        elif kind == 1:
            curve = t ** rng.uniform(1.5, 3)
        else:
            curve = np.exp(-((t - rng.uniform(0.3, 0.7)) ** 2) / 0.02)
        pts = np.stack([x + t * pw * 0.95, y + ph - curve * ph * 0.9], 1)
        draw_poly(self.mask, jitter_polyline(rng, pts, self.scale * 0.05), self.thickness)

    def scribble(self, cx, cy, size):
        """A free spline doodle (loop, squiggle, signature-like)."""
        rng = self.rng
        n = rng.integers(4, 9)
        ctrl = np.stack([cx + rng.uniform(-1, 1, n) * size, cy + rng.uniform(-0.5, 0.5, n) * size], 1)
        draw_poly(self.mask, catmull_rom(ctrl, 12), self.thickness)


def smooth_1d(rng, n, cells):
    grid = rng.uniform(-1, 1, cells + 1)
    return np.interp(np.linspace(0, cells, n), np.arange(cells + 1), grid)


def catmull_rom(ctrl, per_segment):
    p = np.concatenate([ctrl[:1], ctrl, ctrl[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(p[-2:-1])
    return np.concatenate(out)


def draw_content_block(canvas: InkCanvas, kind, x, y, bw, bh):
    rng, s = canvas.rng, canvas.scale
    if kind == "text":
        line_gap = s * rng.uniform(1.6, 2.4)
        for i in range(max(1, int(bh / line_gap))):
            bullet = rng.random() < 0.2
            if bullet:
                cv2.circle(canvas.mask, (int(x), int(y + i * line_gap + s)), max(1, int(canvas.thickness)), 255, -1, cv2.LINE_AA)
            canvas.text(x + (s if bullet else 0), y + i * line_gap + s * 1.3)
    elif kind == "cursive":
        line_gap = s * rng.uniform(2.0, 2.8)
        for i in range(max(1, int(bh / line_gap))):
            canvas.cursive(x, y + i * line_gap + s * 1.5, bw * rng.uniform(0.5, 1.0))
    elif kind == "maths":
        line_gap = s * rng.uniform(1.8, 2.5)
        for i in range(max(1, int(bh / line_gap))):
            canvas.text(x, y + i * line_gap + s * 1.3, str(rng.choice(MATHS)))
        if rng.random() < 0.4:  # a fraction bar or square-root sign
            yy = y + bh * 0.5
            draw_poly(canvas.mask, jitter_polyline(rng, [[x, yy], [x + bw * 0.4, yy]], s * 0.05), canvas.thickness)
    elif kind == "box":
        canvas.box(x, y, bw, bh, rounded=rng.random() < 0.3)
        if rng.random() < 0.8:
            canvas.text(x + s * 0.5, y + bh * 0.5 + s * 0.5, random_text(rng, (1, 3)))
    elif kind == "flow":
        n = int(rng.integers(2, 4))
        vertical = bh > bw
        for i in range(n):
            if vertical:
                bx, by, w_, h_ = x, y + i * bh / n, bw * 0.8, bh / n * 0.55
            else:
                bx, by, w_, h_ = x + i * bw / n, y, bw / n * 0.6, bh * 0.8
            canvas.box(bx, by, w_, h_)
            if rng.random() < 0.7:
                canvas.text(bx + s * 0.3, by + h_ * 0.5 + s * 0.4, random_text(rng, (1, 2))[:8])
            if i + 1 < n:
                if vertical:
                    canvas.arrow(bx + w_ / 2, by + h_, bx + w_ / 2, y + (i + 1) * bh / n, curved=rng.random() < 0.3)
                else:
                    canvas.arrow(bx + w_, by + h_ / 2, x + (i + 1) * bw / n, by + h_ / 2, curved=rng.random() < 0.3)
    elif kind == "arrow":
        canvas.arrow(x, y + rng.uniform(0, bh), x + bw, y + rng.uniform(0, bh), curved=rng.random() < 0.5)
    elif kind == "circle":
        canvas.ellipse(x + bw / 2, y + bh / 2, bw / 2 * rng.uniform(0.6, 1), bh / 2 * rng.uniform(0.6, 1), hatch=rng.random() < 0.3)
    elif kind == "table":
        cols, rows = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        canvas.table(x, y, cols, rows, bw / cols, bh / rows)
    elif kind == "hatch":
        region = np.zeros_like(canvas.mask)
        cv2.rectangle(region, (int(x), int(y)), (int(x + bw), int(y + bh)), 255, -1)
        canvas.box(x, y, bw, bh)
        canvas.hatch(region, x, y, bw, bh)
    elif kind == "plot":
        canvas.plot(x, y, bw, bh)
    elif kind == "scribble":
        canvas.scribble(x + bw / 2, y + bh / 2, min(bw, bh) / 2)
    elif kind == "underline":
        canvas.text(x, y + s * 1.3)
        draw_poly(canvas.mask, jitter_polyline(rng, [[x, y + s * 1.8], [x + bw * rng.uniform(0.4, 1), y + s * 1.9]], s * 0.05), canvas.thickness)


CONTENT_KINDS = ("text", "text", "cursive", "maths", "box", "flow", "arrow", "circle", "table", "hatch", "plot", "scribble", "underline")


def render_board_plane(rng, h, w):
    """Board-plane reflectance (HxWx3), clean board, ink coverage, faint-ink coverage and ink darkness."""
    # board surface: near-white with a slight tint, stains and leftover smudges
    base = rng.uniform(0.86, 0.97) * (1 + rng.uniform(-0.03, 0.03, 3))
    refl = np.ones((h, w, 3), np.float32) * base.astype(np.float32)
    refl *= 1 - 0.03 * rng.random() * (smooth_noise(rng, h, w, 6) + 1)[..., None]

    # ghosts of erased strokes: wide, blurred, weak, partly wiped away; labelled board
    if rng.random() < 0.55:
        ghost = InkCanvas(rng, h, w, rng.uniform(10, 30), rng.uniform(2, 6))
        for _ in range(rng.integers(2, 7)):
            draw_content_block(ghost, rng.choice(CONTENT_KINDS), rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8), rng.uniform(60, 250), rng.uniform(30, 120))
        ghost_f = cv2.GaussianBlur(ghost.mask.astype(np.float32) / 255, (0, 0), rng.uniform(0.8, 4))
        wipe = np.clip(smooth_noise(rng, h, w, 5) * 2 + rng.uniform(-0.5, 1), 0, 1)
        strength = rng.uniform(0.03, INK_VISIBLE_DARKNESS * 0.9)
        tint = 1 - rng.uniform(0.5, 1, 3) * strength
        refl *= 1 - ghost_f[..., None] * wipe[..., None] * (1 - tint[None, None, :])

    clean = np.ones((h, w, 3), np.float32)
    ink_cov = np.zeros((h, w), np.float32)
    faint_cov = np.zeros((h, w), np.float32)
    darkness_map = np.zeros((h, w), np.float32)  # how dark the visible ink is, so that glare can be judged later

    # writing scale and marker width for this board (thin fineliners to thick chisel markers)
    scale = float(np.exp(rng.uniform(np.log(7), np.log(34))))
    n_colours = int(rng.choice([1, 2, 2, 3, 3, 4]))
    layers = []
    for _ in range(n_colours):
        thickness = float(np.clip(scale * rng.uniform(0.07, 0.22), 1, 9))
        layers.append(InkCanvas(rng, h, w, scale * rng.uniform(0.8, 1.2), thickness))
    # place content blocks on a coarse grid so that blocks rarely pile up
    n_blocks = int(rng.integers(2, 12))
    for _ in range(n_blocks):
        canvas = layers[0] if rng.random() < 0.5 else layers[rng.integers(len(layers))]
        bw = rng.uniform(0.12, 0.55) * w
        bh = rng.uniform(0.08, 0.4) * h
        x = rng.uniform(-0.05 * w, w - bw * 0.8)
        y = rng.uniform(-0.02 * h, h - bh * 0.8)
        draw_content_block(canvas, rng.choice(CONTENT_KINDS), x, y, bw, bh)

    # one smooth displacement for the whole board: hand-drawn irregularity beyond per-stroke tremor
    amp = rng.uniform(0, 2.5)
    if amp > 0.3:
        dx = smooth_noise(rng, h, w, 8) * amp
        dy = smooth_noise(rng, h, w, 8) * amp
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = gx + dx, gy + dy
    else:
        map_x = map_y = None

    for canvas in layers:
        cover = canvas.mask
        if map_x is not None:
            cover = cv2.remap(cover, map_x, map_y, cv2.INTER_LINEAR)
        cover = cover.astype(np.float32) / 255
        _, colour = pick_marker_colour(rng)
        faint = rng.random() < 0.15
        opacity = rng.uniform(0.35, 0.65) if faint else rng.uniform(0.85, 1.0)
        visible = opacity * np.ones((h, w), np.float32)
        if faint or rng.random() < 0.2:  # half-dry marker: streaky gaps along strokes
            streak = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(0.7, 1.5))
            streak = (streak - streak.mean()) / (streak.std() + 1e-6)
            visible *= np.clip(1 - rng.uniform(0.1, 0.35) * streak - rng.uniform(0, 0.2), 0.2, 1)
        darkness = visible * (1 - colour.min())
        refl *= 1 - (cover * visible)[..., None] * (1 - colour)[None, None, :]
        clean *= 1 - (cover * opacity)[..., None] * (1 - colour)[None, None, :]
        # coverage stays fractional until after the perspective warp, so thin strokes are thresholded once
        ink_cov = np.maximum(ink_cov, cover * (darkness >= INK_VISIBLE_DARKNESS))
        darkness_map = np.maximum(darkness_map, (cover > 0) * darkness)
        if faint:
            faint_cov = np.maximum(faint_cov, cover)
    # spread darkness past stroke edges so that the warp's interpolation does not dilute it there
    darkness_map = cv2.dilate(darkness_map, np.ones((3, 3), np.uint8))
    return refl, clean, ink_cov, faint_cov, darkness_map


# ----------------------------------------------------------------------------- people and objects

SKIN_TONES = np.array([[0.95, 0.78, 0.66], [0.87, 0.67, 0.52], [0.72, 0.52, 0.38], [0.52, 0.36, 0.25], [0.36, 0.25, 0.18]], np.float32)


def oriented_noise(rng, h, w, cells_along, cells_across, angle):
    """Smooth noise in [-1, 1] elongated along `angle` (radians): cloth folds, hair strands, wood grain."""
    yy, xx = pixel_grid(h, w)
    size = float(np.hypot(h, w))
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    along = ((xx - w / 2) * ca + (yy - h / 2) * sa) / size + 0.5
    across = ((yy - h / 2) * ca - (xx - w / 2) * sa) / size + 0.5
    na, nc = int(cells_along) + 3, int(cells_across) + 3
    grid = rng.uniform(-1, 1, (nc, na)).astype(np.float32)
    return cv2.remap(grid, along * (na - 3) + 1, across * (nc - 3) + 1, cv2.INTER_CUBIC)


def fabric(rng, h, w, base):
    """Clothing seen by a camera: a weave pattern bent by folds, fold shading with dark creases, fabric grain."""
    yy, xx = pixel_grid(h, w)
    fold_angle = np.pi / 2 + rng.normal(0, 0.5)  # folds mostly hang down, some run diagonally
    folds = oriented_noise(rng, h, w, rng.uniform(2, 5), rng.uniform(10, 30), fold_angle)
    bend = rng.uniform(2, 10)
    u = xx + folds * bend + smooth_noise(rng, h, w, 8) * bend
    v = yy + smooth_noise(rng, h, w, 8) * bend
    tex = np.ones((h, w, 3), np.float32) * base
    kind = rng.choice(6, p=[0.3, 0.22, 0.12, 0.12, 0.14, 0.1])
    other = rng.uniform(0.02, 0.98, 3).astype(np.float32)
    if kind == 1:  # stripes, thin pinstripes to wide bands
        period = float(np.exp(rng.uniform(np.log(3), np.log(30))))
        a = rng.choice([0, np.pi / 2, rng.uniform(0, np.pi)])
        duty = rng.uniform(0.15, 0.6)
        phase = ((u * np.cos(a) + v * np.sin(a)) / period) % 1.0
        stripe = cv2.GaussianBlur((phase < duty).astype(np.float32), (0, 0), 0.6)[..., None]
        tex = tex * (1 - stripe) + other * stripe
    elif kind in (2, 3):  # gingham checks or a plaid of several crossing bands
        period = rng.uniform(6, 30)
        cu, cv_ = ((u / period) % 1.0 < 0.5), ((v / period) % 1.0 < 0.5)
        if kind == 2:
            tex *= (1 - 0.3 * cu - 0.3 * cv_)[..., None].astype(np.float32)
        else:
            band = (((u / period) % 1.0) < rng.uniform(0.05, 0.2)) | (((v / period) % 1.0) < rng.uniform(0.05, 0.2))
            tex = tex * (1 - 0.25 * (cu ^ cv_))[..., None].astype(np.float32)
            tex[band] = other
    elif kind == 4:  # heather / knit: strong per-pixel colour variation
        knit = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 1.2))
        tex *= (1 + knit * rng.uniform(0.1, 0.3))[..., None]
    elif kind == 5:  # small print: dots or flecks
        period = rng.uniform(6, 18)
        dots = (np.sin(u * 2 * np.pi / period) * np.sin(v * 2 * np.pi / period)) > rng.uniform(0.5, 0.85)
        tex[dots] = other
    # fold shading: broad light/dark bands plus narrow dark creases where the fold field crosses zero
    creases = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 4)):
        field = oriented_noise(rng, h, w, rng.uniform(2, 5), rng.uniform(6, 25), fold_angle + rng.normal(0, 0.5))
        creases = np.maximum(creases, np.exp(-(field / rng.uniform(0.03, 0.12)) ** 2))
    shade = 1 + folds * rng.uniform(0.15, 0.45) - creases * rng.uniform(0.15, 0.6)
    grain = rng.standard_normal((h, w)).astype(np.float32) * rng.uniform(0.01, 0.05)
    return np.clip(tex * (shade + grain)[..., None], 0, 1)


SHIRT_WEAVE_P = 0.3  # share of presenters in a fine-weave shirt (chambray, oxford): thin dark creases on grey


def side_rng(rng):
    """A generator seeded from `rng`'s state without drawing from it: an addition that uses it leaves every
    other random choice of the frame (and so the frame's labels) as it was."""
    return np.random.default_rng(int(rng.bit_generator.state["state"]["state"]) ^ 0x5EED5EED)


def weave_shirt(rng, h, w):
    """A grey or blue-grey shirt of fine weave, as office shirts look on camera: a thread texture near the pixel
    scale, strong fold shading with bright ridges and many thin dark creases, the look a classifier can mistake
    for strokes on a dim board."""
    yy, xx = pixel_grid(h, w)
    grey = rng.uniform(0.3, 0.9)
    tint = np.float32([-1.0, -0.4, 1.0]) * rng.uniform(0, 0.15) if rng.random() < 0.7 else rng.normal(0, 0.05, 3)
    base = np.clip(grey * (1 + tint), 0.02, 1).astype(np.float32)
    fold_angle = np.pi / 2 + rng.normal(0, 0.7)
    folds = oriented_noise(rng, h, w, rng.uniform(2, 6), rng.uniform(8, 30), fold_angle)
    bend = rng.uniform(1, 6)
    u = xx + folds * bend
    v = yy + smooth_noise(rng, h, w, 8) * bend
    period = rng.uniform(1.5, 4.0)
    if rng.random() < 0.5:  # twill: diagonal threads
        weave = np.sin((u + v) * np.pi / period)
    else:  # plain weave / micro check
        weave = np.sin(u * np.pi / period) * np.sin(v * np.pi / period)
    slub = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.4, 1.0))
    texture = 1 + weave * rng.uniform(0.03, 0.15) + slub * rng.uniform(0.05, 0.2)
    creases = np.zeros((h, w), np.float32)
    ridges = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(2, 7)):
        field = oriented_noise(rng, h, w, rng.uniform(2, 6), rng.uniform(10, 40), fold_angle + rng.normal(0, 0.6))
        creases = np.maximum(creases, np.exp(-(field / rng.uniform(0.02, 0.08)) ** 2))
        ridges = np.maximum(ridges, np.exp(-((field - rng.uniform(0.1, 0.3)) / rng.uniform(0.04, 0.12)) ** 2))
    shade = (1 + folds * rng.uniform(0.2, 0.5) - creases * rng.uniform(0.25, 0.7) + ridges * rng.uniform(0.1, 0.5))
    return np.clip(base * (shade * texture)[..., None], 0, 1)


def print_on_chest(rng, h, w, cx, top, half_width):
    """A T-shirt print: a word, a logo shape or both, as a coverage mask and a colour."""
    layer = np.zeros((h, w), np.uint8)
    size = half_width * rng.uniform(0.3, 0.8)
    y = top + half_width * rng.uniform(0.4, 1.0)
    if rng.random() < 0.6:
        word = str(rng.choice(WORDS)).upper() if rng.random() < 0.6 else str(rng.choice(WORDS))
        font = HERSHEY_FONTS[rng.integers(len(HERSHEY_FONTS))]
        scale = size / 22.0
        (tw, th), _ = cv2.getTextSize(word, font, scale, max(1, int(scale * 2)))
        cv2.putText(layer, word, (int(cx - tw / 2), int(y + th / 2)), font, scale, 255, max(1, int(scale * rng.uniform(1, 4))), cv2.LINE_AA)
        y += th * 1.5
    if rng.random() < 0.6:
        c = (int(cx + rng.normal(0, 0.1) * half_width), int(y + size * 0.5))
        shape = rng.integers(3)
        if shape == 0:
            cv2.circle(layer, c, int(size * 0.5), 255, max(1, int(size * rng.uniform(0.05, 0.5))), cv2.LINE_AA)
        elif shape == 1:
            pts = np.array([[c[0], c[1] - size * 0.5], [c[0] + size * 0.5, c[1] + size * 0.4], [c[0] - size * 0.5, c[1] + size * 0.4]])
            cv2.fillConvexPoly(layer, np.round(pts).astype(np.int32), 255, cv2.LINE_AA)
        else:
            cv2.rectangle(layer, (int(c[0] - size * 0.6), int(c[1] - size * 0.3)), (int(c[0] + size * 0.6), int(c[1] + size * 0.3)), 255, -1)
    return layer, rng.uniform(0.02, 0.98, 3).astype(np.float32)


def shaded_part(part, reach):
    """Volume shading of a body part: darker towards its outline (a cylinder seen side-on)."""
    dist = cv2.distanceTransform((part > 127).astype(np.uint8), cv2.DIST_L2, 3)
    return (0.55 + 0.45 * np.sqrt(np.clip(dist / max(reach, 1.0), 0, 1)))[..., None]


def draw_arm(rng, body, skin, sx, sy, side, r, pose, long_sleeve):
    """Upper arm and forearm as thick polylines (sleeve into `body`, bare skin into `skin`) and a hand."""
    if pose == "down":
        ex, ey = sx + side * r * rng.uniform(0.1, 0.5), sy + r * rng.uniform(2.2, 3.0)
        hx, hy = ex + side * r * rng.uniform(-0.6, 0.6), ey + r * rng.uniform(1.8, 2.6)
    elif pose == "up":  # writing on the board: hand above the shoulder
        ex, ey = sx + side * r * rng.uniform(0.8, 2.5), sy + r * rng.uniform(-0.5, 1.5)
        hx, hy = ex + side * r * rng.uniform(-0.5, 2.0), ey - r * rng.uniform(1.0, 2.8)
    else:  # "across": the arm reaches across the body and the board
        ex, ey = sx - side * r * rng.uniform(0.2, 1.2), sy + r * rng.uniform(1.0, 2.5)
        hx, hy = ex - side * r * rng.uniform(2.0, 4.5), ey - r * rng.uniform(-1.0, 2.0)
    upper_w = max(2, int(r * rng.uniform(0.75, 0.95)))
    fore_w = max(2, int(upper_w * rng.uniform(0.7, 0.85)))
    cv2.line(body, (int(sx), int(sy)), (int(ex), int(ey)), 255, upper_w, cv2.LINE_AA)
    cv2.circle(body, (int(ex), int(ey)), upper_w // 2, 255, -1, cv2.LINE_AA)
    if long_sleeve:
        wx, wy = ex + (hx - ex) * 0.8, ey + (hy - ey) * 0.8
        cv2.line(body, (int(ex), int(ey)), (int(wx), int(wy)), 255, fore_w, cv2.LINE_AA)
        cv2.line(skin, (int(wx), int(wy)), (int(hx), int(hy)), 255, max(2, int(fore_w * 0.75)), cv2.LINE_AA)
    else:
        cv2.line(skin, (int(ex), int(ey)), (int(hx), int(hy)), 255, fore_w, cv2.LINE_AA)
    # the hand: a palm and a thumb, pointing along the forearm
    angle = np.degrees(np.arctan2(hy - ey, hx - ex))
    cv2.ellipse(skin, (int(hx), int(hy)), (max(2, int(r * 0.5)), max(2, int(r * 0.33))), angle, 0, 360, 255, -1, cv2.LINE_AA)
    t = np.radians(angle + side * 50)
    cv2.line(skin, (int(hx), int(hy)), (int(hx + np.cos(t) * r * 0.5), int(hy + np.sin(t) * r * 0.5)), 255, max(1, int(r * 0.15)), cv2.LINE_AA)
    return (hx, hy, angle)


def draw_person(rng, h, w, mask, colour):
    """A presenter in front of the board, drawn like a photograph of one.

    Head with skin shading and stranded hair (seen from behind, the side or the front), neck, a torso in
    folded, patterned clothing (stripes, checks, knit, prints with words and logos, seams and buttons),
    trousers, arms hanging, writing or reaching across the board, hands that may hold a marker.
    Close-up people enter from a frame edge, large and out of focus.
    """
    close = rng.random() < 0.25
    r = (rng.uniform(0.16, 0.4) if close else rng.uniform(0.05, 0.16)) * h  # head radius sets the scale
    cx = (rng.choice([rng.uniform(-0.15, 0.15), rng.uniform(0.85, 1.15)]) if close else rng.uniform(-0.1, 1.1)) * w
    head_y = (rng.uniform(0.0, 0.5) if close else rng.uniform(0.05, 0.6)) * h
    shoulder_y = head_y + r * rng.uniform(1.7, 2.2)
    half = r * rng.uniform(1.8, 2.5)  # half the shoulder width
    facing = rng.choice(["back", "side", "front"], p=[0.45, 0.3, 0.25])
    lean = rng.normal(0, 0.1) * r  # torso slightly off vertical
    hip_y = shoulder_y + r * rng.uniform(4.5, 6.0)
    skin_rgb = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.85, 1.08)

    body = np.zeros((h, w), np.uint8)   # clothing: torso and sleeves
    skin = np.zeros((h, w), np.uint8)   # face, neck, forearms, hands
    hair = np.zeros((h, w), np.uint8)
    legs = np.zeros((h, w), np.uint8)
    # torso: rounded shoulders, slight taper to the waist
    waist = half * rng.uniform(0.75, 0.95)
    torso = np.array([[cx - half, shoulder_y + r * 0.5], [cx - half * 0.7, shoulder_y - r * 0.15],
                      [cx + half * 0.7, shoulder_y - r * 0.15], [cx + half, shoulder_y + r * 0.5],
                      [cx + waist + lean, hip_y], [cx - waist + lean, hip_y]])
    cv2.fillPoly(body, [np.round(torso * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    for side in (-1, 1):
        cv2.ellipse(body, (int(cx + side * half * 0.78), int(shoulder_y + r * 0.25)), (int(half * 0.28), int(r * 0.5)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    if hip_y < h:  # trousers or a skirt down to the frame edge
        gap = waist * rng.uniform(0.05, 0.2)
        for side in (-1, 1):
            leg = np.array([[cx + lean + side * gap, hip_y - 2], [cx + lean + side * waist, hip_y - 2],
                            [cx + lean + side * waist * rng.uniform(0.7, 1.0), h + 10], [cx + lean + side * gap * 1.5, h + 10]])
            cv2.fillConvexPoly(legs, np.round(leg).astype(np.int32), 255, cv2.LINE_AA)
    # neck and head
    neck_w = r * rng.uniform(0.4, 0.55)
    cv2.rectangle(skin, (int(cx - neck_w), int(head_y + r * 0.3)), (int(cx + neck_w), int(shoulder_y + r * 0.1)), 255, -1)
    head_rx = r * rng.uniform(0.78, 0.9)
    cv2.ellipse(skin, (int(cx), int(head_y)), (int(head_rx), int(r)), rng.normal(0, 5), 0, 360, 255, -1, cv2.LINE_AA)
    if facing != "back":
        for side in (-1, 1):  # ears
            cv2.ellipse(skin, (int(cx + side * head_rx), int(head_y + r * 0.1)), (max(1, int(r * 0.15)), max(1, int(r * 0.28))), 0, 0, 360, 255, -1, cv2.LINE_AA)
    hair_len = rng.uniform(0.3, 1.6)  # short hair to shoulder length
    bald = rng.random() < 0.08
    if not bald:
        if facing == "back":
            cv2.ellipse(hair, (int(cx), int(head_y)), (int(head_rx * 1.05), int(r * 1.05)), 0, 0, 360, 255, -1, cv2.LINE_AA)
            if hair_len > 1.0:
                cv2.rectangle(hair, (int(cx - head_rx), int(head_y)), (int(cx + head_rx), int(head_y + r * hair_len)), 255, -1)
        else:
            cv2.ellipse(hair, (int(cx), int(head_y - r * 0.15)), (int(head_rx * 1.05), int(r * rng.uniform(0.8, 1.0))), 0, 180, 360, 255, -1, cv2.LINE_AA)
            if facing == "side":  # the back of the head is hair
                side = rng.choice([-1, 1])
                cv2.ellipse(hair, (int(cx + side * head_rx * 0.35), int(head_y)), (int(head_rx * 0.75), int(r * 0.95)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    # arms: poses chosen per side; an arm in front of the torso is drawn after it
    long_sleeve = rng.random() < 0.55
    poses = [rng.choice(["down", "up", "across"], p=[0.5, 0.3, 0.2]) for _ in (0, 1)]
    front_body = np.zeros((h, w), np.uint8)
    front_skin = np.zeros((h, w), np.uint8)
    hands = []
    for side, pose in zip((-1, 1), poses):
        sx, sy = cx + side * half * 0.82, shoulder_y + r * 0.3
        target_body, target_skin = (front_body, front_skin) if pose == "across" else (body, skin)
        hands.append(draw_arm(rng, target_body, target_skin, sx, sy, side, r, pose, long_sleeve) + (pose,))

    cloth = (rng.uniform(0.04, 0.95, 3) * rng.choice([0.35, 0.7, 1.0])).astype(np.float32)
    cloth_tex = fabric(rng, h, w, cloth)
    side = side_rng(rng)
    if side.random() < SHIRT_WEAVE_P:
        cloth_tex = weave_shirt(side, h, w)
    trousers = np.array(rng.choice([[0.12, 0.16, 0.28], [0.08, 0.08, 0.09], [0.35, 0.3, 0.25], [0.2, 0.25, 0.4]]), np.float32)
    legs_tex = fabric(rng, h, w, trousers * rng.uniform(0.7, 1.3)) if legs.any() else trousers
    skin_tex = skin_rgb * (1 + smooth_noise(rng, h, w, 25)[..., None] * 0.06
                           + rng.standard_normal((h, w, 1)).astype(np.float32) * 0.015)
    hair_rgb = rng.uniform(0.03, 0.55) * np.array([1.0, rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.75)], np.float32)
    if rng.random() < 0.08:
        hair_rgb = np.float32([0.7, 0.7, 0.7]) * rng.uniform(0.8, 1.2)  # grey
    strands = oriented_noise(rng, h, w, rng.uniform(2, 6), rng.uniform(80, 200), np.pi / 2 + rng.normal(0, 0.4))
    hair_tex = hair_rgb * (1 + strands[..., None] * rng.uniform(0.2, 0.5))

    # clothing details: a print on the chest, seams, a button placket, a collar
    details = np.zeros((h, w), np.uint8)
    if facing == "front" and rng.random() < 0.5:
        print_mask, print_rgb = print_on_chest(rng, h, w, cx, shoulder_y, half)
        print_mask = np.minimum(print_mask, body)
        a = print_mask.astype(np.float32)[..., None] / 255
        cloth_tex = cloth_tex * (1 - a) + print_rgb * a * (0.85 + 0.15 * cloth_tex.mean(2, keepdims=True))
    if rng.random() < 0.5:  # dark seams: shoulders, side seams, a placket or a back yoke
        seam = 1
        for side in (-1, 1):
            cv2.line(details, (int(cx + side * neck_w), int(shoulder_y - r * 0.1)), (int(cx + side * half * 0.8), int(shoulder_y + r * 0.05)), 255, seam, cv2.LINE_AA)
        if facing == "front" and rng.random() < 0.6:
            cv2.line(details, (int(cx), int(shoulder_y)), (int(cx + lean), int(hip_y)), 255, seam, cv2.LINE_AA)
            for k in range(1, 6):
                by = shoulder_y + (hip_y - shoulder_y) * k / 6
                cv2.circle(details, (int(cx + lean * k / 6 + r * 0.1), int(by)), max(1, int(r * 0.06)), 255, -1, cv2.LINE_AA)
        elif facing == "back" and rng.random() < 0.5:
            cv2.line(details, (int(cx - half * 0.7), int(shoulder_y + r * 0.6)), (int(cx + half * 0.7), int(shoulder_y + r * 0.6)), 255, seam, cv2.LINE_AA)
        details = np.minimum(details, body)
    if facing != "back" and rng.random() < 0.6:  # collar or neckline in a contrasting colour
        collar = np.zeros((h, w), np.uint8)
        cv2.ellipse(collar, (int(cx), int(shoulder_y - r * 0.05)), (int(neck_w * 1.6), int(r * 0.45)), 0, 0, 180, 255, max(1, int(r * 0.15)), cv2.LINE_AA)
        a = collar.astype(np.float32)[..., None] / 255
        cloth_tex = cloth_tex * (1 - a) + rng.uniform(0.1, 1.0, 3).astype(np.float32) * a
    cloth_tex *= 1 - 0.5 * (details.astype(np.float32)[..., None] / 255)

    # a marker or a phone in a hand
    held = np.zeros((h, w), np.uint8)
    for hx, hy, angle, pose in hands:
        if pose != "down" and rng.random() < 0.6:
            t = np.radians(angle)
            length = r * rng.uniform(0.6, 1.0)
            cv2.line(held, (int(hx), int(hy)), (int(hx + np.cos(t) * length), int(hy + np.sin(t) * length)), 255, max(2, int(r * 0.16)), cv2.LINE_AA)
    _, held_rgb = pick_marker_colour(rng)

    # key light from one side: every part gets volume shading and a gradient across the person
    yy, xx = pixel_grid(h, w)
    key = (1 + rng.uniform(-0.25, 0.25) * np.clip((xx - cx) / (half * 2), -1, 1))[..., None]
    layers = [(legs, legs_tex, waist * 0.6), (body, cloth_tex, half * 0.7), (skin, skin_tex, r * 0.6),
              (hair, hair_tex, r * 0.5), (front_body, cloth_tex, r * 0.4), (front_skin, skin_tex, r * 0.3),
              (held, held_rgb, 0)]
    person = np.zeros((h, w), np.uint8)
    person_rgb = np.zeros((h, w, 3), np.float32)
    for layer, rgb, reach in layers:
        if not layer.any():
            continue
        if reach:
            rgb = rgb * shaded_part(layer, reach)
        a = layer.astype(np.float32)[..., None] / 255
        person_rgb = person_rgb * (1 - a) + rgb * key * a
        np.maximum(person, layer, out=person)
    if close or rng.random() < 0.15:  # near the camera: out of focus, soft edges
        sigma = rng.uniform(1.0, 4.0) if close else rng.uniform(0.5, 1.5)
        alpha = cv2.GaussianBlur(person.astype(np.float32) / 255, (0, 0), sigma)
        person_rgb = cv2.GaussianBlur(person_rgb, (0, 0), sigma) / np.maximum(alpha, 1e-3)[..., None]
        person = (alpha * 255 + 0.5).astype(np.uint8)
    a = person.astype(np.float32)[..., None] / 255
    colour[:] = colour * (1 - a) + np.clip(person_rgb, 0, 1) * a
    np.maximum(mask, person, out=mask)


def draw_object(rng, h, w, mask, colour):
    """A generic object in front of the board: laptop, chair back, box, bottle, blurry shoulder."""
    kind = rng.integers(4)
    layer = np.zeros((h, w), np.uint8)
    if kind == 0:  # convex blob, e.g. a bag or a chair back
        c = rng.uniform([0, h * 0.3], [w, h * 1.1])
        pts = c + rng.normal(0, 1, (8, 2)) * rng.uniform(0.05, 0.25) * h
        cv2.fillConvexPoly(layer, cv2.convexHull(np.round(pts).astype(np.int32)), 255, cv2.LINE_AA)
    elif kind == 1:  # box / laptop screen from the bottom edge
        x0 = rng.uniform(-0.1, 0.9) * w
        bw, bh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.45) * h
        quad = np.array([[x0, h + 5], [x0 + rng.normal(0, 10), h - bh], [x0 + bw + rng.normal(0, 10), h - bh + rng.normal(0, 10)], [x0 + bw, h + 5]])
        cv2.fillConvexPoly(layer, np.round(quad).astype(np.int32), 255, cv2.LINE_AA)
    elif kind == 2:  # bottle, stand or pole
        x0 = rng.uniform(0, w)
        bw = rng.uniform(0.015, 0.06) * w
        top = rng.uniform(0.1, 0.8) * h
        cv2.rectangle(layer, (int(x0), int(top)), (int(x0 + bw), h), 255, -1)
        cv2.ellipse(layer, (int(x0 + bw / 2), int(top)), (int(bw / 2), int(bw / 3)), 0, 0, 360, 255, -1)
    else:  # a head/shoulder very near the camera, cut by the frame edge
        cx = rng.choice([rng.uniform(-0.1, 0.2), rng.uniform(0.8, 1.1)]) * w
        cv2.ellipse(layer, (int(cx), int(h * rng.uniform(0.7, 1.1))), (int(rng.uniform(0.1, 0.3) * w), int(rng.uniform(0.2, 0.5) * h)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    tex = fabric(rng, h, w, rng.uniform(0.05, 0.95, 3).astype(np.float32)) * shaded_part(layer, 0.05 * h)
    a = layer.astype(np.float32)[..., None] / 255
    colour[:] = colour * (1 - a) + tex * a
    np.maximum(mask, layer, out=mask)


def draw_hand_shadow_shape(rng, h, w):
    """A silhouette for a cast shadow: an arm with a hand, a person, or a blob."""
    shape = np.zeros((h, w), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        start = np.array([rng.choice([-20, w + 20]), rng.uniform(0.3, 1.1) * h])
        end = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        elbow = (start + end) / 2 + rng.normal(0, 0.1, 2) * [w, h]
        width = rng.uniform(0.05, 0.12) * h
        cv2.polylines(shape, [np.round([start, elbow, end]).astype(np.int32)], False, 255, int(width), cv2.LINE_AA)
        cv2.ellipse(shape, (int(end[0]), int(end[1])), (int(width * 0.8), int(width * 1.1)), rng.uniform(0, 180), 0, 360, 255, -1)
    elif kind == 1:
        draw_person(rng, h, w, shape, np.zeros((h, w, 3), np.float32))
    else:
        c = rng.uniform([0, 0], [w, h])
        pts = c + rng.normal(0, 1, (7, 2)) * rng.uniform(0.1, 0.35) * h
        cv2.fillConvexPoly(shape, cv2.convexHull(np.round(pts).astype(np.int32)), 255)
    return shape


# ----------------------------------------------------------------------------- the scene

def board_quad(rng, h, w):
    """Where the board plane lands in the frame: close-ups overflow the frame, far views sit on a wall."""
    if rng.random() < 0.55:
        margin = rng.uniform(-0.04, 0.2, (4, 2)) * [w, h]
        quad = np.array([[-margin[0, 0], -margin[0, 1]], [w + margin[1, 0], -margin[1, 1]],
                         [w + margin[2, 0], h + margin[2, 1]], [-margin[3, 0], h + margin[3, 1]]])
        far = False
    else:
        bw = rng.uniform(0.4, 0.92) * w
        bh = bw * rng.uniform(0.45, 0.75)
        x0 = rng.uniform(0.02 * w, w - bw - 0.02 * w)
        y0 = rng.uniform(-0.1 * h, max(-0.1 * h + 1, h - bh * 0.8))
        quad = np.array([[x0, y0], [x0 + bw, y0], [x0 + bw, y0 + bh], [x0, y0 + bh]])
        # keystone: one side nearer the camera
        k = rng.uniform(-0.18, 0.18) * bh
        quad[1, 1] += k; quad[2, 1] -= k
        quad += rng.normal(0, 0.015, (4, 2)) * [w, h]
        far = True
    return quad.astype(np.float32), far


def illumination(rng, h, w):
    """Multiplicative light field: gradient, radial falloff, blotches; ~1.1-2.4x max/min."""
    yy, xx = pixel_grid(h, w)
    a = rng.uniform(0, 2 * np.pi)
    grad = ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a))
    cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
    radial = -((xx - cx) ** 2 + (yy - cy) ** 2) / (w * w)
    field = grad * rng.uniform(0, 1) + radial * rng.uniform(0, 1.5) + smooth_noise(rng, h, w, 4) * rng.uniform(0, 0.3)
    field = (field - field.min()) / (field.max() - field.min() + 1e-6)
    ratio = rng.uniform(1.1, 2.4)
    return (1 / ratio + (1 - 1 / ratio) * field).astype(np.float32)


def colour_cast(rng):
    kind = rng.random()
    if kind < 0.35:   # warm tungsten: orange/brown
        cast = np.array([1.0, rng.uniform(0.72, 0.92), rng.uniform(0.45, 0.78)])
    elif kind < 0.55:  # cool daylight / fluorescent
        cast = np.array([rng.uniform(0.8, 0.95), rng.uniform(0.9, 1.0), 1.0])
    elif kind < 0.7:   # pink/purple cast seen on phone photos
        cast = np.array([1.0, rng.uniform(0.82, 0.93), rng.uniform(0.88, 1.0)])
    else:
        cast = 1 + rng.uniform(-0.05, 0.05, 3)
    return (cast / cast.max()).astype(np.float32)


def draw_floor(rng, wall, y0):
    """Floor below the wall from row y0: wood planks, carpet, tiles or linoleum, behind a skirting board."""
    h, w = wall.shape[:2]
    fh = h - y0
    if fh <= 2:
        return
    yy, xx = pixel_grid(fh, w)
    kind = rng.integers(4)
    base = np.array(rng.choice([[0.55, 0.33, 0.18], [0.7, 0.5, 0.3], [0.35, 0.22, 0.14], [0.45, 0.45, 0.47], [0.3, 0.32, 0.38]]), np.float32)
    base *= rng.uniform(0.7, 1.2)
    floor = np.ones((fh, w, 3), np.float32) * base
    # rows nearer the camera are larger: a simple perspective for pattern sizes
    depth = 1 + yy / max(fh, 1) * rng.uniform(1, 4)
    if kind == 0:  # wood planks: grain along x, dark gaps between planks, staggered joints
        plank = rng.uniform(4, 10) * depth
        row = np.floor(yy / plank)
        grain = oriented_noise(rng, fh, w, rng.uniform(3, 8), rng.uniform(40, 120), rng.normal(0, 0.05))
        tone = (rng.random(int(row.max()) + 2)[row.astype(int)] - 0.5) * 0.25
        floor *= (1 + grain * 0.12 + tone)[..., None]
        gaps = (yy % plank) < 1.0
        joints = ((xx + row * 137) % (rng.uniform(60, 200))) < 1.0
        floor[gaps | joints] *= 0.55
    elif kind == 1:  # carpet: fine noise and blotches
        floor *= (1 + rng.standard_normal((fh, w)).astype(np.float32) * 0.06 + smooth_noise(rng, fh, w, 10) * 0.08)[..., None]
    elif kind == 2:  # tiles with grout lines
        tile = rng.uniform(12, 40)
        grout = ((xx % (tile * depth)) < 1.2) | ((yy % (tile * depth * 0.5)) < 1.0)
        floor[grout] = floor[grout] * rng.uniform(0.5, 1.4)
    else:  # linoleum with smooth mottling and a reflection of the ceiling lights
        floor *= (1 + smooth_noise(rng, fh, w, 6) * 0.1)[..., None]
        floor += (np.exp(-((xx - rng.uniform(0, w)) / rng.uniform(20, 80)) ** 2) * rng.uniform(0, 0.25))[..., None]
    wall[y0:] = np.clip(floor, 0, 1)
    if rng.random() < 0.7:  # skirting board
        sk = int(rng.uniform(2, 10))
        wall[max(0, y0 - sk):y0] = rng.choice([0.95, 0.3, 0.6]) * rng.uniform(0.8, 1.1)


def draw_wall_clutter(rng, wall):
    """Things on a wall near a board: doors, windows, posters, picture frames, sockets, a clock, furniture."""
    h, w = wall.shape[:2]
    for _ in range(rng.integers(0, 6)):
        kind = rng.integers(7)
        x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 0.9) * h
        col = rng.uniform(0.05, 0.95, 3)
        if kind == 0:  # door: frame, panels and a handle
            dw, dh = rng.uniform(0.15, 0.35) * w, h * 1.2
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + dw), int(y0 + dh)), col.tolist(), -1)
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + dw), int(y0 + dh)), (col * 0.6).tolist(), int(rng.integers(1, 5)))
            cv2.circle(wall, (int(x0 + dw * 0.85), int(y0 + h * 0.5)), int(rng.integers(2, 5)), rng.uniform(0.1, 0.9, 3).tolist(), -1, cv2.LINE_AA)
        elif kind == 1:  # window: bright, with mullions or blinds
            ww, wh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.2, 0.6) * h
            sky = np.float32(rng.uniform(0.85, 1.0)) * (1 + rng.uniform(-0.1, 0.1, 3))
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + ww), int(y0 + wh)), np.clip(sky, 0, 1).tolist(), -1)
            bar = (col * 0.5).tolist()
            if rng.random() < 0.5:
                for k in range(1, int(rng.integers(8, 30))):
                    yk = int(y0 + wh * k / 30)
                    cv2.line(wall, (int(x0), yk), (int(x0 + ww), yk), bar, 1)
            else:
                cv2.line(wall, (int(x0 + ww / 2), int(y0)), (int(x0 + ww / 2), int(y0 + wh)), bar, int(rng.integers(1, 5)))
                cv2.line(wall, (int(x0), int(y0 + wh / 2)), (int(x0 + ww), int(y0 + wh / 2)), bar, int(rng.integers(1, 5)))
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + ww), int(y0 + wh)), bar, int(rng.integers(2, 6)))
        elif kind in (2, 3):  # poster or framed picture: colour blocks, printed text, a frame
            pw, ph = rng.uniform(0.05, 0.25) * w, rng.uniform(0.08, 0.4) * h
            patch = np.ones((max(2, int(ph)), max(2, int(pw)), 3), np.float32) * col
            patch *= 1 + smooth_noise(rng, patch.shape[0], patch.shape[1], 4, 3) * rng.uniform(0, 0.5)
            for _ in range(rng.integers(0, 5)):  # printed lines of text (putText draws on uint8 only)
                fy = int(rng.uniform(0.1, 0.95) * patch.shape[0])
                text = np.zeros(patch.shape[:2], np.uint8)
                cv2.putText(text, random_text(rng, (1, 3)), (int(rng.uniform(0, 0.3) * pw), fy), HERSHEY_FONTS[rng.integers(len(HERSHEY_FONTS))],
                            rng.uniform(0.2, 0.7), 255, 1, cv2.LINE_AA)
                a = text.astype(np.float32)[..., None] / 255
                patch = patch * (1 - a) + rng.uniform(0, 1, 3).astype(np.float32) * a
            xi, yi = int(x0), int(y0)
            ys, xs = slice(max(0, yi), min(h, yi + patch.shape[0])), slice(max(0, xi), min(w, xi + patch.shape[1]))
            if ys.stop > ys.start and xs.stop > xs.start:
                wall[ys, xs] = np.clip(patch[ys.start - yi:ys.stop - yi, xs.start - xi:xs.stop - xi], 0, 1)
            if kind == 3:
                cv2.rectangle(wall, (xi, yi), (int(x0 + pw), int(y0 + ph)), rng.uniform(0.05, 0.6, 3).tolist(), int(rng.integers(2, 8)))
        elif kind == 4:  # power socket or light switch
            s = rng.uniform(6, 16)
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + s), int(y0 + s)), (np.ones(3) * rng.uniform(0.7, 0.95)).tolist(), -1)
            cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + s), int(y0 + s)), (np.ones(3) * 0.4).tolist(), 1)
            cv2.circle(wall, (int(x0 + s / 2), int(y0 + s / 2)), max(1, int(s / 5)), (0.2, 0.2, 0.2), -1)
        elif kind == 5:  # wall clock
            rad = int(rng.uniform(8, 25))
            cv2.circle(wall, (int(x0), int(y0)), rad, (0.95, 0.95, 0.95), -1, cv2.LINE_AA)
            cv2.circle(wall, (int(x0), int(y0)), rad, col.tolist(), max(1, rad // 6), cv2.LINE_AA)
            for a, l in ((rng.uniform(0, 6.3), 0.5), (rng.uniform(0, 6.3), 0.8)):
                cv2.line(wall, (int(x0), int(y0)), (int(x0 + np.cos(a) * rad * l), int(y0 + np.sin(a) * rad * l)), (0.1, 0.1, 0.1), 1, cv2.LINE_AA)
        else:  # table, chair or cabinet standing at the wall: a top and thin dark legs
            tw = rng.uniform(0.1, 0.4) * w
            ty = rng.uniform(0.55, 0.85) * h
            leg = (col * 0.4).tolist()
            cv2.rectangle(wall, (int(x0), int(ty)), (int(x0 + tw), int(ty + rng.uniform(3, 12))), col.tolist(), -1)
            for lx in (x0 + 3, x0 + tw - 3, x0 + tw * rng.uniform(0.2, 0.8)):
                cv2.line(wall, (int(lx), int(ty)), (int(lx + rng.normal(0, 3)), h), leg, int(rng.integers(1, 5)), cv2.LINE_AA)
            if rng.random() < 0.4:  # cabinet body
                cv2.rectangle(wall, (int(x0), int(ty)), (int(x0 + tw), h), (col * rng.uniform(0.5, 1)).tolist(), -1)


def wall_texture(rng, h, w):
    """The room around the board: painted or panelled wall, clutter on it, often a floor at the bottom."""
    kind = rng.random()
    if kind < 0.5:
        base = rng.uniform(0.55, 0.95) * np.array([1, rng.uniform(0.9, 1), rng.uniform(0.75, 1)])
    elif kind < 0.8:
        base = rng.uniform(0.3, 0.8, 3)
    else:  # wood panelling
        base = np.array([0.55, 0.35, 0.2]) * rng.uniform(0.6, 1.3)
    wall = np.ones((h, w, 3), np.float32) * base.astype(np.float32)
    wall *= 1 + (smooth_noise(rng, h, w, 30) * 0.03 + smooth_noise(rng, h, w, 5) * 0.06)[..., None]
    if rng.random() < 0.7:
        draw_wall_clutter(rng, wall)
    if rng.random() < 0.55:
        draw_floor(rng, wall, int(rng.uniform(0.55, 0.97) * h))
    return np.clip(wall, 0, 1)


def point(xy):
    """An OpenCV pixel coordinate (plain ints) from a float pair."""
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def draw_tray(rng, scene, quad, frame_colour):
    """The marker tray under the board's bottom edge: a lit top face, a darker front face, markers and an eraser."""
    bl, br = quad[3].astype(np.float64), quad[2].astype(np.float64)
    top = rng.uniform(3, 10)
    front = rng.uniform(3, 12)
    ext = rng.uniform(0, 12)
    d = (br - bl) / (np.linalg.norm(br - bl) + 1e-6)
    a0, a1 = bl - d * ext, br + d * ext
    top_face = np.array([a0, a1, a1 + [0, top], a0 + [0, top]])
    front_face = np.array([a0 + [0, top], a1 + [0, top], a1 + [0, top + front], a0 + [0, top + front]])
    tray_colour = frame_colour * rng.uniform(0.7, 1.1)
    cv2.fillConvexPoly(scene, np.round(top_face * 16).astype(np.int32), np.clip(tray_colour * 1.05, 0, 1).tolist(), cv2.LINE_AA, shift=4)
    cv2.fillConvexPoly(scene, np.round(front_face * 16).astype(np.int32), (tray_colour * rng.uniform(0.45, 0.8)).tolist(), cv2.LINE_AA, shift=4)
    # markers lie along the tray: pale barrels with coloured caps and label bands; erasers are dark blocks
    length = np.linalg.norm(a1 - a0)
    for _ in range(rng.integers(0, 8)):
        t = rng.uniform(0.02, 0.95)
        p = a0 + (a1 - a0) * t + [0, top * rng.uniform(0.2, 0.6)]
        ml = min(length * 0.1, rng.uniform(4, 12) * top)
        q = p + d * ml
        width = max(2, int(top * rng.uniform(0.5, 0.9)))
        _, cap = pick_marker_colour(rng)
        if rng.random() < 0.2:  # eraser
            cv2.line(scene, point(p), point(p + d * ml * 0.7), (np.ones(3) * rng.uniform(0.05, 0.4)).tolist(), width + 2)
            continue
        barrel = np.float32(rng.uniform(0.6, 0.95)) * np.ones(3, np.float32) if rng.random() < 0.7 else cap
        cv2.line(scene, point(p), point(q), barrel.tolist(), width, cv2.LINE_AA)
        cv2.line(scene, point(p - [0, width * 0.25]), point(q - [0, width * 0.25]), np.clip(barrel * 1.15, 0, 1).tolist(), 1, cv2.LINE_AA)
        cap_end = p + d * ml * rng.uniform(0.2, 0.35) if rng.random() < 0.5 else q - d * ml * rng.uniform(0.2, 0.35)
        cv2.line(scene, point(cap_end), point(p if cap_end[0] < (p[0] + q[0]) / 2 else q), cap.tolist(), width + 1, cv2.LINE_AA)
        if rng.random() < 0.6:
            mid = (p + q) / 2
            cv2.line(scene, point(mid - d * ml * 0.1), point(mid + d * ml * 0.1), cap.tolist(), width, cv2.LINE_AA)


def generate(seed: int, height: int = 360, width: int = 640) -> Sample:
    rng = np.random.default_rng(seed)
    h, w = height, width
    refl_p, clean_p, ink_p, faint_p, dark_p = render_board_plane(rng, h, w)

    quad, far = board_quad(rng, h, w)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    hom = cv2.getPerspectiveTransform(src, quad)
    warp = lambda img, interp=cv2.INTER_LINEAR: cv2.warpPerspective(img, hom, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    refl_b = warp(refl_p)
    clean_b = warp(clean_p)
    maps = warp(np.dstack([ink_p, faint_p, np.ones((h, w), np.float32), dark_p]))
    ink, faint, board = maps[..., 0] >= 0.5, maps[..., 1] >= 0.3, maps[..., 2] >= 0.5
    ink_darkness = maps[..., 3]

    # wall, board frame and tray around the board
    scene = wall_texture(rng, h, w)
    scene[board] = refl_b[board]
    clean = np.ones((h, w, 3), np.float32)
    clean[board] = clean_b[board]
    frame_mask = np.zeros((h, w), np.uint8)
    frame_w = int(rng.uniform(2, 10) * (0.6 if far else 1.0)) + 1
    quad_i = np.round(quad * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(frame_mask, [quad_i], True, 255, frame_w * 2, cv2.LINE_AA, shift=4)
    frame_colour = np.float32(rng.uniform(0.45, 0.85)) * (1 + rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    fa = frame_mask.astype(np.float32)[..., None] / 255
    scene = scene * (1 - fa) + frame_colour * fa
    if rng.random() < 0.7:  # an aluminium bevel: a dark line where the frame meets the board, a bright outer lip
        centre = quad.mean(0)
        for offset, tone in ((frame_w, rng.uniform(0.3, 0.7)), (-frame_w, rng.uniform(1.05, 1.3))):
            edge = quad + (centre - quad) / np.linalg.norm(centre - quad, axis=1, keepdims=True) * offset * 1.2
            cv2.polylines(scene, [np.round(edge * 16).astype(np.int32).reshape(-1, 1, 2)], True,
                          np.clip(frame_colour * tone, 0, 1).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)
            cv2.polylines(frame_mask, [np.round(edge * 16).astype(np.int32).reshape(-1, 1, 2)], True, 255, 3, cv2.LINE_AA, shift=4)
    if quad[2:, 1].max() < h - 2 and rng.random() < 0.75:  # the bottom edge is in view: a tray with markers
        draw_tray(rng, scene, quad, frame_colour)
    ink &= board & (frame_mask < 128)
    faint &= ink | faint

    # magnets (and sticky notes) on the board: objects, so foreground
    fg_mask = np.zeros((h, w), np.uint8)
    fg_colour = np.zeros((h, w, 3), np.float32)
    if rng.random() < 0.35:
        ys, xs = np.nonzero(board)
        for _ in range(rng.integers(1, 6)):
            if len(xs) == 0:
                break
            i = rng.integers(len(xs))
            mcol = rng.uniform(0.05, 1, 3).tolist()
            size = rng.uniform(3, 12)
            centre = (int(xs[i]), int(ys[i]))
            if rng.random() < 0.6:  # round magnet
                cv2.circle(fg_colour, centre, int(size), mcol, -1)
                cv2.circle(fg_mask, centre, int(size), 255, -1)
            else:  # sticky note
                corner = (int(xs[i] + size * 4), int(ys[i] + size * 4))
                cv2.rectangle(fg_colour, centre, corner, mcol, -1)
                cv2.rectangle(fg_mask, centre, corner, 255, -1)

    # people and objects in front of the board
    occluded = rng.random() < 0.5
    if occluded:
        for _ in range(rng.integers(1, 3)):
            if rng.random() < 0.7:
                draw_person(rng, h, w, fg_mask, fg_colour)
            else:
                draw_object(rng, h, w, fg_mask, fg_colour)

    # lighting: light field, colour cast, cast shadows
    light = illumination(rng, h, w)
    shadow = np.zeros((h, w), np.float32)
    if occluded and rng.random() < 0.5:  # the person's own shadow on the board beside them
        shift = rng.normal(0, 0.08, 2) * [w, h]
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        cast = cv2.warpAffine(fg_mask, m, (w, h)).astype(np.float32) / 255
        shadow = np.maximum(shadow, cv2.GaussianBlur(cast, (0, 0), rng.uniform(3, 20)) * rng.uniform(0.2, 0.6))
    if rng.random() < 0.3:
        cast = draw_hand_shadow_shape(rng, h, w).astype(np.float32) / 255
        soft = rng.choice([rng.uniform(0.5, 2.0), rng.uniform(4, 25)])  # hard or soft edge
        shadow = np.maximum(shadow, cv2.GaussianBlur(cast, (0, 0), soft) * rng.uniform(0.25, 0.65))
    cast_rgb = colour_cast(rng)
    light_rgb = (light * (1 - shadow))[..., None] * cast_rgb
    if rng.random() < 0.3:  # shadows are lit by the ambient light, often bluer
        light_rgb *= 1 + (shadow[..., None] * rng.uniform(0, 0.3) * np.array([-0.5, 0, 0.5], np.float32))
    img = scene * light_rgb

    # specular glare washes the board (and its ink) out towards white
    glare = np.zeros((h, w), np.float32)
    if rng.random() < 0.3:
        for _ in range(rng.integers(1, 3)):
            yy, xx = pixel_grid(h, w)
            cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.8) * h
            sx, sy = rng.uniform(0.04, 0.25) * w, rng.uniform(0.04, 0.2) * h
            g = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
            glare = np.maximum(glare, g * rng.uniform(0.35, 0.85))
        glare *= board
    peak = img.max() if img.max() > 0 else 1
    img = img + glare[..., None] * (np.float32(peak * 1.05) - img)

    # foreground on top, lit by the same light but without the board's shadows and glare
    fa = fg_mask.astype(np.float32)[..., None] / 255
    img = img * (1 - fa) + fg_colour * (light[..., None] * cast_rgb) * fa

    # camera: vignetting, exposure, optics, resampling, noise, tone curve, JPEG
    yy, xx = pixel_grid(h, w)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * w / 4)
    img *= (1 - rng.uniform(0, 0.35) * r2)[..., None]
    board_pixels = img[::4, ::4][board[::4, ::4]] if board[::4, ::4].any() else img[::4, ::4]
    img *= rng.uniform(0.75, 1.25) / max(np.percentile(board_pixels, 90), 0.05)
    blur = rng.random()
    if blur < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    elif blur < 0.42:
        k = int(rng.integers(3, 7))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    if rng.random() < 0.25:  # a low-resolution webcam upscaled to the frame size
        f = rng.uniform(0.5, 0.85)
        img = cv2.resize(cv2.resize(img, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0.003, 0.03)
    img = img + rng.standard_normal((h, w, 3), dtype=np.float32) * sigma * np.sqrt(np.clip(img, 0.02, 1))
    if rng.random() < 0.3:  # chroma noise is blotchy, not per pixel
        img = img + smooth_noise(rng, h, w, 60, 3) * rng.uniform(0, 0.02)
    gamma = rng.uniform(0.8, 1.2)
    tone_curve = np.clip((np.arange(256) / 255.0) ** gamma * 255 + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), tone_curve)
    if rng.random() < 0.8:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(30, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)

    # ink is what a camera can see: the same visibility threshold as for faint markers, after glare's wash-out
    ink &= ink_darkness * (1 - glare) >= INK_VISIBLE_DARKNESS
    fg = fg_mask >= 128
    label = np.full((h, w), CLASS_BOARD, np.uint8)
    label[ink] = CLASS_INK
    label[fg] = CLASS_FOREGROUND
    near_fg = cv2.dilate(fg.astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
    regions = {
        "glare": (glare > 0.2) & ~fg,
        "shadow": (shadow > 0.15) & ~fg,
        "occluder": near_fg if occluded else np.zeros((h, w), bool),
        "faint": cv2.dilate(faint.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0,
    }
    clean_u8 = (np.clip(clean, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Sample(image=out, label=label, clean=clean_u8, regions=regions)


def colourise_label(label):
    palette = np.array([[235, 235, 235], [20, 20, 160], [230, 120, 30]], np.uint8)  # board, ink, fg (RGB)
    return palette[label]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render synthetic whiteboard frames and time the generator.")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write a PNG grid of image|label|clean here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    samples = [generate(args.seed + i) for i in range(args.count)]
    dt = time.perf_counter() - t0
    print(f"{args.count} frames in {dt:.2f}s: {args.count / dt:.1f} images/s (one process, 360x640)")
    if args.out:
        rows = [np.hstack([s.image, colourise_label(s.label), s.clean]) for s in samples[:8]]
        cv2.imwrite(args.out, cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
