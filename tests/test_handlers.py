"""The app's handlers called directly, without a server (no model: pixel features)."""
import json
import math

import numpy as np
import pytest

from sttm_core import STTMConfig, VideoTokenMerger, thresholds_for_budget
from sttm_core.evidence import merge_evidence
from sttm_core.examples import examples_dir
from sttm_core.pixels import pixel_patch_features
from sttm_core.reduction import Thresholds
from sttm_core.video import load_video
from sttm_viz import handlers
from sttm_viz.payload import BUDGETS, evidence_json
from sttm_viz import session as session_module
from sttm_viz.session import Engine, Session, UserError

pytestmark = pytest.mark.core

VIDEO = examples_dir() / "camera_pan.mp4"
FRAMES = 6


@pytest.fixture
def session():
    return Session(Engine(None, "no model in this test."))


def controls(**kw):
    values = dict(mode="Thresholds", tau_s=0.9, tau_t=0.8, temporal=True, budget=0.3,
                  root="4×4", layer=2, method="STTM")
    values.update(kw)
    return handlers.controls_from(None, *values.values())


def test_controls_become_one_config():
    assert controls().config == STTMConfig(0.9, 0.8, 1, 2)
    assert controls(temporal=False).config == STTMConfig(0.9, None, 1, 2)
    assert controls(mode="Token budget").config == STTMConfig(
        root_level=1, merge_layer=2, method="sttm_budget", keep_ratio=0.3)
    assert controls(mode="Token budget", temporal=False).config.method == "spatial_only"
    for label, name in [("Uniform pooling", "uniform"), ("FastV", "fastv"),
                        ("Temporal only", "temporal_only")]:  # baselines keep the budget
        assert controls(method=label).config == STTMConfig(
            root_level=1, merge_layer=2, method=name, keep_ratio=0.3)
    assert controls(root="14×14").root_level == 3


def test_load_sends_evidence_and_clears_the_old_video(session):
    out = handlers.load(session, str(VIDEO), FRAMES, controls())
    x = pixel_patch_features(load_video(VIDEO, FRAMES).frames)
    lab = out["lab"]
    assert lab["evidence"] == evidence_json(merge_evidence(VideoTokenMerger(x)))
    assert lab["source"].startswith("pixels") and lab["notes"] == []
    assert lab["example"]["title"] == "Camera pan"
    assert out["root"]["value"] == "4×4" and out["chat"] == [] and out["ttft"] == out["scores"] == ""
    again = handlers.load(session, str(examples_dir() / "static.mp4"), FRAMES, controls())
    assert again["lab"]["id"] != lab["id"]  # the page drops everything of the old one


def test_sync_sends_only_what_the_page_cannot_compute(session):
    handlers.load(session, str(VIDEO), FRAMES, controls())
    video = session.video
    assert handlers.sync(session, controls())["served"]["tables"] == []
    table = handlers.sync(session, controls(mode="Token budget"))["served"]["tables"][0]
    assert table["budgets"] == BUDGETS and (table["root"], table["temporal"]) == (1, True)
    for ratio in (0.1, 0.5):
        k = BUDGETS.index(ratio)
        want = thresholds_for_budget(video.merger, ratio, root_level=1)
        assert (table["tau_s"][k], table["tau_t"][k]) == (want.spatial_threshold,
                                                          want.temporal_threshold)
    spatial = handlers.sync(session, controls(method="Spatial only"))["served"]["tables"][0]
    assert (spatial["root"], spatial["temporal"]) == (1, False)
    temporal = handlers.sync(session, controls(method="Temporal only"))["served"]["tables"][0]
    assert (temporal["root"], temporal["temporal"]) == (3, True)  # no quadtree: the patch grid
    uniform = handlers.sync(session, controls(method="Uniform pooling", budget=0.25))["served"]
    assert uniform["tokens"]["method"] == "uniform" and uniform["tokens"]["budget"] == 0.25
    assert handlers.sync(session, controls(method="FastV"))["served"]["tokens"] is None


def test_the_model_work_says_why_without_a_model(session):
    handlers.load(session, str(VIDEO), FRAMES, controls())
    with pytest.raises(UserError, match="Chat needs a model. no model in this test."):
        list(handlers.chat(session, "Hi?", [], False, controls()))
    with pytest.raises(UserError, match="TTFT needs a model"):
        handlers.measure_ttft(session, controls())
    with pytest.raises(UserError, match="Scoring needs a model"):
        handlers.score(session, controls())


def test_readouts_use_the_users_terms(session):
    handlers.load(session, str(VIDEO), FRAMES, controls())
    assert handlers.describe(controls(), session) == "STTM τS 0.90 · τT 0.80 · root 4×4"
    assert handlers.describe(controls(temporal=False), session).endswith("τT off · root 4×4")
    assert handlers.describe(controls(mode="Token budget"), session) == \
        "STTM at a 30% budget (root 4×4)"
    assert handlers.describe(controls(method="Uniform pooling"), session) == \
        "Uniform pooling at 30%"


def test_a_root_grid_of_another_video_is_this_videos_nearest_level(session, monkeypatch):
    """Issues #20, 2 and #18, 2: root grids are per video, and a page (or a load queued behind
    another) may still send the previous video's; that used to fail every load ("Root grid
    must be one of this video's…"). It now means the level nearest in size."""
    def values(root):
        return ("Thresholds", 0.9, 0.8, True, 0.3, root, 1, "STTM")

    handlers.load(session, str(VIDEO), FRAMES, controls())  # pixels: 2×2, 4×4, 7×7, 14×14
    for label, level in [("4×4", 1), ("3×5", 1), ("3x4", 1), ("2×3", 0), ("6×10", 2),
                         ("8×8", 2), ("30×30", 3), ("1×1", 0), (None, 1)]:
        assert handlers.controls_from(session, *values(label)).root_level == level, label
    # a video whose grid is 6×10: another pyramid (as Qwen models give)
    monkeypatch.setattr(session_module, "pixel_patch_features",
                        lambda frames: pixel_patch_features(frames, grid=(6, 10)))
    out = handlers.load(session, str(examples_dir() / "static.mp4"), FRAMES,
                        handlers.controls_from(session, *values("7×7")))
    assert out["root"]["choices"] == ["2×3", "3×5", "6×10"] and out["root"]["value"] == "6×10"
    again = handlers.controls_from(session, *values("7×7"))  # the page still showed 7×7
    assert again.root_level == 2
    assert handlers.load(session, str(VIDEO), FRAMES, again)["root"]["value"] == "6×10"
    assert handlers.controls_from(session, *values("4×4")).root_level == 1  # 3×5
    assert handlers.sync(session, handlers.controls_from(
        session, *values("14×14")[:5], "4×4", 1, "Temporal only"))["served"]["tables"]
    # a tiny model's 3×3 grid: the default 4×4 is its 3×3
    assert handlers.root_level("4×4", ["2×2", "3×3"]) == 1
    assert handlers.root_level("14×14", ["2×2", "3×3"]) == 1
    assert handlers.root_level("0×3", ["2×2", "3×3"]) is None


def test_a_bad_video_keeps_the_session(session, tmp_path):
    handlers.load(session, str(VIDEO), FRAMES, controls())
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(UserError, match="notes.mp4"):
        handlers.load(session, str(bad), FRAMES, controls())
    assert session.video is not None and session.video.clip.path.endswith("camera_pan.mp4")


@pytest.mark.parametrize("name, value, message", [
    ("tau_s", math.nan, r"τS must be a number from 0 to 1 \(got nan\)"),
    ("tau_t", "0.5", r"τT must be a number from 0 to 1 \(got '0.5'\)"),
    ("tau_s", True, r"τS must be a number"),
    ("tau_t", 1.01, r"τT must be a number from 0 to 1"),
    ("budget", 0.0, r"Token budget must be a number from 0.05 to 1"),
    ("budget", math.inf, r"Token budget must be a number"),
    ("layer", 1.5, r"Merge layer must be a whole number from 0 to 1"),
    ("layer", -1, r"Merge layer must be a whole number"),
    ("temporal", "yes", r"Merge across frames must be true or false \(got 'yes'\)"),
    ("mode", "Budget", r"Mode must be one of Thresholds, Token budget \(got 'Budget'\)"),
    ("method", None, r"Method must be one of STTM, Uniform pooling, .* \(got None\)"),
    ("root", "abc", r"Root grid must be a grid such as 14×14 \(this video's: 2×2, 4×4, 7×7, "
                    r"14×14; got 'abc'\)"),
    ("root", 4, r"Root grid must be a grid such as 14×14"),
])
def test_every_control_is_checked(session, name, value, message):
    """An API call can send anything: each wrong value is named, with what it should be."""
    handlers.load(session, str(VIDEO), FRAMES, controls())
    values = dict(mode="Thresholds", tau_s=0.9, tau_t=0.8, temporal=True, budget=0.3,
                  root="4×4", layer=1, method="STTM")
    values[name] = value
    with pytest.raises(UserError, match=message):
        handlers.controls_from(session, *values.values())
    numpy = dict(values, tau_s=np.float32(0.5), tau_t=0.5, temporal=np.bool_(True),
                 budget=0.3, root="4×4", layer=np.int64(1), method="STTM", mode="Thresholds")
    assert handlers.controls_from(session, *numpy.values()) == handlers.Controls(  # numpy too
        reduction=Thresholds(0.5, 0.5), merge_layer=1)


def test_a_failed_load_changes_nothing(session, monkeypatch):
    """Whatever fails after the video decoded (here: its evidence), the session keeps the
    video, QA set and features the page shows."""
    handlers.load(session, str(VIDEO), FRAMES, controls())
    before = (session.video, session.qa)

    def broken(merger):
        raise RuntimeError("evidence failed")

    monkeypatch.setattr(session_module, "merge_evidence", broken)
    with pytest.raises(RuntimeError, match="evidence failed"):
        handlers.load(session, str(examples_dir() / "static.mp4"), FRAMES, controls())
    assert (session.video, session.qa) == before
    assert session.root_choices == ["2×2", "4×4", "7×7", "14×14"]
    assert handlers.sync(session, controls())["served"]["video"] == before[0].id


def test_one_frame_loads(session, tmp_path):
    """One frame (a one-frame clip, or Frames = 1): a grid of one token frame, merged in space
    only; the page's frame scrubber then has a single position."""
    from sttm_core.video import write_video
    from support.videos import random_frames

    still = write_video(tmp_path / "still.mp4", random_frames(T=1, H=64, W=96))
    for path, frames in [(still, FRAMES), (VIDEO, 1)]:
        lab = handlers.load(session, str(path), frames, controls())["lab"]
        assert lab["frames_sampled"] == lab["token_frames"] == 1 and len(lab["frames"]) == 1
        assert lab["evidence"]["grid"] == [1, 14, 14] and lab["notes"] == []
        budget = handlers.sync(session, controls(mode="Token budget"))["served"]["tables"][0]
        assert budget["tau_t"][0] is None  # nothing to merge in time


def write_qa(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_an_uploaded_qa_set_is_matched_to_the_video_by_name(session, tmp_path):
    """The README's format names videos relative to the QA file; an upload lands in a temporary
    folder where they do not resolve: the questions about the loaded video's file still count
    (and point at the loaded video); a file that cannot be used keeps the set in place."""
    static = examples_dir() / "static.mp4"
    handlers.load(session, str(static), FRAMES, controls())
    bundled = list(session.qa)
    assert len(bundled) == 4
    ask = {"question": "Which shape?", "options": ["circle", "square"], "answer": "A"}
    upload = tmp_path / "gradio" / "0123abcd"  # as Gradio stores an upload
    upload.mkdir(parents=True)
    mine = write_qa(upload / "mine.jsonl", [{"video": "videos/static.mp4", **ask},
                                            {"video": "other.mp4", **ask},
                                            {"video": "static.mp4", **ask, "answer": "B"}])
    handlers.upload_qa(session, mine)
    assert len(session.qa) == 2 and {str(i.video) for i in session.qa} == {str(static)}
    assert [i.answer for i in session.qa] == ["A", "B"]
    kept = list(session.qa)
    for records, message in [
        ([{"video": "other.mp4", **ask}], r"^elsewhere.jsonl has 1 question\(s\), none about "
                                          r"static.mp4 \(their videos: other.mp4\)"),
        ([{"video": "static.mp4", "question": "q"}],
         r"^elsewhere.jsonl:1: missing required field 'options'$"),
        ([{"video": "static.mp4", **ask, "question": "x" * 5000}], r"^elsewhere.jsonl:1: question is 5,000 characters long; at most 2,000"),
        ([{"video": "static.mp4", **ask, "id": "q"}, {"video": "other.mp4", **ask, "id": "q"}],
         r"^elsewhere.jsonl:2: duplicate question id\(s\): id 'q' is shared by questions 1 "
         r"and 2 \(lines 1 and 2\)"),
    ]:
        bad = write_qa(upload / "elsewhere.jsonl", records)
        with pytest.raises(UserError, match=message) as caught:
            handlers.upload_qa(session, bad)
        assert str(tmp_path) not in str(caught.value)  # no server path in the message
        assert session.qa == kept
    assert kept != bundled


def test_unexpected_errors_show_no_server_folders():
    from sttm_viz.ui import _without_folders

    message = "[Errno 2] No such file: '/tmp/gradio/4f2a/clip.mp4' (see /srv/app/log.txt)"
    assert _without_folders(message) == "[Errno 2] No such file: 'clip.mp4' (see log.txt)"
    assert _without_folders("1/2 of http://host/x, /root") == "1/2 of http://host/x, /root"
