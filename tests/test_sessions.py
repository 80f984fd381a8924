"""Sessions sharing one model (sttm_viz.session.Engine), without a server: a session in use
keeps its KV cache and its video whatever other sessions do; idle ones beyond the limits lose
them, and say so or rebuild; a failed load changes nothing. Tiny random-weight model."""
import pytest

from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_core.reduction import Thresholds
from sttm_viz.session import Controls, Engine, Session, UserError

pytestmark = pytest.mark.model

FRAMES = 4
CONTROLS = Controls(reduction=Thresholds(0.8, 0.6, root_level=0))


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    return load_model(str(tiny_checkpoints["tiny-llava-onevision"]), device="cpu")


def opened(engine: Engine, name: str) -> Session:
    """A session that loaded an example, as one app event does (Engine.serving)."""
    session = Session(engine)
    with engine.serving(session):
        session.load(str(examples_dir() / f"{name}.mp4"), FRAMES, CONTROLS)
    return session


def answer(session: Session, question="What is shown?"):
    """The last (reply, None) of a question, asked inside one app event."""
    with session.engine.serving(session):
        return list(session.ask(question, CONTROLS))[-1][0]


def test_a_streaming_reply_keeps_its_cache_while_others_use_the_model(loaded):
    """Issue #12, 1: another user's work must not drop the cache a reply is streaming from."""
    engine = Engine(loaded, max_cached_sessions=1, max_new_tokens=6)
    a, b = opened(engine, "static"), opened(engine, "fast_motion")
    assert a.chat.merge_result is None  # only one session keeps a cache: b's load dropped a's
    with engine.serving(a):
        stream = a.ask("What is shown?", CONTROLS)
        first, _ = next(stream)  # a's prefix rebuilt; its reply is streaming now
        assert not first.cache_reused and not first.done
        for _ in range(2):  # b uses the model meanwhile (more cached sessions than allowed)
            assert answer(b).done
            assert a.chat.merge_result is not None  # a is in use: its cache stays
        *_, (last, _) = stream  # and a's reply finishes from it
    assert last.done and last.num_generated > first.num_generated
    assert answer(b).cache_reused
    assert a.chat.merge_result is None and b.chat.merge_result is not None  # a idle: dropped
    again = answer(a)  # rebuilt on the next question, never a missing prefix
    assert again.done and not again.cache_reused
    assert engine.cached_sessions == [a]


def test_idle_sessions_beyond_the_cap_are_closed_and_told_so(loaded):
    engine = Engine(loaded, max_sessions=2)
    a, b = opened(engine, "static"), opened(engine, "camera_pan")
    with engine.serving(a):  # a is in use while c arrives: the idle b goes, not a
        c = opened(engine, "fast_motion")
        assert a.video is not None
    assert engine.open_sessions == [c, a]
    assert b.video is None and b.chat is None and b.qa == []
    with pytest.raises(UserError, match="closed to make room for others .* the 2 most recently "
                                        "used.* Load a video to start again"):
        answer(b)
    with engine.serving(b):  # loading again opens it again; the longest idle now goes
        b.load(str(examples_dir() / "camera_pan.mp4"), FRAMES, CONTROLS)
    assert engine.open_sessions == [a, b] and c.video is None
    assert answer(b).done


def test_a_failed_load_changes_nothing(loaded, tmp_path):
    engine = Engine(loaded, max_seconds=6)
    session = opened(engine, "static")
    video, chat, qa = session.video, session.chat, session.qa
    assert len(qa) == 4
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    for path, frames, message in [(bad, FRAMES, "notes.mp4 is not a video file"),
                                  (examples_dir() / "needle_count.mp4", FRAMES, "8 s long"),
                                  (examples_dir() / "fast_motion.mp4", 0, "Frames must be"),
                                  (examples_dir() / "fast_motion.mp4", 2.5, "whole number")]:
        with pytest.raises(UserError, match=message):
            session.load(str(path), frames, CONTROLS)
        assert session.video is video and session.chat is chat and session.qa is qa
    assert answer(session).done


def test_an_expired_session_lets_go_of_everything(loaded):
    engine = Engine(loaded)
    session = opened(engine, "static")
    engine.forget(session)  # what the app's gr.State calls after an hour idle
    assert session.video is None and session.chat is None
    assert engine.open_sessions == [] and engine.cached_sessions == []
    with pytest.raises(UserError, match="expired"):
        answer(session)
