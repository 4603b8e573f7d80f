"""A synthetic camera clip for testing the live app: a board with writing, a presenter who walks in, stands in
front of part of it (and erases what is behind them), then walks out. The clean board is known at every frame.

  PYTHONPATH=src python -m whiteboard.clip /tmp/clip.y4m      # Chromium's fake camera plays it, looping

Built from the synthetic generator's own pieces (board plane, wall, light, people). Every frame carries its
number in a 10-bit barcode in the bottom-left corner, below the board, so a test can tell which frame the
app's model saw.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from whiteboard import synth

W, H = 640, 360
FPS = 10
# (phase, seconds): the presenter is absent, walks in from the right, stands, walks out to the left, is gone.
PHASES = (("empty", 5.0), ("walk-in", 2.0), ("stand", 14.0), ("walk-out", 2.0), ("gone", 18.0))
# Board corners in the frame (TL, TR, BR, BL), pixels: a mild keystone, clear of the barcode rows.
QUAD = np.float32([[26, 14], [616, 24], [626, 328], [14, 336]])
TAG_BITS, TAG_W, TAG_H = 10, 32, 12


@dataclass
class Board:
    refl: np.ndarray    # HxWx3 float, board-plane reflectance as the camera sees it
    clean: np.ndarray   # HxWx3 uint8, the ideal clean board
    ink: np.ndarray     # HxW bool, ground-truth ink


@dataclass
class Clip:
    before: Board
    after: Board                   # after the presenter erased what was behind them
    erased: np.ndarray             # HxW bool, board plane
    covered: np.ndarray            # HxW bool, board plane: behind the presenter while they stand
    phase_of: list                 # phase name per frame
    person_x: list                 # presenter's horizontal shift per frame (None: absent)
    person_mask: np.ndarray
    person_colour: np.ndarray
    wall: np.ndarray
    light: np.ndarray
    seed: int

    @property
    def frames(self):
        return len(self.phase_of)

    def frames_in(self, phase):
        return [i for i, p in enumerate(self.phase_of) if p == phase]


def _homography():
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    return cv2.getPerspectiveTransform(src, QUAD)


def _person(seed):
    """A presenter about a third of the frame wide whose head is at the board's top half; centred at x = W/2."""
    for attempt in range(200):
        rng = np.random.default_rng(seed * 1000 + attempt)
        mask = np.zeros((H, W), np.uint8)
        colour = np.zeros((H, W, 3), np.float32)
        synth.draw_person(rng, H, W, mask, colour)
        ys, xs = np.nonzero(mask > 127)
        if len(xs) == 0 or xs.min() <= 0 or xs.max() >= W - 1:
            continue
        width = xs.max() - xs.min()
        if 0.22 * W < width < 0.36 * W and ys.min() < 0.35 * H:
            shift = np.float32([[1, 0, W / 2 - (xs.min() + xs.max()) / 2], [0, 1, 0]])
            mask = cv2.warpAffine(mask, shift, (W, H))
            colour = cv2.warpAffine(colour, shift, (W, H))
            return mask, colour
    raise RuntimeError("no presenter of the wanted size found")


def _board(seed):
    """A board plane with plenty of clearly visible writing (no faint layers), from the generator."""
    for attempt in range(200):
        rng = np.random.default_rng(seed * 1000 + attempt)
        refl, clean, ink_cov, faint = synth.render_board_plane(rng, H, W)[:4]
        ink = ink_cov >= 0.5
        if faint.any() or not 0.04 < ink.mean() < 0.12:
            continue
        # the writing should be spread over the board, so the presenter hides some of it
        if min(ink[:, : W // 3].mean(), ink[:, W // 3: 2 * W // 3].mean(), ink[:, 2 * W // 3:].mean()) < 0.02:
            continue
        return refl, clean, ink
    raise RuntimeError("no board with enough writing found")


def _erase(board, region):
    """The board after wiping `region`: ink gone, the surface's own colour (ink filtered out) left behind."""
    surface = cv2.GaussianBlur(cv2.dilate(board.refl, np.ones((15, 15), np.uint8)), (0, 0), 4)
    a = region.astype(np.float32)[..., None]
    clean = board.clean.copy()
    clean[region] = 255
    return Board(refl=board.refl * (1 - a) + surface * a, clean=clean, ink=board.ink & ~region)


def make_clip(seed=0) -> Clip:
    refl, clean, ink = _board(seed)
    before = Board(refl=refl, clean=(np.clip(clean, 0, 1) * 255 + 0.5).astype(np.uint8), ink=ink)
    mask, colour = _person(seed)
    rng = np.random.default_rng(seed)
    wall = synth.wall_texture(rng, H, W)
    light = synth.illumination(rng, H, W)[..., None] * synth.colour_cast(rng)
    light = (0.35 + 0.65 * light / light.max()).astype(np.float32)  # keep the board well exposed

    stand_x = -0.12 * W  # standing a little left of centre
    phase_of, person_x = [], []
    for phase, seconds in PHASES:
        n = int(round(seconds * FPS))
        for i in range(n):
            t = (i + 1) / n
            x = {"empty": None, "gone": None, "stand": stand_x,
                 "walk-in": 0.75 * W + (stand_x - 0.75 * W) * t,
                 "walk-out": stand_x + (-0.75 * W - stand_x) * t}[phase]
            phase_of.append(phase)
            person_x.append(x)

    # what the presenter covers while standing, in the board plane; they erase its inside
    standing = cv2.warpAffine(mask, np.float32([[1, 0, stand_x], [0, 1, 0]]), (W, H))
    to_plane = np.linalg.inv(_homography())
    covered = cv2.warpPerspective(standing, to_plane, (W, H), flags=cv2.INTER_NEAREST) > 127
    erased = cv2.erode(covered.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    after = _erase(before, erased)
    return Clip(before=before, after=after, erased=erased, covered=covered, phase_of=phase_of, person_x=person_x,
                person_mask=mask, person_colour=colour, wall=wall, light=light, seed=seed)


def render_frame(clip: Clip, index: int) -> np.ndarray:
    """Frame `index` as the camera sees it (HxWx3 uint8 RGB), with its barcode."""
    phase = clip.phase_of[index]
    board = clip.after if phase in ("walk-out", "gone") else clip.before
    hom = _homography()
    plane = cv2.warpPerspective(board.refl, hom, (W, H), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.ones((H, W), np.float32), hom, (W, H), flags=cv2.INTER_LINEAR)[..., None]
    scene = clip.wall * (1 - inside) + plane * inside
    frame_edge = np.zeros((H, W), np.uint8)
    cv2.polylines(frame_edge, [np.round(QUAD * 16).astype(np.int32).reshape(-1, 1, 2)], True, 255, 5, cv2.LINE_AA, shift=4)
    e = frame_edge.astype(np.float32)[..., None] / 255
    scene = scene * (1 - e) + 0.6 * e
    img = scene * clip.light
    x = clip.person_x[index]
    if x is not None:
        shift = np.float32([[1, 0, x], [0, 1, 0]])
        a = cv2.warpAffine(clip.person_mask, shift, (W, H)).astype(np.float32)[..., None] / 255
        col = cv2.warpAffine(clip.person_colour, shift, (W, H))
        img = img * (1 - a) + col * clip.light * a
    rng = np.random.default_rng(clip.seed * 100_000 + index)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * 0.008
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    out[H - TAG_H:, : TAG_BITS * TAG_W] = 0
    for bit in range(TAG_BITS):
        if (index >> bit) & 1:
            out[H - TAG_H:, bit * TAG_W:(bit + 1) * TAG_W] = 255
    return out


def write_y4m(clip: Clip, path) -> None:
    """YUV4MPEG2 4:2:0, the format Chromium's --use-file-for-fake-video-capture plays."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(clip.frames):
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(render_frame(clip, i), cv2.COLOR_RGB2YUV_I420).tobytes())


def corners_normalised():
    return (QUAD / [W, H]).tolist()


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/whiteboard_clip.y4m"
    clip = make_clip()
    write_y4m(clip, out)
    print(f"wrote {out}: {clip.frames} frames at {FPS} fps; corners {corners_normalised()}")
