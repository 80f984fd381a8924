"""The running Gradio app, driven through gradio_client, with a tiny random-weight model."""
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from sttm_core import STTMConfig, merge_video_tokens, pyramid_sizes
from sttm_core.chat import VideoChat
from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_viz.session import Engine

pytestmark = pytest.mark.app

EXAMPLE = examples_dir() / "static.mp4"
FRAMES = 8
MAX_PIXELS = 28 * 28 * 15


@pytest.fixture(scope="module")
def server(tiny_checkpoints, serve):
    loaded = load_model(str(tiny_checkpoints["tiny-qwen2-vl"]), device="cpu")
    return loaded, serve(Engine(loaded, max_pixels=MAX_PIXELS), FRAMES)


@pytest.fixture
def app(server):
    """A new browser-like session on the shared server."""
    loaded, url = server
    return loaded, Client(url, verbose=False)


@pytest.fixture(scope="module")
def fallback_app(serve):
    return Client(serve(Engine(None, "no weights here (test)."), FRAMES), verbose=False)


def controls(tau_s=0.8, tau_t=0.6, root="4x4", layer=2, mode="Thresholds", budget=0.3,
             method="STTM"):
    return [mode, tau_s, tau_t, True, budget, root, layer, method]


def load(client, video=EXAMPLE, layer=2):
    """Load a video; returns the outputs and the controls as the page now shows them (the root
    choices follow the video's grid)."""
    out = client.predict(handle_file(str(video)), FRAMES, "granularity", *controls(layer=layer),
                         api_name="/load")
    return out, controls(root=out[5]["value"], layer=layer)


def test_baselines_and_fastv_in_the_app(app):
    _, client = app
    _, shown = load(client)
    root = shown[5]
    uniform = client.predict(0, "granularity", *controls(root=root, method="Uniform pooling"),
                             api_name="/remerge")
    assert "tokens after temporal merging" in uniform[0]
    fastv = controls(root=root, method="FastV")
    before = client.predict(0, "granularity", *fastv, api_name="/remerge")[0]
    assert "FastV picks tokens by the question" in before  # meanwhile: all tokens
    assert tokens_in(before) == int(re.search(r"= (\d+) tokens\*\*", before).group(1))
    reply = client.predict("What is shown?", [], False, *fastv, api_name="/chat")[0]
    assert "video prefix built for this reply" in text_of(reply[-1])  # no reuse for FastV
    fresh = Client(client.src, verbose=False)  # a first load with FastV selected works too
    first = fresh.predict(handle_file(str(EXAMPLE)), FRAMES, "granularity",
                          *controls(method="FastV"), api_name="/load")[0]
    assert "FastV picks tokens by the question" in first
    after = client.predict(0, "granularity", *fastv, api_name="/remerge")[0]
    total = int(re.search(r"= (\d+) tokens\*\*", after).group(1))
    assert tokens_in(after) == round(0.3 * total)  # the token map now shows FastV's choice


def text_of(message: dict) -> str:
    """A chatbot message's text (Gradio 6 sends content as a list of typed parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def tokens_in(readout: str) -> int:
    return int(re.search(r"\*\*(\d+) tokens after temporal merging", readout).group(1))


def expected_tokens(loaded, tau_s, tau_t, root_level, layer=2):
    """merge_video_tokens on the same layer-k features, computed outside the app."""
    chat = VideoChat(loaded, STTMConfig(tau_s, tau_t, root_level, layer), num_frames=FRAMES,
                     max_pixels=MAX_PIXELS)
    chat.load_video(EXAMPLE)
    features = chat.video_features().float()
    return merge_video_tokens(features, tau_s, tau_t, root_level).num_tokens


def test_load_and_sliders_match_merge_video_tokens(app):
    loaded, client = app
    out, _ = load(client)
    readout, token_map, grid = out[0], out[1], out[2]
    assert "layer-2 hidden states" in readout
    assert Path(token_map).exists() and Path(grid).exists()
    # the root radio now lists this video's pyramid (4 token frames of 3x4: 2x2, 3x4)
    shape = re.search(r"(\d+)×(\d+) patches", readout).groups()
    assert [c[0] for c in out[5]["choices"]] == [f"{h}x{w}" for h, w in
                                                 pyramid_sizes(*map(int, shape))] == ["2x2", "3x4"]
    assert tokens_in(readout) == expected_tokens(loaded, 0.8, 0.6, 1)
    for tau_s, tau_t in [(0.5, 0.3), (0.95, 0.9)]:
        moved = client.predict(0, "token", *controls(tau_s, tau_t, root="2x2"),
                               api_name="/remerge")
        assert tokens_in(moved[0]) == expected_tokens(loaded, tau_s, tau_t, 0)


def test_a_new_merge_layer_recomputes_the_features(app):
    loaded, client = app
    _, shown = load(client)
    moved = client.predict(0, "granularity", *controls(root=shown[5], layer=1),
                           api_name="/change_layer")[0]
    assert "layer-1 hidden states" in moved
    assert tokens_in(moved) == expected_tokens(loaded, 0.8, 0.6, 1, layer=1)


def test_two_questions_the_second_reuses_the_cache(app):
    _, client = app
    _, shown = load(client)  # loading prefilled the video prefix (the token map needs layer k)
    first = client.predict("What is shown?", [], False, *shown, api_name="/chat")[0]
    second = client.predict("Is anything moving?", first, False, *shown, api_name="/chat")[0]
    for messages in (first, second):
        assert re.search(r"TTFT [\d.]+ s · cached video prefix", text_of(messages[-1]))
    # new thresholds: the cached prefix is re-merged (layers >= k), not rebuilt
    moved = controls(0.5, 0.3, root=shown[5])
    third = client.predict("And now?", second, False, *moved, api_name="/chat")[0]
    assert "cached video prefix" in text_of(third[-1])
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]


def test_compare_with_all_tokens_and_ttft(app):
    _, client = app
    _, shown = load(client)
    messages = client.predict("What is shown?", [], True, *shown, api_name="/chat")[0]
    assert text_of(messages[-1]).startswith("*All tokens:*")
    assert re.search(r"\*\*(same|different) answer\*\*", text_of(messages[-1]))
    ttft = client.predict(*shown, api_name="/measure_ttft")
    assert re.search(r"TTFT speed-up [\d.]+×", ttft)


def test_qa_scoring_on_the_bundled_set(app):
    _, client = app
    out, shown = load(client)
    assert "QA set: 4 multiple-choice questions" in out[7]
    scores = client.predict(*shown, api_name="/score")
    assert re.search(r"STTM: \d+%\*\* vs \*\*all tokens: \d+%", scores)


def test_bad_uploads_get_a_message(app, tmp_path):
    _, client = app
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad, message in [(text, "notes.mp4"), (empty, "empty")]:
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(bad)), FRAMES, "granularity", *controls(),
                           api_name="/load")
    out, _ = load(client)  # the app is still alive and works afterwards
    assert tokens_in(out[0]) > 0


def test_fallback_without_a_model_still_merges_pixels(fallback_app):
    out, shown = load(fallback_app, layer=1)
    assert "per-patch pixels" in out[0] and "no weights here" in out[0]
    assert tokens_in(out[0]) < FRAMES * 14 * 14
    with pytest.raises(AppError, match="Chat needs a model"):
        fallback_app.predict("Hello?", [], False, *shown, api_name="/chat")
