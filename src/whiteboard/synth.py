"""Synthetic whiteboard frames with per-pixel labels.

generate(seed) renders one camera frame of a whiteboard scene and returns:
  image   HxWx3 uint8 RGB   the degraded camera frame
  label   HxW   uint8       CLASS_BOARD / CLASS_INK / CLASS_FOREGROUND
  clean   HxWx3 uint8 RGB   the ideal board behind any foreground (white board, true ink colours)
  regions dict of HxW bool  where a condition applies: glare, shadow, occluder, faint

Everything is drawn from np.random.default_rng(seed), so a seed always gives the same frame.

The scene is built like a photograph:
  board plane (ink layers, ghosts, stains) -> perspective onto the frame -> wall, frame, tray, magnets
  -> illumination (gradient, vignetting, colour cast), cast shadows, specular glare
  -> people and objects in front -> camera (blur, resampling, noise, JPEG).
Class "board" means static background that is not writing: board surface, its frame and tray, the
wall; "foreground" means anything in front of the board (people, objects, magnets).

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
        spacing = max(3.0, self.scale * rng.uniform(0.3, 0.8))
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
    """Board-plane reflectance (HxWx3), clean board, ink coverage and faint-ink coverage."""
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
        if faint:
            faint_cov = np.maximum(faint_cov, cover)
    return refl, clean, ink_cov, faint_cov


# ----------------------------------------------------------------------------- people and objects

SKIN_TONES = np.array([[0.95, 0.78, 0.66], [0.87, 0.67, 0.52], [0.72, 0.52, 0.38], [0.52, 0.36, 0.25], [0.36, 0.25, 0.18]], np.float32)


def textured_fill(rng, h, w, base):
    """Clothing-like texture: solid with wrinkles, stripes, or checks."""
    kind = rng.integers(4)
    tex = np.ones((h, w, 3), np.float32) * base
    if kind == 1:
        period = rng.uniform(4, 20)
        a = rng.uniform(0, np.pi)
        yy, xx = pixel_grid(h, w)
        stripe = (np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period) > 0).astype(np.float32)
        other = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        tex = tex * (1 - stripe[..., None] * 0.6) + other * stripe[..., None] * 0.6
    elif kind == 2:
        period = rng.uniform(6, 24)
        yy, xx = pixel_grid(h, w)
        check = ((np.sin(xx * 2 * np.pi / period) > 0) ^ (np.sin(yy * 2 * np.pi / period) > 0)).astype(np.float32)
        tex *= 1 - 0.35 * check[..., None]
    wrinkles = smooth_noise(rng, h, w, 12) * 0.15 + smooth_noise(rng, h, w, 40) * 0.06
    return np.clip(tex * (1 + wrinkles[..., None]), 0, 1)


def draw_person(rng, h, w, mask, colour):
    """A person seen from behind or the side: torso, head, neck, hair, arms and hands."""
    r = rng.uniform(0.05, 0.16) * h                     # head radius sets the size of the person
    cx = rng.uniform(-0.1, 1.1) * w
    head_y = rng.uniform(0.05, 0.6) * h
    shoulder_y = head_y + r * rng.uniform(1.8, 2.3)
    half_shoulder = r * rng.uniform(1.9, 2.6)
    body = np.zeros((h, w), np.uint8)
    torso = np.array([[cx - half_shoulder, shoulder_y + r * 0.3], [cx - half_shoulder * 0.9, shoulder_y - r * 0.15],
                      [cx + half_shoulder * 0.9, shoulder_y - r * 0.15], [cx + half_shoulder, shoulder_y + r * 0.3],
                      [cx + half_shoulder * 0.85, h + 10], [cx - half_shoulder * 0.85, h + 10]])
    cv2.fillPoly(body, [np.round(torso).astype(np.int32)], 255, cv2.LINE_AA)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.05)
    cloth = rng.uniform(0.05, 0.9, 3).astype(np.float32) * rng.choice([0.4, 1.0])
    tex = textured_fill(rng, h, w, cloth)
    # arms: one may reach up to the board
    skin_mask = np.zeros((h, w), np.uint8)
    for side in (-1, 1):
        sx, sy = cx + side * half_shoulder * 0.9, shoulder_y + r * 0.2
        if rng.random() < 0.4:
            ex, ey = sx + side * r * rng.uniform(0.5, 2.5), sy - r * rng.uniform(-0.5, 2.0)
            hx, hy = ex + side * r * rng.uniform(-0.5, 2.0), ey - r * rng.uniform(0.5, 2.5)
        else:
            ex, ey = sx + side * r * rng.uniform(0.1, 0.6), sy + r * rng.uniform(2, 3)
            hx, hy = ex + side * r * rng.uniform(-0.8, 0.8), ey + r * rng.uniform(1.5, 2.8)
        arm = np.round(np.array([[sx, sy], [ex, ey], [hx, hy]])).astype(np.int32)
        cv2.polylines(body, [arm], False, 255, max(2, int(r * rng.uniform(0.8, 1.1))), cv2.LINE_AA)
        cv2.ellipse(skin_mask, (int(hx), int(hy)), (max(2, int(r * 0.45)), max(2, int(r * 0.6))), rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    neck_w = r * 0.5
    cv2.rectangle(skin_mask, (int(cx - neck_w), int(head_y)), (int(cx + neck_w), int(shoulder_y)), 255, -1)
    cv2.ellipse(skin_mask, (int(cx), int(head_y)), (int(r * 0.85), int(r)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    hair = np.zeros((h, w), np.uint8)
    hair_cover = rng.uniform(0.2, 1.0)  # 1.0: seen from behind, all hair
    cv2.ellipse(hair, (int(cx), int(head_y - r * 0.1)), (int(r * 0.9), int(r * (0.6 + 0.5 * hair_cover))), 0, 180, 360, 255, -1, cv2.LINE_AA)
    if hair_cover > 0.7:
        cv2.ellipse(hair, (int(cx), int(head_y)), (int(r * 0.88), int(r * 1.02)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    hair_colour = rng.uniform(0.03, 0.5) * np.array([1.0, 0.85, 0.7], np.float32)

    skin_tex = skin * (1 + smooth_noise(rng, h, w, 20)[..., None] * 0.08)
    for layer, col in ((body, tex), (skin_mask, skin_tex), (hair, hair_colour)):
        a = layer.astype(np.float32)[..., None] / 255
        colour[:] = colour * (1 - a) + col * a
        np.maximum(mask, layer, out=mask)
    # shading across the body gives it volume
    shade = np.clip(1 - np.abs(np.arange(w, dtype=np.float32) - cx) / (half_shoulder * 3), 0.5, 1)
    colour *= np.where(mask[..., None] > 0, (0.75 + 0.25 * shade)[None, :, None], 1)


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
    tex = textured_fill(rng, h, w, rng.uniform(0.05, 0.95, 3).astype(np.float32))
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


def wall_texture(rng, h, w):
    kind = rng.random()
    if kind < 0.5:
        base = rng.uniform(0.55, 0.95) * np.array([1, rng.uniform(0.9, 1), rng.uniform(0.75, 1)])
    elif kind < 0.8:
        base = rng.uniform(0.3, 0.8, 3)
    else:  # wood panelling
        base = np.array([0.55, 0.35, 0.2]) * rng.uniform(0.6, 1.3)
    wall = np.ones((h, w, 3), np.float32) * base.astype(np.float32)
    wall *= 1 + (smooth_noise(rng, h, w, 30) * 0.03 + smooth_noise(rng, h, w, 5) * 0.06)[..., None]
    if rng.random() < 0.4:  # a horizontal band: skirting, wood rail or floor
        y = int(rng.uniform(0.6, 0.95) * h)
        band = rng.uniform(0.1, 0.7, 3).astype(np.float32)
        wall[y:] = band * (1 + smooth_noise(rng, h - y, w, 20)[..., None] * 0.1)
    if rng.random() < 0.3:  # a picture, door or poster
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        cv2.rectangle(wall, (int(x0), int(y0)), (int(x0 + rng.uniform(30, 150)), int(y0 + rng.uniform(40, 200))), rng.uniform(0.1, 0.9, 3).tolist(), -1)
    return np.clip(wall, 0, 1)


def generate(seed: int, height: int = 360, width: int = 640) -> Sample:
    rng = np.random.default_rng(seed)
    h, w = height, width
    refl_p, clean_p, ink_p, faint_p = render_board_plane(rng, h, w)

    quad, far = board_quad(rng, h, w)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    hom = cv2.getPerspectiveTransform(src, quad)
    warp = lambda img, interp=cv2.INTER_LINEAR: cv2.warpPerspective(img, hom, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    refl_b = warp(refl_p)
    clean_b = warp(clean_p)
    maps = warp(np.dstack([ink_p, faint_p, np.ones((h, w), np.float32)]))
    ink, faint, board = maps[..., 0] >= 0.5, maps[..., 1] >= 0.3, maps[..., 2] >= 0.5

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
    if far and rng.random() < 0.7:  # marker tray under the bottom edge with a few markers on it
        bl, br = quad[3], quad[2]
        depth = rng.uniform(4, 12)
        tray = np.array([bl + [-5, 0], br + [5, 0], br + [10, depth], bl + [-10, depth]])
        cv2.fillConvexPoly(scene, np.round(tray).astype(np.int32), (frame_colour * 0.8).tolist(), cv2.LINE_AA)
        for _ in range(rng.integers(0, 6)):
            t = rng.uniform(0.05, 0.9)
            p = bl + (br - bl) * t + [0, depth * 0.3]
            _, mc = pick_marker_colour(rng)
            cv2.rectangle(scene, (int(p[0]), int(p[1])), (int(p[0] + rng.uniform(15, 35)), int(p[1] + max(2, depth * 0.4))), mc.tolist(), -1)
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
