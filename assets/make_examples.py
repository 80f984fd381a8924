"""Draw the bundled example videos and their multiple-choice QA sets into assets/examples/.

    python assets/make_examples.py            # regenerate everything (overwrites)
    python assets/make_examples.py --out DIR  # somewhere else

Each example is a short synthetic clip of one content type the STTM paper treats differently
(static, fast motion, text overlay, scene cuts, camera pan, VNBench-style needles). Every
question is written from the same variables that place what it asks about (the needle spans,
the pan step, the caption words, ...), so the answer letters are right by construction;
tests/test_examples.py re-measures each answer on the decoded pixels.
Deterministic: fixed seeds, no downloads, PIL's built-in font only. Every clip is 256 px wide:
with this PyAV wheel's libx264, other widths (e.g. 192) give different bytes from run to run
(decoded pixels differ slightly; x264's SIMD code seems to read uninitialised row padding),
while widths that are multiples of 128 encode byte-identically.

Needle clips: each needle (and each gap between two sightings of the same needle) lasts at
least as long as the largest gap between the frames a uniform 8-frame sample takes, so any
uniform sample of >= 8 frames sees every needle, and counts sightings right.
"""
from __future__ import annotations

import argparse
import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sttm_core.video import write_video

OUT = Path(__file__).resolve().parent / "examples"
LETTERS = "ABCD"

# Saturated needle / object colours; haystack backgrounds stay desaturated so these are unique.
RED, BLUE, GREEN, YELLOW = (225, 30, 30), (30, 70, 230), (30, 190, 60), (250, 215, 0)
ORANGE, PURPLE, WHITE = (245, 140, 20), (140, 60, 170), (255, 255, 255)


@dataclass
class Question:
    question: str
    answer: str            # the right option's text
    distractors: list[str]  # three wrong options
    task: str


@dataclass
class Example:
    name: str                  # file stem; also the QA category
    frames: np.ndarray         # [T, H, W, 3] uint8
    fps: int
    questions: list[Question]


# ----------------------------------------------------------------------------- drawing helpers

def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def vertical_gradient(h: int, w: int, top, bottom) -> np.ndarray:
    """[h, w, 3] float32 from colour `top` (row 0) to `bottom` (last row)."""
    a = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to((1 - a) * np.float32(top) + a * np.float32(bottom), (h, w, 3)).copy()


def smooth_field(rng, h: int, w: int, waves: int = 4, phase=0.0) -> np.ndarray:
    """[h, w] float32 in about [-1, 1]: a sum of low-frequency plane waves (no fine detail, so
    it compresses well). `phase` shifts every wave, for slowly drifting textures."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(waves):
        fy, fx = rng.uniform(-1, 1, 2) * 2 * np.pi / rng.uniform(60, 160)
        out += np.sin(fy * y + fx * x + rng.uniform(0, 2 * np.pi) + phase * rng.uniform(0.5, 1.5))
    return out / waves


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def star(cx: float, cy: float, r: float, points: int = 5) -> list[tuple[float, float]]:
    """Vertices of a `points`-pointed star around (cx, cy), pointing up."""
    angles = np.pi * np.arange(2 * points) / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, r, 0.45 * r)
    return list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))


def font(size: int):
    """PIL's built-in font at `size` px (scalable in Pillow >= 10.1; else the bitmap one)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour):
    if shape == "star":
        draw.polygon(star(cx, cy, r), fill=colour)
    elif shape == "square":
        draw.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=colour)
    elif shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        raise ValueError(shape)


# ----------------------------------------------------------------------------- the examples

def static() -> Example:
    """A textured still scene with three fixed shapes; only a tiny light blinks."""
    name, fps, T, H, W = "static", 10, 40, 192, 256
    rng = rng_for(name)
    bg = vertical_gradient(H, W, (120, 170, 190), (225, 215, 185))
    bg += 14 * smooth_field(rng, H, W)[..., None]
    img = Image.fromarray(to_uint8(bg))
    d = ImageDraw.Draw(img)
    d.ellipse([30, 100, 94, 164], fill=ORANGE)                       # circle, left
    d.rectangle([150, 106, 220, 170], fill=PURPLE)                   # rectangle, bottom right
    d.polygon([(56, 20), (96, 84), (16, 84)], fill=GREEN)            # triangle, top left
    d.rectangle([W - 26, 6, W - 6, 26], fill=(40, 40, 48))          # light housing, top right
    base = np.asarray(img)
    light = (slice(11, 21), slice(W - 21, W - 11))
    frames = np.repeat(base[None], T, axis=0)
    on = [t for t in range(T) if (t // 5) % 2 == 0]                 # 0.5 s on, 0.5 s off
    for t in on:
        frames[t][light] = (255, 250, 170)
    qs = [Question("What colour is the circle in the video?", "orange",
                   ["blue", "pink", "grey"], "attribute"),
          Question("How many large shapes are drawn in the scene?", "3", ["2", "4", "5"],
                   "counting"),
          Question("Where is the small blinking light?", "top-right corner",
                   ["top-left corner", "bottom-left corner", "bottom-right corner"], "retrieval"),
          Question("What happens in the video?",
                   "nothing moves except a small blinking light",
                   ["the camera pans to the left", "a ball bounces across the scene",
                    "the scene cuts to a different place"], "motion")]
    return Example(name, frames, fps, qs)


def fast_motion() -> Example:
    """A red ball flies left -> right and a blue square drops top -> bottom, fast, over a still
    background; both wrap around when they leave the frame."""
    name, fps, T, H, W = "fast_motion", 12, 36, 192, 256
    rng = rng_for(name)
    bg = vertical_gradient(H, W, (200, 205, 190), (150, 160, 150))
    bg += 12 * smooth_field(rng, H, W)[..., None]
    bg = to_uint8(bg)
    frames = np.empty((T, H, W, 3), np.uint8)
    ball_x, square_y = [], []
    for t in range(T):
        img = Image.fromarray(bg)
        d = ImageDraw.Draw(img)
        bx = (40 + 16 * t) % (W + 40) - 20                          # 16 px per frame
        by = 60 + 18 * np.sin(t / 3)
        sy = (50 + 11 * t) % (H + 36) - 18                          # 11 px per frame
        draw_shape(d, "square", 190, sy, 15, BLUE)
        draw_shape(d, "circle", bx, by, 14, RED)
        frames[t] = np.asarray(img)
        ball_x.append(bx)
        square_y.append(sy)
    qs = [Question("What colour is the ball?", "red", ["blue", "green", "yellow"], "attribute"),
          Question("In which direction does the ball move?", "from left to right",
                   ["from right to left", "from top to bottom", "it does not move"], "motion"),
          Question("In which direction does the square move?", "from top to bottom",
                   ["from bottom to top", "from left to right", "from right to left"], "motion")]
    return Example(name, frames, fps, qs)


CAPTION_H = 22


def caption_strip(word: str, width: int) -> np.ndarray:
    """[CAPTION_H, width, 3] uint8: the caption bar with `word` centred in white."""
    img = Image.new("RGB", (width, CAPTION_H), (25, 25, 30))
    d = ImageDraw.Draw(img)
    d.text((width / 2, CAPTION_H / 2), word, font=font(15), fill=WHITE, anchor="mm")
    return np.asarray(img)


def text_overlay() -> Example:
    """A still landscape with a caption bar whose word changes every second."""
    name, fps, T, H, W = "text_overlay", 10, 50, 144, 256
    rng = rng_for(name)
    pool = ["RIVER", "CLOUD", "TIGER", "PIANO", "CANDLE", "ROCKET", "GARDEN", "WINTER", "BRIDGE"]
    order = [pool[i] for i in rng.permutation(len(pool))]
    words, absent = order[:5], order[5:]
    sky = vertical_gradient(H, W, (110, 160, 225), (200, 220, 240))
    img = Image.fromarray(to_uint8(sky))
    d = ImageDraw.Draw(img)
    d.ellipse([190, 14, 222, 46], fill=(250, 235, 150))                             # sun
    d.polygon([(0, 95), (70, 60), (150, 92), (210, 70), (256, 90), (256, 144), (0, 144)],
              fill=(90, 150, 80))                                                    # hills
    d.rectangle([40, 78, 80, 110], fill=(200, 190, 170))                            # house
    d.polygon([(34, 80), (60, 60), (86, 80)], fill=(150, 70, 60))
    scene = np.asarray(img)
    frames = np.repeat(scene[None], T, axis=0)
    for t in range(T):
        frames[t, H - CAPTION_H:] = caption_strip(words[t // fps], W)
    qs = [Question("Which word is shown in the caption first?", words[0],
                   [words[2], words[4], absent[0]], "ordering"),
          Question("Which word is shown in the caption last?", words[4],
                   [words[0], words[1], absent[1]], "ordering"),
          Question("Which of these words appears in a caption?", words[2], absent[1:4],
                   "retrieval"),
          Question("How many different captions are shown?", "5", ["3", "4", "6"], "counting")]
    return Example(name, frames, fps, qs)


def scene_cuts() -> Example:
    """Four one-second scenes (beach, forest, night city, desert) joined by hard cuts; each
    scene has a little motion of its own."""
    name, fps, T, H, W = "scene_cuts", 10, 40, 192, 256
    rng = rng_for(name)

    def beach(t, d):
        d.rectangle([0, 0, W, 100], fill=(90, 160, 235))
        d.rectangle([0, 100, W, 135], fill=(30, 110, 180))
        d.rectangle([0, 135, W, H], fill=(235, 210, 150))
        d.ellipse([30 + 2 * t, 20, 62 + 2 * t, 52], fill=(255, 225, 60))

    def forest(t, d):
        d.rectangle([0, 0, W, H], fill=(170, 210, 170))
        d.rectangle([0, 140, W, H], fill=(60, 120, 50))
        for i, x in enumerate((25, 90, 155, 220)):
            sway = 2 * np.sin(t / 2 + i)
            d.rectangle([x - 5, 90, x + 5, 150], fill=(100, 70, 40))
            d.ellipse([x - 24 + sway, 40, x + 24 + sway, 100], fill=(40, 130, 50))

    windows = rng.integers(0, 2, (10, 4, 3))

    def night(t, d):
        d.rectangle([0, 0, W, H], fill=(15, 20, 50))
        d.ellipse([195, 20, 225, 50], fill=(235, 235, 210))
        for i, (x0, top) in enumerate(((20, 90), (95, 60), (170, 100))):
            d.rectangle([x0, top, x0 + 45, H], fill=(55, 55, 70))
            for r in range(4):
                for c in range(3):
                    lit = windows[t % 10, r, c] if i == 1 else windows[0, r, c]
                    if lit:
                        y = top + 12 + 22 * r
                        d.rectangle([x0 + 6 + 13 * c, y, x0 + 13 + 13 * c, y + 9],
                                    fill=(250, 220, 120))

    def desert(t, d):
        for y in range(0, 110, 2):
            d.rectangle([0, y, W, y + 2], fill=(250, 170 - y // 3, 80))
        d.polygon([(70, 130), (128, 55), (186, 130)], fill=(200, 160, 90))
        d.rectangle([0, 128, W, H], fill=(225, 180, 110))
        d.ellipse([10 + 3 * t, 140, 30 + 3 * t, 148], fill=(120, 100, 70))        # tumbleweed

    scenes = [("a beach with the sea and a yellow sun", beach),
              ("a forest of green trees", forest),
              ("a city at night with a moon", night),
              ("a desert with a pyramid", desert)]
    frames = np.empty((T, H, W, 3), np.uint8)
    per = T // len(scenes)
    for t in range(T):
        img = Image.new("RGB", (W, H))
        scenes[t // per][1](t % per, ImageDraw.Draw(img))
        frames[t] = np.asarray(img)
    names = [s[0] for s in scenes]
    qs = [Question("How many hard scene cuts are there in the video?", "3", ["1", "2", "5"],
                   "counting"),
          Question("Which scene is shown first?", names[0], names[1:], "ordering"),
          Question("Which scene is shown last?", names[3], names[:3], "ordering"),
          Question("Which scene comes right after the beach?", names[1], [names[2], names[3],
                   "a snowy mountain"], "ordering")]
    return Example(name, frames, fps, qs)


def camera_pan() -> Example:
    """A wide procedural landscape panned to the right (content slides left), 5 px per frame;
    a red house stands at the far right end, so it only comes into view near the end."""
    name, fps, T, H, W, step = "camera_pan", 10, 50, 144, 256, 5
    rng = rng_for(name)
    PW = W + step * (T - 1)
    pano = vertical_gradient(H, PW, (120, 165, 225), (215, 225, 235))
    x = np.arange(PW, dtype=np.float32)
    ridge = 55 + sum(a * np.sin(2 * np.pi * x / p + rng.uniform(0, 6.3))
                     for a, p in ((14, 180), (7, 70), (3, 23)))
    hills = 100 + sum(a * np.sin(2 * np.pi * x / p + rng.uniform(0, 6.3))
                      for a, p in ((8, 140), (4, 45)))
    y = np.arange(H, dtype=np.float32)[:, None]
    pano[y >= ridge] = (115, 115, 140)                                   # far mountains
    pano[(y >= ridge) & (y < ridge + 8)] = (235, 235, 240)               # snow line
    pano[y >= hills] = (80, 140, 70)                                      # near hills
    pano += 8 * smooth_field(rng, H, PW, waves=6)[..., None]
    img = Image.fromarray(to_uint8(pano))
    d = ImageDraw.Draw(img)
    for tx in rng.uniform(10, PW - 90, 9):                               # trees, not by the house
        ty = float(hills[int(tx)]) + 10
        d.rectangle([tx - 2, ty, tx + 2, ty + 16], fill=(90, 60, 35))
        d.polygon([(tx, ty - 22), (tx + 10, ty + 4), (tx - 10, ty + 4)], fill=(35, 95, 45))
    hx, hy = PW - 50, float(hills[PW - 50]) + 6
    d.rectangle([hx - 18, hy - 6, hx + 18, hy + 22], fill=RED)          # red house
    d.polygon([(hx - 24, hy - 4), (hx, hy - 24), (hx + 24, hy - 4)], fill=(110, 40, 30))
    pano = np.asarray(img)
    frames = np.stack([pano[:, step * t:step * t + W] for t in range(T)])
    qs = [Question("In which direction does the camera pan?", "to the right",
                   ["to the left", "upwards", "downwards"], "motion"),
          Question("What comes into view near the end of the video?", "a red house",
                   ["a blue car", "a lighthouse", "a windmill"], "retrieval"),
          Question("What is in the background of the landscape?", "snowy mountains",
                   ["the sea", "skyscrapers", "a desert"], "attribute")]
    return Example(name, frames, fps, qs)


def haystack(rng, T: int, H: int, W: int) -> np.ndarray:
    """[T, H, W, 3] uint8: a desaturated texture drifting (its waves' phases advance each
    frame) under six slowly moving grey discs."""
    texture_seed = int(rng.integers(1 << 31))
    discs = rng.uniform([20, 20, -1.5, -1.5, 10], [W - 20, H - 20, 1.5, 1.5, 22], (6, 5))
    tones = rng.uniform(90, 200, 6)
    base = vertical_gradient(H, W, (150, 145, 135), (110, 108, 102))
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        texture = smooth_field(np.random.default_rng(texture_seed), H, W, phase=0.08 * t)
        img = Image.fromarray(to_uint8(base + 22 * texture[..., None]))
        d = ImageDraw.Draw(img)
        for (x0, y0, vx, vy, r), tone in zip(discs, tones):
            cx, cy = x0 + vx * t, y0 + vy * t
            grey = (int(tone), int(tone), int(0.95 * tone))
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=grey)
        frames[t] = np.asarray(img)
    return frames


def stamp(frames: np.ndarray, span: tuple[int, int], paint) -> None:
    """Apply `paint(ImageDraw)` to frames[span[0]:span[1]] in place."""
    for t in range(*span):
        img = Image.fromarray(frames[t])
        paint(ImageDraw.Draw(img))
        frames[t] = np.asarray(img)


def needle_word() -> Example:
    """Haystack with the word APPLE in bold yellow for one second in the middle."""
    name, fps, T, H, W = "needle_word", 10, 60, 192, 256
    rng = rng_for(name)
    frames = haystack(rng, T, H, W)
    word, f = "APPLE", font(34)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), word, font=f,
                                                                       stroke_width=2)
    x = int(rng.integers(4, W - (x1 - x0) - 4)) - x0
    y = int(rng.integers(4, H - (y1 - y0) - 4)) - y0
    span = (26, 36)
    stamp(frames, span, lambda d: d.text((x, y), word, font=f, fill=YELLOW, stroke_width=2,
                                         stroke_fill=YELLOW))
    qs = [Question("What word appears briefly in the video?", word, ["LEMON", "GRAPE", "MANGO"],
                   "retrieval"),
          Question("What colour is the word that appears?", "yellow", ["red", "blue", "green"],
                   "retrieval"),
          Question("When does the word appear?", "in the middle of the video",
                   ["near the beginning", "near the end", "during the whole video"], "temporal")]
    return Example(name, frames, fps, qs)


SHAPES = {"red star": ("star", RED), "blue square": ("square", BLUE),
          "green triangle": ("triangle", GREEN), "yellow circle": ("circle", YELLOW)}


def needle_shapes(rng, frames, placements) -> None:
    """Paint each (label, span) of `placements` at a random place of the frames."""
    _, H, W, _ = frames.shape
    for label, span in placements:
        shape, colour = SHAPES[label]
        cx, cy = rng.uniform(34, W - 34), rng.uniform(34, H - 34)
        stamp(frames, span, lambda d, s=shape, c=colour, x=cx, y=cy: draw_shape(d, s, x, y, 26, c))


def needle_order() -> Example:
    """Haystack with three coloured shapes, one after the other, in a seeded order."""
    name, fps, T, H, W = "needle_order", 10, 70, 192, 256
    rng = rng_for(name)
    frames = haystack(rng, T, H, W)
    labels = ["red star", "blue square", "green triangle"]
    order = [labels[i] for i in rng.permutation(3)]
    spans = [(8, 18), (30, 40), (52, 62)]
    needle_shapes(rng, frames, list(zip(order, spans)))
    perms = [order, [order[1], order[0], order[2]], [order[2], order[1], order[0]],
             [order[0], order[2], order[1]]]
    as_text = [", then ".join(p) for p in perms]
    qs = [Question("Which shape appears first?", order[0], [order[1], order[2], "yellow circle"],
                   "ordering"),
          Question("Which shape appears last?", order[2], [order[0], order[1], "yellow circle"],
                   "ordering"),
          Question("In what order do the shapes appear?", as_text[0], as_text[1:], "ordering")]
    return Example(name, frames, fps, qs)


def needle_count() -> Example:
    """Haystack where a red star shows up three separate times and a blue square once."""
    name, fps, T, H, W = "needle_count", 10, 80, 192, 256
    rng = rng_for(name)
    frames = haystack(rng, T, H, W)
    stars = [(6, 18), (34, 46), (62, 74)]
    square = [(20, 32)]
    needle_shapes(rng, frames,
                  [("red star", s) for s in stars] + [("blue square", s) for s in square])
    qs = [Question("How many times does the red star appear?", str(len(stars)), ["1", "2", "4"],
                   "counting"),
          Question("How many times does the blue square appear?", str(len(square)),
                   ["0", "2", "3"], "counting"),
          Question("Which shape appears more than once?", "the red star",
                   ["the blue square", "the green triangle", "none of them"], "counting")]
    return Example(name, frames, fps, qs)


EXAMPLES = (static, fast_motion, text_overlay, scene_cuts, camera_pan,
            needle_word, needle_order, needle_count)


# ----------------------------------------------------------------------------- QA + writing

def qa_records(example: Example) -> list[dict]:
    """JSON-lines records of the example's questions, options shuffled by a fixed seed."""
    records = []
    for k, q in enumerate(example.questions, 1):
        options = [q.answer, *q.distractors]
        assert len(options) == len(set(options)) == len(LETTERS), options
        random.Random(f"{example.name}/{k}").shuffle(options)
        records.append({"video": f"{example.name}.mp4", "question": q.question, "options": options,
                        "answer": LETTERS[options.index(q.answer)], "category": example.name,
                        "task": q.task, "id": f"{example.name}/{k}"})
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def build(out: Path = OUT) -> list[Path]:
    """Write every example video, its <name>.jsonl and the combined qa.jsonl into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written, combined = [], []
    for make in EXAMPLES:
        example = make()
        written.append(write_video(out / f"{example.name}.mp4", example.frames, example.fps))
        records = qa_records(example)
        write_jsonl(out / f"{example.name}.jsonl", records)
        written.append(out / f"{example.name}.jsonl")
        combined += records
    write_jsonl(out / "qa.jsonl", combined)
    return written + [out / "qa.jsonl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT,
                        help="output folder (default: %(default)s)")
    args = parser.parse_args()
    paths = build(args.out)
    for path in paths:
        print(f"{path.stat().st_size / 1024:8.1f} KiB  {path}")
    print(f"{sum(p.stat().st_size for p in paths) / 1024:8.1f} KiB  total")


if __name__ == "__main__":
    main()
