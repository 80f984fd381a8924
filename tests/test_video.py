"""load_video / write_video on real (tiny) encoded files: sampling, timing, resizing, errors.

Each test video stores its frame index t as the intensity 20 + 5 t of its left half, so the
frames a clip holds can be read back through lossy codecs (error << 2.5 levels).
"""
import logging
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from sttm_core import video
from sttm_core.video import VideoClip, VideoError, load_video, sample_indices, write_video

pytestmark = pytest.mark.core

T, H, W = 40, 48, 64


def indexed_frames(num=T, height=H, width=W):
    """[num, height, width, 3] uint8: left half encodes t, right half a moving white square."""
    frames = np.zeros((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, :, : width // 2] = 20 + 5 * t
        x0 = width // 2 + (t % 4) * (width // 8)
        frames[t, 8:24, x0:x0 + width // 8] = 255
    return frames


def read_indices(clip: VideoClip) -> np.ndarray:
    """[T] frame index each decoded frame encodes (left half, away from the square)."""
    level = clip.frames[:, :, : clip.frames.shape[2] // 2].mean(axis=(1, 2, 3))
    return np.round((level - 20) / 5).astype(int)


def has_encoder(name):
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def write_raw(path, frames, codec="libx264", options=None):
    """Encode with PyAV directly, for container layouts write_video does not make."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        out.start_encoding()  # header even when there are no frames
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def write_audio(path, codec, rate=16000):
    """One second of a sine tone: a file with an audio stream and no video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        for i in range(rate // 1024):
            samples = np.sin(np.arange(i * 1024, (i + 1) * 1024) * 0.05).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples[None] * 0.3, format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture
def mp4(tmp_path):
    return write_video(tmp_path / "clip.mp4", indexed_frames(), fps=8)


@pytest.mark.parametrize("ext,codec", [("mp4", "libx264"), ("webm", "libvpx-vp9")])
def test_uniform_sampling_picks_linspace_indices(tmp_path, ext, codec):
    if not has_encoder(codec):
        pytest.skip(f"{codec} not in this PyAV build")
    path = write_video(tmp_path / f"clip.{ext}", indexed_frames(), fps=8)
    clip = load_video(path, num_frames=7)
    expected = np.linspace(0, T - 1, 7).round().astype(int)  # 0 6 13 20 26 32 39
    assert read_indices(clip).tolist() == expected.tolist()
    assert clip.frames.shape == (7, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.num_frames == 7 and clip.total_frames == T  # webm: counted by demuxing
    assert clip.fps == pytest.approx(8) and clip.duration == pytest.approx(T / 8, abs=0.2)
    assert clip.path == str(path)


def test_sample_indices_uniform_and_distinct():
    assert sample_indices(40, 7).tolist() == [0, 6, 13, 20, 26, 32, 39]
    assert sample_indices(3, 16).tolist() == [0, 1, 2]
    for total in range(1, 60):
        idx = sample_indices(total, 16)
        assert len(set(idx.tolist())) == min(total, 16) and idx[0] == 0 and idx[-1] == total - 1


def test_fewer_frames_than_asked_returns_all(tmp_path):
    path = write_video(tmp_path / "short.mp4", indexed_frames(5), fps=8)
    clip = load_video(path, num_frames=16)
    assert clip.num_frames == 5 and clip.total_frames == 5
    assert read_indices(clip).tolist() == [0, 1, 2, 3, 4]


def test_timestamps_start_at_zero_and_follow_frame_index(mp4):
    clip = load_video(mp4, num_frames=5)
    times = np.asarray(clip.timestamps)
    assert times[0] == 0 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, sample_indices(T, 5) / 8, atol=1e-3)


def test_only_selected_frames_are_converted(mp4, monkeypatch):
    calls = []
    real = video._to_rgb
    monkeypatch.setattr(video, "_to_rgb", lambda frame, side: calls.append(1) or real(frame, side))
    assert load_video(mp4, num_frames=4).num_frames == 4
    assert len(calls) == 4  # the other 36 frames were decoded and dropped, never kept


def test_max_side_downsizes_keeping_aspect(mp4):
    small = load_video(mp4, num_frames=3, max_side=32)
    assert small.frames.shape == (3, 24, 32, 3)
    assert read_indices(small).tolist() == [0, 20, 39]  # content survives the resize
    assert load_video(mp4, num_frames=3, max_side=500).frames.shape == (3, H, W, 3)  # no upsizing


def test_display_rotation_is_applied(tmp_path):
    frames = np.zeros((4, H, W, 3), np.uint8)
    frames[:, :8, :8] = 255  # white top-left corner
    clip = load_video(write_video(tmp_path / "phone.mp4", frames, rotation=90))
    assert clip.frames.shape == (4, W, H, 3)
    rows, cols = np.nonzero(clip.frames[0, :, :, 0] > 128)
    assert rows.min() >= W - 10 and cols.max() < 10  # 90 deg counter-clockwise: bottom-left


def test_cut_off_video_samples_the_frames_that_decode(tmp_path, caplog):
    # moov first (faststart), so a file cut at 75% still opens; its header says 40 frames
    data = write_raw(tmp_path / "full.mp4", indexed_frames(),
                     options={"movflags": "faststart"}).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 3 // 4])
    with caplog.at_level(logging.WARNING, logger="sttm_core.video"):
        clip = load_video(path, num_frames=8)
    assert 0 < clip.total_frames < T and "only" in caplog.text
    assert read_indices(clip).tolist() == sample_indices(clip.total_frames, 8).tolist()
    assert clip.duration == pytest.approx(clip.total_frames / clip.fps)


@pytest.mark.parametrize("ext,codec", [("webm", "libvpx-vp9"), ("mkv", "libx264")])
@pytest.mark.parametrize("keep", [0.75, 0.5])
def test_cut_off_webm_duration_follows_the_frames_that_decode(tmp_path, ext, codec, keep):
    """WebM/MKV headers hold no frame count (frames are counted by demuxing) but do hold the
    whole recording's duration, which a cut-off file no longer has."""
    if not has_encoder(codec):
        pytest.skip(f"{codec} not in this PyAV build")
    data = write_video(tmp_path / f"full.{ext}", indexed_frames(), fps=8).read_bytes()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * keep)])
    clip = load_video(path, num_frames=8)
    assert 1 < clip.total_frames < T
    assert read_indices(clip).tolist() == sample_indices(clip.total_frames, 8).tolist()
    assert clip.fps == pytest.approx(8)
    assert clip.duration == pytest.approx(clip.total_frames / 8)  # not the header's T / 8
    np.testing.assert_allclose(clip.timestamps, sample_indices(clip.total_frames, 8) / 8,
                               atol=1e-3)
    assert clip.timestamps[-1] < clip.duration
    whole = load_video(tmp_path / f"full.{ext}", num_frames=8)  # an intact file keeps its own
    assert (whole.total_frames, whole.duration) == (T, pytest.approx(T / 8))


def write_text(path):
    path.write_text("this is a text file, not a video\n" * 50)
    return path


def write_png(path):
    Image.fromarray(indexed_frames(1)[0]).save(path, format="PNG")
    return path


def write_empty(path):
    path.write_bytes(b"")
    return path


def make_folder(path):
    path.mkdir()
    return path


def write_truncated(path):
    full = write_video(path.with_name("full.mp4"), indexed_frames()).read_bytes()
    path.write_bytes(full[: len(full) // 2])  # moov is at the end: the half has no index
    return path


def write_no_decodable_frames(path):
    data = write_raw(path.with_name("full.mp4"), indexed_frames(),
                     options={"movflags": "faststart"}).read_bytes()
    with av.open(str(path.with_name("full.mp4"))) as c:
        first = next(p.pos for p in c.demux(c.streams.video[0]))
    path.write_bytes(data[: first + 16])  # header claims 40 frames, first one cut short
    return path


BAD_FILES = {  # name -> (make file, words the message must contain, cause from av?)
    "notes.mp4": (write_text, "not a video file", True),
    "photo.png": (write_png, "not a video", False),
    "photo_as.mp4": (write_png, "not a video", False),
    "empty.mp4": (write_empty, "empty (0 bytes)", False),
    "half.mp4": (write_truncated, "corrupt or truncated", True),
    "nothing.mp4": (write_no_decodable_frames, "none of its frames", False),
    "noframes.avi": (lambda p: write_raw(p, [], codec="mpeg4"), "no frames", False),
    "folder.mp4": (make_folder, "folder", False),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_raise_video_error(tmp_path, name):
    make, words, from_av = BAD_FILES[name]
    path = make(tmp_path / name)
    with pytest.raises(VideoError) as info:
        load_video(path)
    message = str(info.value)
    assert name in message and words in message
    assert isinstance(info.value.__cause__, av.FFmpegError) == from_av


@pytest.mark.parametrize("name,codec", [("voice.wav", "pcm_s16le"), ("voice.m4a", "aac")])
def test_audio_only_file_is_not_a_video(tmp_path, name, codec):
    if not has_encoder(codec):
        pytest.skip(f"no {codec} audio encoder in this PyAV build")
    path = write_audio(tmp_path / name, codec)
    with av.open(str(path)) as c:
        assert c.streams.audio and not c.streams.video  # the file really is audio-only
    with pytest.raises(VideoError, match="no video stream.*audio only") as info:
        load_video(path)
    assert name in str(info.value)


def test_missing_path(tmp_path):
    with pytest.raises(VideoError, match="gone.mp4: no such file"):
        load_video(tmp_path / "gone.mp4")


def test_messages_name_the_file_but_not_its_folder(tmp_path, monkeypatch):
    """Messages are shown to users: a server's upload folder must not appear in them."""
    folder = tmp_path / "uploads" / "session-1234"
    folder.mkdir(parents=True)
    messages = []
    for name, (make, _, _) in {**BAD_FILES, "gone.mp4": (lambda p: p, "", False)}.items():
        with pytest.raises(VideoError) as info:
            load_video(make(folder / name))
        messages.append(str(info.value))
    # PyAV's own errors end with the full path: str(err) must not reach a message
    with_path = av.error.InvalidDataError(1094995529, "Invalid data", str(folder / "x.webm"))

    def fail(*args, **kwargs):
        raise with_path
    broken = SimpleNamespace(  # a WebM container whose demuxing fails part way
        format=SimpleNamespace(name="matroska,webm"), demux=fail,
        streams=SimpleNamespace(video=[SimpleNamespace(frames=0)], audio=[]))
    with pytest.raises(VideoError) as info:
        video._probe(broken, "x.webm")
    messages.append(str(info.value))
    monkeypatch.setattr(video.av, "open", fail)
    with pytest.raises(VideoError) as info:
        write_video(folder / "out.mp4", indexed_frames(2))
    messages.append(str(info.value))
    for message in messages:
        assert str(tmp_path) not in message and "session-1234" not in message, message
    assert "x.webm is corrupt and cannot be read (Invalid data)" in messages[-2]
    assert "could not write out.mp4" in messages[-1]


@pytest.mark.parametrize("kwargs", [{"num_frames": 0}, {"num_frames": -3}, {"num_frames": 2.5},
                                    {"num_frames": True}, {"max_side": 0}])
def test_bad_sizes(mp4, kwargs):
    with pytest.raises(VideoError, match=f"{next(iter(kwargs))} must be a positive integer"):
        load_video(mp4, **kwargs)


def test_write_video_rejects_what_it_cannot_encode(tmp_path):
    with pytest.raises(VideoError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 47, 64, 3), np.uint8))
    with pytest.raises(VideoError, match=r"uint8 array \[T, H, W, 3\]"):
        write_video(tmp_path / "float.mp4", np.zeros((2, 48, 64, 3), np.float32))
    with pytest.raises(VideoError, match="use one of"):
        write_video(tmp_path / "clip.gif", indexed_frames(2))
    assert not (tmp_path / "odd.mp4").exists()


def test_one_frame_is_not_mistaken_for_a_cut_off_video(tmp_path, caplog):
    path = tmp_path / "whole.mp4"
    write_video(path, np.zeros((20, 32, 32, 3), np.uint8), fps=10)
    with caplog.at_level("WARNING"):
        clip = load_video(path, 1)
    assert clip.num_frames == 1 and clip.total_frames == 20
    assert "only" not in caplog.text


EXAMPLES = Path(__file__).parent.parent / "assets" / "examples"


def damaged_copy(src, dst, at: float, size: int = 64):
    """`src` with `size` bytes at fraction `at` of the file overwritten by a fixed pattern:
    the same damage every run, in the middle of the coded frames."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * at)
    data[start:start + size] = bytes((j * 37 + 11) % 256 for j in range(size))
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("name,at", [("text_overlay.mp4", 0.15), ("text_overlay.mp4", 0.2),
                                     ("scene_cuts.mp4", 0.5), ("fast_motion.mp4", 0.15),
                                     ("camera_pan.mp4", 0.2)])
def test_damaged_h264_decodes_the_same_frames_every_time(tmp_path, caplog, name, at):
    # Frame threading conceals a damaged H.264 slice with whichever neighbouring frames are
    # ready, so the same file used to give different pixels on each load (up to 208 levels
    # apart); these five copies each did so within a few loads.
    path = damaged_copy(EXAMPLES / name, tmp_path / f"damaged_{name}", at)
    with caplog.at_level(logging.WARNING, logger="sttm_core.video"):
        loads = [load_video(path, num_frames=1000) for _ in range(6)]
    first = loads[0].frames
    assert first.shape[0] > 0
    for clip in loads[1:]:
        assert clip.frames.shape == first.shape
        assert int(np.abs(clip.frames.astype(int) - first).max()) == 0
        assert clip.total_frames == loads[0].total_frames
    assert "damaged" in caplog.text


def test_intact_video_is_decoded_once_with_frame_threading(monkeypatch):
    passes = []
    decode = video._decode

    def spy(path, indices, max_side, threaded=True):
        passes.append(threaded)
        return decode(path, indices, max_side, threaded=threaded)

    monkeypatch.setattr(video, "_decode", spy)
    load_video(EXAMPLES / "text_overlay.mp4", num_frames=8)
    assert passes == [True]
