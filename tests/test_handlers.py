"""The app's handlers called directly, without a server (no model: pixel features)."""
import pytest

from sttm_core import STTMConfig, VideoTokenMerger, thresholds_for_budget
from sttm_core.evidence import merge_evidence
from sttm_core.examples import examples_dir
from sttm_core.pixels import pixel_patch_features
from sttm_core.video import load_video
from sttm_viz import handlers
from sttm_viz.payload import BUDGETS, evidence_json
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


def test_a_bad_video_keeps_the_session(session, tmp_path):
    handlers.load(session, str(VIDEO), FRAMES, controls())
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(UserError, match="notes.mp4"):
        handlers.load(session, str(bad), FRAMES, controls())
    assert session.video is not None and session.video.clip.path.endswith("camera_pan.mp4")
