"""The running Gradio app, driven through gradio_client, with a tiny random-weight model."""
import re
import threading

import pytest
import requests
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from sttm_core import STTMConfig, VideoTokenMerger, merge_video_tokens, thresholds_for_budget
from sttm_core.chat import VideoChat
from sttm_core.evidence import merge_evidence
from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_viz.payload import evidence_json
from sttm_viz.session import Engine

pytestmark = pytest.mark.app

EXAMPLE = examples_dir() / "static.mp4"
FRAMES = 8
MAX_PIXELS = 28 * 28 * 15


@pytest.fixture(scope="module")
def server(tiny_checkpoints, serve):
    loaded = load_model(str(tiny_checkpoints["tiny-qwen2-vl"]), device="cpu",
                        max_pixels=MAX_PIXELS)
    return loaded, serve(Engine(loaded), FRAMES)


@pytest.fixture
def app(server):
    """A new browser-like session on the shared server."""
    loaded, url = server
    return loaded, Client(url, verbose=False)


@pytest.fixture(scope="module")
def fallback_app(serve):
    return Client(serve(Engine(None, "no weights here (test)."), FRAMES), verbose=False)


def controls(tau_s=0.8, tau_t=0.6, root="2×2", layer=2, mode="Thresholds", budget=0.3,
             method="STTM", temporal=True):
    return [mode, tau_s, tau_t, temporal, budget, root, layer, method]


def load(client, video=EXAMPLE, **kw):
    """Load a video: (lab payload, root update, qa line, chat, ttft, scores)."""
    return client.predict(handle_file(str(video)), None, FRAMES, *controls(**kw), api_name="/load")


def features(loaded, layer=2, dtype=None):
    """The layer-k features of the example, computed outside the app."""
    chat = VideoChat(loaded, STTMConfig(merge_layer=layer), num_frames=FRAMES)
    chat.load_video(EXAMPLE)
    return chat.video_features()


def test_load_sends_the_model_features_evidence(app):
    loaded, client = app
    lab, root, *_ = load(client)
    assert lab["source"].startswith("layer-2 hidden states")
    # Qwen2-VL folds frame pairs: the page is told why it sees fewer frames
    assert lab["frames_sampled"] == FRAMES and lab["token_frames"] == FRAMES // 2
    assert "folds 2 frames into one token frame: 8 frames → 4 token frames" in lab["notes"][0]
    x = features(loaded)
    assert lab["evidence"] == evidence_json(merge_evidence(VideoTokenMerger(x)))
    assert [c[0] for c in root["choices"]] == ["2×2", "3×4"] and root["value"] == "2×2"
    assert len(lab["frames"]) == FRAMES // 2 and lab["frames"][0].startswith("data:image/jpeg")
    served = client.predict(*controls(), api_name="/sync")  # what the page asks for itself
    assert served["video"] == lab["id"] and served["tokens"] is None and served["tables"] == []


def test_a_stale_root_grid_or_a_threshold_out_of_range_never_fails_a_call(app):
    """Issues #20, 2 and #18, 1-2: the page sends the root grid it shows, which may be another
    video's (a second load sent while the first runs, the 14×14 defaults on a model whose grid
    is not 14×14): Gradio refused it ("Value: '4×4' … is not in the list of choices"). A τ the
    page holds out of the slider's 0–1 (an old page's −1, a typed 1.5) failed every call."""
    loaded, client = app
    lab, root, *_ = load(client, root="4×4")  # the page's default, before any video
    assert [c[0] for c in root["choices"]] == ["2×2", "3×4"] and root["value"] == "3×4"
    for stale, tau_s, tau_t, level in [("4×4", 0.8, 0.6, 1), ("6×10", -1, 0.6, 1),
                                       ("14×14", 1.5, -0.5, 1), ("2×3", 0.8, 1.01, 0)]:
        lab, root, *_ = load(client, root=stale, tau_s=tau_s, tau_t=tau_t)
        assert root["value"] == ["2×2", "3×4"][level]  # the nearest in size
        assert lab["source"].startswith("layer-2 hidden states")
        served = client.predict(*controls(root=stale, tau_s=tau_s, tau_t=tau_t,
                                          mode="Token budget"), api_name="/sync")
        assert served["video"] == lab["id"] and served["tables"][0]["root"] == level
    assert client.predict(*controls(root="2×2", tau_s=-1), api_name="/sync")["video"] == lab["id"]
    with pytest.raises(AppError, match=r"Root grid must be a grid such as 3×4 \(this video's: "
                                       r"2×2, 3×4; got 'abc'\)"):
        client.predict(*controls(root="abc"), api_name="/sync")
    with pytest.raises(AppError, match=r"Mode must be one of Thresholds, Token budget"):
        client.predict(*controls(mode="Budget"), api_name="/sync")


def test_budget_and_baselines_come_from_the_server(app):
    loaded, client = app
    lab, *_ = load(client)
    x = features(loaded)
    table = client.predict(*controls(mode="Token budget", budget=0.4), api_name="/sync")["tables"][0]
    k = table["budgets"].index(0.4)
    want = thresholds_for_budget(x, 0.4, root_level=0)
    assert (table["tau_s"][k], table["tau_t"][k]) == (want.spatial_threshold, want.temporal_threshold)
    got = merge_video_tokens(x, table["tau_s"][k], table["tau_t"][k], 0)
    assert torch.equal(got.token_map, want.result.token_map)  # the page's merge at those
    uniform = client.predict(*controls(method="Uniform pooling", budget=0.5), api_name="/sync")
    assert uniform["tokens"]["method"] == "uniform" and uniform["tokens"]["budget"] == 0.5
    assert uniform["video"] == lab["id"]
    assert client.predict(*controls(), api_name="/sync")["tables"] == []  # thresholds: nothing


def test_fastv_tokens_follow_a_question(app):
    _, client = app
    lab, *_ = load(client, method="FastV")
    T, H, W = lab["evidence"]["grid"]
    before = client.predict(*controls(method="FastV"), api_name="/sync")
    assert before["tokens"] is None  # no question yet: the page says so and shows all patches
    messages, _, served = client.predict("What is shown?", [], False, *controls(method="FastV"),
                                         api_name="/chat")
    assert "video prefix prefilled for this reply" in text_of(messages[-1])
    kept = [t for t in served["tokens"]["to_token"] if t >= 0]
    assert served["tokens"]["method"] == "fastv" and len(set(kept)) == round(0.3 * T * H * W)


def text_of(message: dict) -> str:
    """A chatbot message's text (Gradio 6 sends content as a list of typed parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def test_a_new_merge_layer_recomputes_the_features(app):
    loaded, client = app
    load(client)
    lab, ttft, scores = client.predict(*controls(layer=1), api_name="/change_layer")
    assert lab["source"].startswith("layer-1 hidden states")
    assert lab["evidence"] == evidence_json(merge_evidence(VideoTokenMerger(features(loaded, 1))))
    assert ttft == "" and scores == ""


def test_two_questions_the_second_reuses_the_cache(app):
    _, client = app
    load(client)  # loading prefilled the video prefix (the token map needs layer k)
    first = client.predict("What is shown?", [], False, *controls(), api_name="/chat")[0]
    second = client.predict("Is anything moving?", first, False, *controls(), api_name="/chat")[0]
    for messages in (first, second):
        assert re.search(r"TTFT [\d.]+ s · cached video prefix", text_of(messages[-1]))
    # new thresholds: the cached prefix is re-merged (layers >= k), not rebuilt
    third = client.predict("And now?", second, False, *controls(0.5, 0.3), api_name="/chat")[0]
    assert "cached video prefix" in text_of(third[-1])
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]


def test_compare_answers_both_on_a_cached_prefix(app):
    _, client = app
    load(client)
    question = "Which colour?\nA. red\nB. blue\nAnswer with the option's letter."
    messages = client.predict(question, [], True, *controls(), api_name="/chat")[0]
    sttm, everything = text_of(messages[-2]), text_of(messages[-1])
    assert everything.startswith("*All tokens:*")
    assert "cached video prefix" in sttm and "cached video prefix" in everything
    assert re.search(r"\*\*(same|different) answer\*\*", everything)


def test_ttft_is_a_median_of_fresh_prefills_with_the_encoder_apart(app):
    _, client = app
    load(client)
    ttft = client.predict(*controls(), api_name="/measure_ttft")
    assert re.search(r"TTFT speed-up [\d.]+×", ttft)
    assert "median of 3 runs after a warm-up" in ttft and "prefilled for it (both ways)" in ttft
    assert re.search(r"vision encoder .* ran once for this video: [\d.]+ s, not included", ttft)
    runs = re.findall(r"\| ([\d.]+), ([\d.]+), ([\d.]+) \|", ttft)
    assert len(runs) == 2  # all tokens and STTM, three runs each


def test_qa_scoring_is_a_table_per_question(app):
    _, client = app
    out = load(client)
    assert "QA set: 4 multiple-choice questions" in out[2]
    scores = client.predict(*controls(), api_name="/score")
    assert re.search(r"STTM τS 0.80 · τT 0.60 · root 2×2: \d+% right\*\* · all tokens: \d+%", scores)
    assert re.search(r"chance 25% · \d+% of video tokens kept", scores)
    rows = re.findall(r"^\| (\d) \| .* \| ([A-D?]) \| ([A-D?]) \| ([A-D]) \| (yes|no) \|$", scores, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert all((r[1] == r[2]) == (r[4] == "yes") for r in rows if "?" not in r[1:3])


def test_one_model_queue_for_every_session(server):
    """Two users at once: one changes the merge layer and asks, the other asks; the model's
    work runs one event at a time, so both are answered and nothing breaks."""
    _, url = server
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    load(a), load(b)
    answers, errors = {}, []

    def user_a():
        try:
            a.predict(*controls(layer=1), api_name="/change_layer")
            answers["a"] = a.predict("What is shown?", [], False, *controls(layer=1),
                                     api_name="/chat")[0]
        except Exception as err:  # noqa: BLE001 - collected, asserted below
            errors.append(err)

    def user_b():
        try:
            jobs = [b.submit("Describe it.", [], True, *controls(), api_name="/chat"),
                    b.submit(*controls(layer=3), api_name="/change_layer")]
            answers["b"] = jobs[0].result()[0]
            jobs[1].result()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=user_a), threading.Thread(target=user_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert text_of(answers["a"][-1]) and text_of(answers["b"][-1])
    assert "TTFT" in text_of(answers["b"][-2])


def test_bad_uploads_get_a_message(app, tmp_path):
    _, client = app
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad, message in [(text, "notes.mp4"), (empty, "empty")]:
        with pytest.raises(AppError, match=message):
            load(client, bad)
    lab, *_ = load(client)  # the app is still alive and works afterwards
    assert lab["evidence"]["grid"][0] == FRAMES // 2


def test_fallback_without_a_model_still_merges_pixels(fallback_app):
    lab, *_ = load(fallback_app, layer=1)
    assert lab["source"].startswith("pixels") and lab["token_frames"] == FRAMES
    assert lab["evidence"]["grid"] == [FRAMES, 14, 14]
    with pytest.raises(AppError, match="Chat needs a model"):
        fallback_app.predict("Hello?", [], False, *controls(layer=1), api_name="/chat")
    with pytest.raises(AppError, match="TTFT needs a model"):
        fallback_app.predict(*controls(layer=1), api_name="/measure_ttft")


def test_a_qwen3_vl_checkpoint_loads_and_chats(tiny_checkpoints, serve):
    """Nothing in the app is family-specific: a Qwen3-VL model (timestamps, DeepStack) loads,
    its evidence says every token frame keeps a token, and questions reuse the cached prefix."""
    loaded = load_model(str(tiny_checkpoints["tiny-qwen3-vl"]), device="cpu",
                        max_pixels=MAX_PIXELS)
    client = Client(serve(Engine(loaded), FRAMES), verbose=False)
    lab, root, *_ = load(client, layer=1)
    assert lab["token_frames"] == FRAMES // 2 and lab["evidence"]["keep_every_frame"] is True
    x = features(loaded, layer=1)
    assert lab["evidence"] == evidence_json(merge_evidence(VideoTokenMerger(x, keep_every_frame=True)))
    root = root["choices"][0][0]  # its 32-pixel tokens make another grid than Qwen2-VL's
    first = client.predict("What is shown?", [], False, *controls(root=root, layer=1),
                           api_name="/chat")[0]
    second = client.predict("Is anything moving?", first, False, *controls(root=root, layer=1),
                            api_name="/chat")[0]
    for messages in (first, second):
        assert re.search(r"TTFT [\d.]+ s · cached video prefix", text_of(messages[-1]))
    third = client.predict("And now?", second, False, *controls(0.5, 0.3, root=root, layer=1),
                           api_name="/chat")[0]  # re-merged from layer 1 (DeepStack too)
    assert "cached video prefix" in text_of(third[-1])


def test_the_max_pixels_flag_reaches_the_frames(tiny_checkpoints):
    """`sttm-studio --max-pixels N` caps the loaded model's frames; on a family with fixed-size
    frames it stops with the reason, before the app starts."""
    from sttm_viz.app import load_engine, main, parse_args

    qwen = ["--model", str(tiny_checkpoints["tiny-qwen2-vl"]), "--device", "cpu"]
    engine = load_engine(parse_args(qwen + ["--max-pixels", str(MAX_PIXELS)]))
    assert engine.loaded.settings["max_pixels"] == MAX_PIXELS
    llava = ["--model", str(tiny_checkpoints["tiny-llava-onevision"]), "--device", "cpu"]
    with pytest.raises(SystemExit, match="max_pixels=20000: a frame-size cap applies to the "
                                         "Qwen-VL families"):
        main(llava + ["--max-pixels", "20000"])


def test_presets_are_the_papers_for_the_loaded_family(server):
    """A Qwen2-VL app offers the paper's Qwen2-VL-7B thresholds (not LLaVA-OneVision's), on
    its buttons and in the page's own data; the app without a model offers LLaVA-OV-7B's."""
    loaded, url = server
    config = requests.get(f"{url}config", timeout=30).json()
    buttons = [c["props"].get("value") for c in config["components"] if c["type"] == "button"]
    assert "Paper 50% (τS .85, τT .60)" in buttons and "Paper 30% (τS .80, τT .60)" in buttons
    assert not any("τT .65" in str(b) for b in buttons)
    notes = [c["props"].get("value") for c in config["components"]
             if c["props"].get("elem_id") == "sttm-preset-note"]
    assert "Qwen2-VL-7B" in str(notes)
    assert Engine(None, "no model").presets == {"Paper 50% (τS .85, τT .65)": (0.85, 0.65),
                                                "Paper 30% (τS .85, τT .55)": (0.85, 0.55)}
