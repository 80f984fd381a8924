"""The app as a ZeroGPU Space runs it: every model event in a forked worker whose arguments and
results are pickled and whose memory is gone afterwards (tests/support/zerogpu.py reproduces
`spaces.GPU` on the CPU). The session, with the merged video prefix's KV cache, comes back from
each worker, so the next question, in another worker, reuses that prefix."""
import os
import pickle
import re

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from support import zerogpu
from sttm_core import STTMConfig
from sttm_core.chat import VideoChat
from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_core.reduction import Thresholds
from sttm_viz import gpu, handlers
from sttm_viz.session import Controls, Engine, Session

pytestmark = pytest.mark.app

EXAMPLE = examples_dir() / "static.mp4"
FRAMES = 8
MAX_PIXELS = 28 * 28 * 15


def controls(tau_s=0.8, tau_t=0.6, root="2×2", layer=2):
    return ["Thresholds", tau_s, tau_t, True, 0.3, root, layer, "STTM"]


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.fixture(scope="module")
def space(tiny_checkpoints, serve):
    """The app on a tiny Qwen2-VL model, its model events under the ZeroGPU stand-in."""
    loaded = load_model(str(tiny_checkpoints["tiny-qwen2-vl"]), device="cpu",
                        max_pixels=MAX_PIXELS)
    engine = Engine(loaded, max_new_tokens=8)
    url = serve(engine, FRAMES, gpu=zerogpu.GPU)
    return loaded, engine, Client(url, verbose=False)


def reference_answer(loaded, question: str, config: STTMConfig, frames: int = FRAMES) -> str:
    """The same question in this process, on a chat that never left it."""
    chat = VideoChat(loaded, config, num_frames=frames, max_new_tokens=8)
    chat.load_video(EXAMPLE)
    return chat.ask(question).text


def test_a_visit_load_three_questions_new_tau_and_scores(space):
    loaded, engine, client = space
    zerogpu.CALLS.clear()
    lab, root, qa_info, *_ = client.predict(handle_file(str(EXAMPLE)), None, FRAMES, *controls(),
                                            api_name="/load")
    assert lab["source"].startswith("layer-2 hidden states") and "QA set: 4" in qa_info

    history, notes = [], []
    for question in ("What is shown?", "Is anything moving?", "What colour is it?"):
        history = client.predict(question, history, False, *controls(), api_name="/chat")[0]
        notes.append(text_of(history[-1]))
    # loading prefilled the merged prefix (the map needs layer k's features) in one worker;
    # each question, in a worker of its own, appended only its tokens to that cached prefix
    for note in notes:
        assert re.search(r"TTFT [\d.]+ s · cached video prefix", note), note
    answer = notes[0].split("\n\n")[0]
    assert answer == reference_answer(loaded, "What is shown?", STTMConfig(0.8, 0.6, 0, 2))

    # a new τS: the worker re-merges the cached prefix from layer k (layers < k not re-run)
    before = re.search(r"prefill (\d+) → (\d+) tokens", notes[-1]).groups()
    history = client.predict("And now?", history, False, *controls(tau_s=0.3), api_name="/chat")[0]
    note = text_of(history[-1])
    after = re.search(r"prefill (\d+) → (\d+) tokens", note).groups()
    assert "cached video prefix" in note and int(after[1]) < int(before[1])

    scores = client.predict(*controls(), api_name="/score")
    rows = re.findall(r"^\| (\d) \| .* \| ([A-D?]) \| ([A-D?]) \|", scores, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]

    names = [call.name for call in zerogpu.CALLS]
    assert names == ["worker"] * 6  # load, four questions, scoring: each a GPU call
    pids = {call.pid for call in zerogpu.CALLS}
    assert len(pids) == 6 and os.getpid() not in pids  # a new worker each time
    assert all(gpu.START_S <= call.duration <= gpu.MAX_S for call in zerogpu.CALLS)
    # the session came back from every worker; the page's own requests stay here
    assert client.predict(*controls(), api_name="/sync")["video"] == lab["id"]


def test_durations_follow_the_work(space):
    _, engine, _ = space
    session = Session(engine)
    short = gpu.seconds("load", engine, session, (str(EXAMPLE), 4))
    long = gpu.seconds("load", engine, session, (str(EXAMPLE), 32))
    assert gpu.START_S < short < long <= gpu.MAX_S
    assert gpu.seconds("measure_ttft", engine, session, ()) > gpu.seconds("chat", engine, session, ())


def test_wrong_input_is_refused_before_asking_for_a_gpu(space):
    _, _, client = space
    zerogpu.CALLS.clear()
    with pytest.raises(AppError, match="Load a video first"):
        Client(client.src, verbose=False).predict("Hi?", [], False, *controls(), api_name="/chat")
    with pytest.raises(AppError, match="Merge layer must be a whole number"):
        client.predict(handle_file(str(EXAMPLE)), None, FRAMES, *controls(layer=1.5),
                       api_name="/load")
    assert zerogpu.CALLS == []


def test_a_user_error_in_the_worker_keeps_its_message(space):
    _, _, client = space
    client.predict(handle_file(str(EXAMPLE)), None, FRAMES, *controls(), api_name="/load")
    with pytest.raises(AppError, match="Type a question first"):
        client.predict("   ", [], False, *controls(), api_name="/chat")


def test_a_session_pickles_without_model_locks_or_cuda(space):
    """What crosses to a worker: no engine, lock or hook; the chat's tensors packed to load
    on the CPU (so the main process of a Space never holds a CUDA tensor)."""
    loaded, engine, _ = space
    session = Session(engine)
    handlers.load(session, str(EXAMPLE), FRAMES, Controls(reduction=Thresholds(root_level=0)))
    copy = pickle.loads(pickle.dumps(session))
    assert copy.engine is None and copy.video.id == session.video.id
    assert copy.chat.__dict__.get("loaded") is None
    copy.attach(engine.for_worker())
    assert copy.chat.ask("What is shown?").cache_reused


def test_an_example_costs_one_gpu_call_for_every_visitor(space):
    """A page opens on an example: the first visitor's load runs the model in a worker; the
    next visitors get those features from the main process (no GPU call, the same evidence),
    and their first question prefills the prefix in its own call, answering as a chat that
    never left the process. Another merge layer is other features: a GPU call again."""
    loaded, engine, _ = space
    url = space[2].src
    visitors = [Client(url, verbose=False) for _ in range(3)]
    frames = FRAMES - 2  # features no other test of this app loaded
    args = ("Static scene", frames, *controls())
    zerogpu.CALLS.clear()
    first = visitors[0].predict(*args, api_name="/load_example")[0]
    assert [c.name for c in zerogpu.CALLS] == ["worker"]
    for visitor in visitors[1:]:
        lab = visitor.predict(*args, api_name="/load_example")[0]
        assert lab["evidence"] == first["evidence"] and lab["id"] == first["id"]
    assert len(zerogpu.CALLS) == 1  # the next visitors' page opened with no GPU call

    history = visitors[1].predict("What is shown?", [], False, *controls(), api_name="/chat")[0]
    note = text_of(history[-1])
    assert "video prefix prefilled for this reply" in note and len(zerogpu.CALLS) == 2
    assert note.split("\n\n")[0] == reference_answer(loaded, "What is shown?",
                                                     STTMConfig(0.8, 0.6, 0, 2), frames)
    history = visitors[1].predict("Anything else?", history, False, *controls(),
                                  api_name="/chat")[0]
    assert "cached video prefix" in text_of(history[-1])

    visitors[2].predict("Static scene", frames, *controls(layer=1), api_name="/load_example")
    assert len(zerogpu.CALLS) == 4
