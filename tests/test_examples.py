"""The bundled examples in assets/examples: they decode, stay small, their QA sets load, they
match what assets/make_examples.py draws, and each QA answer is true of the decoded pixels
(measured here, not taken from the generator)."""
import importlib
import json
import re
from functools import cache

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sttm_core.examples import examples_dir
from sttm_core.qa import load_qa
from sttm_core.video import load_video

pytestmark = pytest.mark.core

EXAMPLES = examples_dir()
VIDEOS = sorted(EXAMPLES.glob("*.mp4"))
NAMES = [v.stem for v in VIDEOS]


@cache
def generator():
    """assets/make_examples.py, installed as sttm_assets.make_examples."""
    return importlib.import_module("sttm_assets.make_examples")


@cache
def frames(name: str) -> np.ndarray:
    """[T, H, W, 3] int16: every decoded frame of example `name`."""
    return load_video(EXAMPLES / f"{name}.mp4", 10_000).frames.astype(np.int16)


def answer(name: str, pattern: str) -> str:
    """Text of the right option of the question of `name` matching `pattern`."""
    (item,) = [i for i in load_qa(EXAMPLES / f"{name}.jsonl") if re.search(pattern, i.question)]
    return item.answer_text


def mask(video: np.ndarray, colour: str) -> np.ndarray:
    """[..., H, W] bool: pixels of a saturated `colour` (the backgrounds are far from these)."""
    r, g, b = video[..., 0], video[..., 1], video[..., 2]
    return {"red": (r > 160) & (g < 90) & (b < 90),
            "blue": (b > 170) & (r < 70) & (g < 130),
            "green": (g > 150) & (r < 90) & (b < 110),
            "yellow": (r > 200) & (g > 170) & (b < 90)}[colour]


def runs(on: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def sightings(video: np.ndarray, colour: str, min_pixels: int = 100) -> list[tuple[int, int]]:
    return runs(mask(video, colour).sum(axis=(1, 2)) > min_pixels)


# ----------------------------------------------------------------------------- files

def test_the_expected_examples_are_bundled():
    expected = {"static", "fast_motion", "text_overlay", "scene_cuts", "camera_pan",
                "needle_word", "needle_order", "needle_count"}
    assert set(NAMES) == expected
    assert {p.stem for p in EXAMPLES.glob("*.jsonl")} == expected | {"qa"}


@pytest.mark.parametrize("name", NAMES)
def test_example_loads_and_is_short_and_small(name):
    clip = load_video(EXAMPLES / f"{name}.mp4", 8)
    assert clip.frames.shape[0] == 8 and clip.frames.dtype == np.uint8
    height, width = clip.frames.shape[1:3]
    assert 128 <= min(height, width) and max(height, width) <= 320
    assert 8 <= clip.fps <= 12
    assert 2 <= clip.duration <= 8


def test_total_size_under_2_mb():
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total <= 2 * 1024 * 1024, f"assets/examples holds {total / 2**20:.2f} MiB"


@pytest.mark.parametrize("name", NAMES)
def test_qa_file_loads_with_answers_in_range(name):
    items = load_qa(EXAMPLES / f"{name}.jsonl")
    assert 2 <= len(items) <= 5
    for item in items:
        assert item.video == EXAMPLES / f"{name}.mp4"
        assert len(item.options) == 4 and item.answer in "ABCD"
        assert item.answer_text == item.options["ABCD".index(item.answer)]
        assert item.category == name and item.task


def test_combined_qa_is_the_per_video_files():
    per_video = [line for name in NAMES
                 for line in (EXAMPLES / f"{name}.jsonl").read_text().splitlines()]
    combined = (EXAMPLES / "qa.jsonl").read_text().splitlines()
    assert sorted(combined) == sorted(per_video)
    ids = [json.loads(line)["id"] for line in combined]
    assert len(set(ids)) == len(ids)
    assert len(load_qa(EXAMPLES)) == len(combined)  # the folder: repeats kept once


def test_answer_letters_are_spread():
    letters = [i.answer for i in load_qa(EXAMPLES / "qa.jsonl")]
    assert len(set(letters)) == 4 and max(map(letters.count, "ABCD")) < len(letters) / 2


@pytest.mark.parametrize("name", NAMES)
def test_bundled_files_match_the_generator(name):
    """The committed videos and QA are what the script draws now (re-run it after editing)."""
    make = generator()
    example = getattr(make, name)()
    decoded = frames(name)
    assert decoded.shape == example.frames.shape
    assert np.abs(decoded - example.frames).mean() < 3  # lossy codec, same picture
    lines = (EXAMPLES / f"{name}.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == make.qa_records(example)


# ----------------------------------------------------------------------------- answers vs pixels

def test_static_only_the_light_changes_where_the_qa_says():
    video = frames("static")
    changing = video.std(axis=0).max(axis=-1) > 30                 # [H, W]
    _, H, W, _ = video.shape
    assert 0 < changing.sum() < 0.01 * H * W
    ys, xs = np.nonzero(changing)
    where = answer("static", "blinking light")                      # e.g. "top-right corner"
    vertical, horizontal = where.split()[0].split("-")
    assert (ys.max() < H / 4) if vertical == "top" else (ys.min() > 3 * H / 4)
    assert (xs.min() > 3 * W / 4) if horizontal == "right" else (xs.max() < W / 4)
    assert answer("static", "What happens").startswith("nothing moves")


def test_static_circle_colour():
    video = frames("static")
    orange = (video[0, ..., 0] > 200) & (abs(video[0, ..., 1] - 140) < 30) & (video[0, ..., 2] < 60)
    ys, xs = np.nonzero(orange)
    filled = orange.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))  # a disc fills pi/4 of its box
    assert answer("static", "colour is the circle") == "orange" and abs(filled - np.pi / 4) < 0.05


def blobs(m: np.ndarray, min_pixels: int) -> int:
    """Number of 4-connected regions of the [H, W] bool mask with >= min_pixels pixels."""
    seen, count = np.zeros_like(m), 0
    for start in zip(*np.nonzero(m)):
        if seen[start]:
            continue
        stack, size = [start], 0
        seen[start] = True
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < m.shape[0] and 0 <= nx < m.shape[1] and m[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        count += size >= min_pixels
    return count


def test_static_shape_count():
    frame = frames("static")[0]
    saturated = frame.max(axis=-1) - frame.min(axis=-1) > 100      # the background is pastel
    assert blobs(saturated, 500) == int(answer("static", "How many large shapes"))


def centroids(video: np.ndarray, colour: str) -> np.ndarray:
    """[T, 2] (y, x) centre of the colour's pixels per frame (NaN where absent)."""
    m = mask(video, colour)
    out = np.full((len(video), 2), np.nan)
    for t, frame in enumerate(m):
        if frame.sum() > 50:
            out[t] = np.argwhere(frame).mean(axis=0)
    return out


def test_fast_motion_directions():
    video = frames("fast_motion")
    ball = answer("fast_motion", "colour is the ball")
    assert ball == "red"
    steps = np.diff(centroids(video, ball), axis=0)                 # wrap-arounds are outliers
    direction = {"from left to right": (1, +1), "from right to left": (1, -1),
                 "from top to bottom": (0, +1), "from bottom to top": (0, -1)}
    axis, sign = direction[answer("fast_motion", "ball move")]
    assert sign * np.nanmedian(steps[:, axis]) > 8                  # fast: > 8 px per frame
    steps = np.diff(centroids(video, "blue"), axis=0)
    axis, sign = direction[answer("fast_motion", "square move")]
    assert sign * np.nanmedian(steps[:, axis]) > 8


def test_text_overlay_captions():
    make, video = generator(), frames("text_overlay")
    rows = make.CAPTION_H
    caption, scene = video[:, -rows:], video[:, :-rows]
    assert np.abs(np.diff(scene, axis=0)).mean(axis=(1, 2, 3)).max() < 1      # scene is still
    changes = np.abs(np.diff(caption, axis=0)).mean(axis=(1, 2, 3)) > 3
    assert changes.sum() + 1 == int(answer("text_overlay", "How many different captions"))
    items = {i.question: i for i in load_qa(EXAMPLES / "text_overlay.jsonl")}

    def error(t, word):
        return np.abs(caption[t] - make.caption_strip(word, video.shape[2])).mean()

    def read(t, options):                     # the option whose rendered caption fits best
        return min(options, key=lambda word: error(t, word))

    first = items["Which word is shown in the caption first?"]
    last = items["Which word is shown in the caption last?"]
    assert read(0, first.options) == first.answer_text
    assert read(len(video) - 1, last.options) == last.answer_text
    some = items["Which of these words appears in a caption?"]
    shown = {read(t, some.options) for t in range(len(video)) if error(t, some.answer_text) < 3}
    assert shown == {some.answer_text}


SCENES = {  # option keyword -> test on a decoded frame
    "beach": lambda f: f[:60, ..., 2].mean() > f[:60, ..., 0].mean() + 80,   # blue sky
    "forest": lambda f: f[..., 1].mean() > max(f[..., 0].mean(), f[..., 2].mean()) + 25,  # green
    "night": lambda f: f.mean() < 70,                                        # dark
    "desert": lambda f: f[:60, ..., 0].mean() > f[:60, ..., 2].mean() + 100,  # orange sky
}


def scene_of(frame) -> str:
    (kind,) = [k for k, test in SCENES.items() if test(frame)]
    return kind


def test_scene_cuts():
    video = frames("scene_cuts")
    jumps = np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))
    cuts = np.nonzero(jumps > 30)[0] + 1                           # first frame of each new scene
    assert len(cuts) == int(answer("scene_cuts", "How many hard scene cuts"))
    assert np.sort(jumps)[-len(cuts) - 1] < 5                      # the rest is small motion
    order = [scene_of(video[t]) for t in [0, *cuts]]
    assert len(set(order)) == len(order)
    assert order[0] in answer("scene_cuts", "shown first")
    assert order[-1] in answer("scene_cuts", "shown last")
    assert order[order.index("beach") + 1] in answer("scene_cuts", "right after the beach")


def best_shift(a: np.ndarray, b: np.ndarray, max_shift: int = 12) -> int:
    """d such that b(x) ~ a(x - d): how far the content moved right from a to b."""
    W = a.shape[1]
    errors = {d: np.abs(b[:, max(d, 0):W + min(d, 0)] - a[:, max(-d, 0):W - max(d, 0)]).mean()
              for d in range(-max_shift, max_shift + 1)}
    return min(errors, key=errors.get)


def test_camera_pan_direction_and_house():
    video = frames("camera_pan")
    shifts = [best_shift(video[t], video[t + 1]) for t in range(len(video) - 1)]
    content = np.median(shifts)
    pan = answer("camera_pan", "direction does the camera")
    camera = {"to the right": -1, "to the left": +1}[pan]           # content moves against it
    assert np.sign(content) == camera and abs(content) >= 2
    assert answer("camera_pan", "comes into view") == "a red house"
    red = mask(video, "red").sum(axis=(1, 2))
    assert red[: len(video) // 2].max() == 0 and red[-1] > 200     # only near the end
    assert answer("camera_pan", "background") == "snowy mountains"
    snow = (video.min(axis=-1) > 215)[:, : video.shape[1] * 2 // 3]  # white, upper two thirds
    grey = (abs(video[..., 0] - 115) < 25) & (abs(video[..., 2] - 140) < 25)  # mountain rock
    assert snow.mean(axis=(1, 2)).min() > 0.02 and grey.mean(axis=(1, 2)).min() > 0.05


def test_needle_word():
    video = frames("needle_word")
    colour = answer("needle_word", "What colour")
    (span,) = sightings(video, colour)                             # one sighting
    middle = (span[0] + span[1]) / 2 / len(video)
    when = {"near the beginning": middle < 1 / 3,
            "in the middle of the video": 1 / 3 <= middle <= 2 / 3,
            "near the end": middle > 2 / 3,
            "during the whole video": span == (0, len(video))}
    assert when[answer("needle_word", "When does")]
    # read the word: the option whose rendering (same font) overlaps the needle's pixels best
    needle = mask(video[span[0]], colour)
    ys, xs = np.nonzero(needle)
    crop = needle[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    (item,) = [i for i in load_qa(EXAMPLES / "needle_word.jsonl") if "What word" in i.question]

    def iou(word):
        img = Image.new("L", (400, 100))
        ImageDraw.Draw(img).text((10, 10), word, font=generator().font(34), fill=255,
                                 stroke_width=2, stroke_fill=255)
        ink = np.asarray(img) > 127
        wy, wx = np.nonzero(ink)
        ink = ink[wy.min():wy.max() + 1, wx.min():wx.max() + 1]
        h, w = max(ink.shape[0], crop.shape[0]), max(ink.shape[1], crop.shape[1])
        a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
        a[:ink.shape[0], :ink.shape[1]], b[:crop.shape[0], :crop.shape[1]] = ink, crop
        return (a & b).sum() / (a | b).sum()

    scores = {w: iou(w) for w in item.options}
    assert max(scores, key=scores.get) == item.answer_text and scores[item.answer_text] > 0.6


def test_needle_order():
    video = frames("needle_order")
    first_seen = {}
    for label in ("red star", "blue square", "green triangle", "yellow circle"):
        spans = sightings(video, label.split()[0])
        if spans:
            first_seen[label] = spans[0][0]
    order = sorted(first_seen, key=first_seen.get)
    assert len(order) == 3
    assert answer("needle_order", "appears first") == order[0]
    assert answer("needle_order", "appears last") == order[-1]
    assert answer("needle_order", "what order") == ", then ".join(order)


def test_needle_count():
    video = frames("needle_count")
    assert len(sightings(video, "red")) == int(answer("needle_count", "red star appear"))
    assert len(sightings(video, "blue")) == int(answer("needle_count", "blue square appear"))
    assert answer("needle_count", "more than once") == "the red star"
    assert len(sightings(video, "red")) > 1 and len(sightings(video, "blue")) == 1


@pytest.mark.parametrize("num_frames", [8, 12, 16, 32])
def test_needles_survive_uniform_sampling(num_frames):
    """A model fed >= 8 uniformly sampled frames can answer: every needle is seen, and
    separate sightings stay separate."""
    sampled = {n: load_video(EXAMPLES / f"{n}.mp4", num_frames).frames.astype(np.int16)
               for n in ("needle_word", "needle_order", "needle_count")}
    assert len(sightings(sampled["needle_word"], "yellow")) == 1
    order = sorted(("red", "blue", "green"),
                   key=lambda colour: sightings(sampled["needle_order"], colour)[0][0])
    labels = answer("needle_order", "what order").split(", then ")
    assert order == [label.split()[0] for label in labels]
    count = sampled["needle_count"]
    assert len(sightings(count, "red", 50)) == int(answer("needle_count", "red star appear"))
    assert len(sightings(count, "blue", 50)) == int(answer("needle_count", "blue square appear"))
