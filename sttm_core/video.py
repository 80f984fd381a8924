"""Video decoding for video-LLM input: `load_video` -> `VideoClip`; `write_video` for tests/assets.

path -> count frames (container header, else demux packets without decoding) -> T uniform
indices (np.linspace over [0, n-1], rounded) -> one sequential decode that keeps only those
frames (frame-threaded; a file with damaged packets or concealed frames is decoded again on
one thread, so that the same file always gives the same frames). Memory stays O(T) frames
however long the video is. Imports numpy + av only.
Every failure is a `VideoError` whose message names the file (by its name only, never the
folder it sits in on the server) and can be shown to users as is.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

# Encoders per output extension, best first; PyAV wheels differ in which ones they ship.
_ENCODERS = {".mp4": ("libx264", "h264", "mpeg4"), ".mkv": ("libx264", "h264", "mpeg4"),
             ".mov": ("libx264", "h264", "mpeg4"), ".webm": ("libvpx-vp9", "libvpx")}
# Magic bytes of video containers: a file that has them but will not open is damaged,
# not "some other kind of file".
_VIDEO_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (8, b"AVI "))


class VideoError(ValueError):
    """A video could not be loaded or written; the message is meant for the user."""


@dataclass
class VideoClip:
    """Frames uniformly sampled from one video file."""

    frames: np.ndarray      # [T, H, W, 3] uint8 RGB, upright (display rotation applied)
    timestamps: np.ndarray  # [T] float64 seconds since the first frame, increasing
    fps: float              # average frame rate of the whole video
    duration: float         # seconds, whole video
    total_frames: int       # frames in the whole video
    path: str

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled frames (Qwen2.5-VL's time ids need it)."""
        if self.num_frames > 1 and self.timestamps[-1] > self.timestamps[0]:
            return (self.num_frames - 1) / float(self.timestamps[-1] - self.timestamps[0])
        return float(self.fps or 1.0)


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """[min(total, num_frames)] int64: uniform over [0, total-1], first and last included."""
    if total <= num_frames:
        return np.arange(total)
    # step = (total-1)/(num_frames-1) >= 1, so rounding never yields the same index twice
    return np.linspace(0, total - 1, num_frames).round().astype(np.int64)


def load_video(path, num_frames: int = 16, *, max_side: int | None = None) -> VideoClip:
    """Decode `num_frames` frames spread uniformly over the video at `path` (all if it has fewer).

    max_side: if set, frames are downsized right after decoding so max(H, W) <= max_side.
    """
    path = _check_args(path, num_frames, max_side)
    with _opened(path) as container:
        total, fps, duration = _probe(container, path.name)
    indices = sample_indices(total, num_frames)
    frames, times, decoded, damaged = _decode(path, indices, max_side)
    threaded = not damaged
    if damaged:  # frame threading conceals damage differently on each run: decode again on
        # one thread, which conceals it the same way every time
        log.warning("%s is damaged (%s); decoding it again on one thread so that every load "
                    "gives the same frames", path.name, damaged)
        frames, times, decoded, _ = _decode(path, indices, max_side, threaded=False)
    if decoded == 0:
        raise VideoError(f"{path.name} has a video stream but none of its frames can be decoded.")
    if len(frames) < len(indices):  # the stream ended before the last wanted frame: the
        # header promised more than decodes (e.g. a cut-off recording)
        log.warning("%s: header says %d frames, only %d decode; sampling those",
                    path.name, total, decoded)
        total, duration = decoded, decoded / fps
        indices = sample_indices(total, num_frames)
        frames, times, *_ = _decode(path, indices, max_side, threaded=threaded)
    times = np.array([i / fps if t is None else t for i, t in zip(indices, times)])
    return VideoClip(frames=np.stack(frames), timestamps=times - times[0], fps=fps,
                     duration=duration, total_frames=total, path=str(path))


def write_video(path, frames, fps: float = 8, *, rotation: int = 0) -> Path:
    """Encode RGB uint8 frames [T, H, W, 3] to `path`: .mp4/.mkv/.mov as H.264 (or MPEG-4
    part 2), .webm as VP9 (or VP8). H and W must be even (4:2:0 chroma). `rotation`: degrees
    counter-clockwise stored as display metadata, as phones do."""
    path, frames = Path(path), np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise VideoError(f"frames must be a non-empty uint8 array [T, H, W, 3], "
                         f"got {frames.dtype} {list(frames.shape)}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise VideoError(f"{path.name}: frame size {height}x{width} must be even on both sides "
                         f"for 4:2:0 video; crop or pad by one pixel")
    codec = _pick_encoder(path)
    try:
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if rotation:
                stream.set_display_rotation(rotation)
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())  # flush the frames the encoder still holds
    except av.FFmpegError as err:
        raise VideoError(f"could not write {path.name} with {codec}: {_reason(err)}") from err
    return path


def _check_args(path, num_frames, max_side) -> Path:
    sizes = {"num_frames": num_frames, "max_side": 1 if max_side is None else max_side}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise VideoError(f"{name} must be a positive integer, got {value!r}")
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path.name}: no such file")
    if path.is_dir():
        raise VideoError(f"{path.name} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name} is empty (0 bytes); it is not a video")
    return path


def _opened(path: Path):
    """av container for `path`, or a VideoError saying why the file is not a readable video."""
    try:
        return av.open(str(path))
    except av.FFmpegError as err:
        reason = _reason(err)
        if isinstance(err, OSError):  # exists but unreadable: permissions, I/O error
            raise VideoError(f"{path.name} could not be read: {reason}") from err
        with path.open("rb") as f:
            head = f.read(12)
        if any(head[i:i + len(magic)] == magic for i, magic in _VIDEO_MAGIC):
            raise VideoError(f"{path.name} looks like a video but is corrupt or truncated "
                             f"and cannot be decoded ({reason})") from err
        raise VideoError(f"{path.name} is not a video file that can be decoded "
                         f"(unknown or unsupported format: {reason})") from err


def _reason(err: av.FFmpegError) -> str:
    """What went wrong, without the file's full path that str(err) ends with."""
    return getattr(err, "strerror", None) or type(err).__name__


def _probe(container, name: str) -> tuple[int, float, float]:
    """(total frames, fps, duration in s) of the first video stream; counts without decoding."""
    if container.format.name.endswith("_pipe") or container.format.name.startswith("image2"):
        raise VideoError(f"{name} is an image ({container.format.name.removesuffix('_pipe')}), "
                         f"not a video file")
    if not container.streams.video:
        kind = "audio only" if container.streams.audio else "no audio or video"
        raise VideoError(f"{name} has no video stream ({kind}); it is not a video file")
    stream = container.streams.video[0]
    try:  # the header count is free; containers without one (WebM, MKV) need a demux pass
        total, span = (stream.frames, None) if stream.frames else _count_packets(container, stream)
    except av.FFmpegError as err:
        raise VideoError(f"{name} is corrupt and cannot be read ({_reason(err)})") from err
    if total == 0:
        raise VideoError(f"{name} has a video stream but it contains no frames.")
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = container.duration / av.time_base if container.duration else 0.0
    fps = float(rate) if rate else (total / duration if duration else 1.0)
    if span is not None and (not duration or span < duration - 1.5 / fps):
        # packets that end over a frame before the header's duration: a cut-off file, whose
        # header still describes the whole recording
        duration = span
    return total, fps, duration or total / fps


def _count_packets(container, stream) -> tuple[int, float | None]:
    """(video packets, seconds from the first one's start to the last one's end, None when
    they carry no timestamps), by demuxing without decoding."""
    total, start, end = 0, None, None
    for packet in container.demux(stream):
        if not packet.size:  # the flush packet that ends the stream
            continue
        total += 1
        if packet.pts is not None:
            start = packet.pts if start is None else min(start, packet.pts)
            end = max(end if end is not None else packet.pts, packet.pts + (packet.duration or 0))
    span = None if end is None or not stream.time_base else float((end - start) * stream.time_base)
    return total, span


def _decode(path: Path, indices: np.ndarray, max_side: int | None, *, threaded: bool = True):
    """One sequential decode keeping frames at sorted `indices`.

    Returns ([T] frames [H, W, 3] uint8, [T] seconds or None, frames decoded, damage): damage
    is "" when every packet up to the last index decoded cleanly, else what was wrong
    ("2 damaged packet(s) skipped, 1 concealed frame(s)"). Stops after the last index; fewer
    frames than indices means the stream ended early. `threaded`: frame threading (several
    times faster on long videos; bit-exact on intact streams, not on damaged ones)."""
    frames, times, todo, seen = [], [], iter(indices.tolist()), 0
    damage = {"packets": 0, "frames": 0}
    want = next(todo, None)
    with _opened(path) as container:
        for frame in _frames(container, path.name, threaded, damage):
            damage["frames"] += frame.is_corrupt
            if seen == want:
                frames.append(_to_rgb(frame, max_side))
                times.append(frame.time)
                want = next(todo, None)
            seen += 1
            if want is None:
                break
    words = [f"{n} {what}" for n, what in ((damage["packets"], "damaged packet(s) skipped"),
                                             (damage["frames"], "concealed frame(s)")) if n]
    return frames, times, seen, ", ".join(words)


def _frames(container, name: str, threaded: bool = True, damage: dict | None = None):
    """Decoded frames of the first video stream in display order; damaged packets are skipped
    (as players do) so a file cut off mid-frame still yields everything before the cut; their
    count goes to damage["packets"]."""
    stream = container.streams.video[0]
    if threaded:
        stream.thread_type = "AUTO"  # frame threading: several times faster on long videos
    else:
        stream.codec_context.thread_count = 1
        stream.thread_type = "NONE"
    bad = 0
    try:
        for packet in container.demux(stream):  # ends with an empty packet that flushes
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                continue
            yield from decoded
    except av.FFmpegError as err:
        raise VideoError(f"{name} is corrupt and cannot be read ({_reason(err)})") from err
    finally:
        if damage is not None:
            damage["packets"] += bad


def _to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """[H, W, 3] uint8 RGB, upright, max(H, W) <= max_side; swscale resizes (area filter)."""
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
    # phone videos store their orientation as metadata; frame.rotation is counter-clockwise
    return np.ascontiguousarray(np.rot90(rgb, k=round(frame.rotation / 90) % 4))


def _pick_encoder(path: Path) -> str:
    """First encoder for the extension that this PyAV wheel was built with."""
    if path.suffix.lower() not in _ENCODERS:
        raise VideoError(f"cannot write {path.name}: use one of {', '.join(_ENCODERS)}")
    for name in _ENCODERS[path.suffix.lower()]:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):  # not built into this wheel
            continue
    raise VideoError(f"cannot write {path.name}: this PyAV build has none of the encoders "
                     f"{', '.join(_ENCODERS[path.suffix.lower()])}")
