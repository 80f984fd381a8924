"""Positions a patched Qwen-VL model uses: Qwen's reference rule, checked against a plain
re-statement of the rule (support.positions), in fp32 and bf16, merged or not, in forward,
generate() and VideoChat."""
import numpy as np
import pytest
import torch

from support.model_inputs import prompt_inputs
from support.positions import (next_position, reference_position_ids, reference_positions,
                               with_text_row)
from support.videos import random_frames
from sttm_core import STTMConfig
from sttm_core.chat import VideoChat
from sttm_core.models import patch, unpatch
from sttm_core.models.checkpoints import load_model
from sttm_core.video import VideoClip

pytestmark = pytest.mark.model

QWEN = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl"]
# transformers 5.23 numbers these by the reference rule already (one block per token frame)
TRANSFORMERS_AGREES = {"tiny-qwen3-vl"}
DTYPES = [torch.float32, torch.bfloat16]
# 16 frames at 0.5 fps: 8 temporal patches on a 3x5 token grid, so the video's time ids run
# past its grid side and transformers 5.23 (text at start + max(H, W)) differs from the rule
LONG_VIDEO = dict(frames=random_frames(T=16), fps=0.5)
QUESTIONS = ["Is it day?", "What colour is the sky in the second half?"]
MERGING = STTMConfig(method="sttm_budget", keep_ratio=0.4, merge_layer=2)


@pytest.fixture(params=[(name, dtype) for name in QWEN for dtype in DTYPES],
                ids=lambda p: f"{p[0]}-{str(p[1])[6:]}")
def qwen(request, tiny_checkpoints):
    name, dtype = request.param
    loaded = load_model(str(tiny_checkpoints[name]), device="cpu", dtype=dtype)
    loaded.arch = name  # which tiny architecture (the checkpoint path is its name)
    return loaded


def record_positions(model):
    """The position ids the language model receives, one entry per forward."""
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs.get("position_ids")), with_kwargs=True)
    return seen, handle


def transformers_positions(model, inputs):
    """transformers' own get_rope_index (5.23: text after a video at start + max(H, W))."""
    keys = ("mm_token_type_ids", "video_grid_thw", "attention_mask", "second_per_grid_ts")
    rope_index = type(model.model).get_rope_index
    given = {k: inputs[k] for k in keys if k in inputs}
    return rope_index(model.model, inputs["input_ids"], **given)[0]


@torch.no_grad()
@pytest.mark.parametrize("config", [STTMConfig.all_tokens(1), MERGING], ids=["all", "merged"])
def test_prefill_and_generate_follow_the_reference_rule(qwen, config):
    model = qwen.model
    inputs, _ = prompt_inputs(qwen, questions=QUESTIONS, **LONG_VIDEO)
    expected = reference_position_ids(qwen, inputs)  # [3, B, L]
    agrees = torch.equal(transformers_positions(model, inputs), expected)
    assert agrees == (qwen.arch in TRANSFORMERS_AGREES)  # Qwen2(.5)-VL: the rules differ here
    patch(model, config)
    seen, handle = record_positions(model)
    model(**inputs)
    assert torch.equal(seen[0][-3:], expected)
    seen.clear()
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    handle.remove()
    assert torch.equal(seen[0][-3:], expected)  # generate's prefill: [4, B, L], rows 1.. = t, h, w
    for step, positions in enumerate(seen[1:]):  # each decode step continues at max + 1
        for row in range(len(QUESTIONS)):
            assert positions[-3:, row, -1].tolist() == [next_position(expected[:, row]) + step] * 3
    unpatch(model)
    assert "get_rope_index" not in vars(model.model)  # transformers' own rule is back
    seen, handle = record_positions(model)
    model(**inputs)
    handle.remove()
    assert torch.equal(seen[0], transformers_positions(model, inputs))


@torch.no_grad()
def test_disabled_merge_equals_the_unpatched_model_at_reference_positions(qwen):
    model = qwen.model
    inputs, _ = prompt_inputs(qwen, questions=QUESTIONS, **LONG_VIDEO)
    positions = reference_position_ids(qwen, inputs)
    logits = model(**inputs, position_ids=positions).logits
    explicit = with_text_row(positions, inputs["attention_mask"])  # [4, B, L], as generate passes
    tokens = model.generate(**inputs, position_ids=explicit, max_new_tokens=4, do_sample=False)
    patch(model, STTMConfig.all_tokens(merge_layer=1))
    assert torch.equal(model(**inputs).logits, logits)
    assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), tokens)


@torch.no_grad()
def test_merged_tokens_keep_their_representatives_reference_ids(qwen):
    model, k = qwen.model, MERGING.merge_layer
    inputs, _ = prompt_inputs(qwen, questions=QUESTIONS[:1], **LONG_VIDEO)
    expected = reference_position_ids(qwen, inputs)[:, 0]  # [3, L]
    patch(model, MERGING)
    seen = {}
    handle = qwen.adapter.decoder_layers[k].register_forward_pre_hook(  # after STTM's hook
        lambda m, args, kwargs: seen.update(cos=kwargs["position_embeddings"][0]), with_kwargs=True)
    model(**inputs)
    handle.remove()
    (span,) = model.sttm.prefill.spans
    T, H, W = span.grid
    grid = (inputs["input_ids"][0] == model.config.video_token_id).nonzero().flatten()
    boxes = model.sttm.last_merge.boxes  # each token's first patch is its representative
    representatives = grid[(boxes[:, 0] * H + boxes[:, 1]) * W + boxes[:, 2]]
    kept = torch.ones(expected.shape[1], dtype=torch.bool)
    kept[grid] = False
    kept[representatives] = True
    kept = kept.nonzero().flatten()  # text and timestamps, and the representatives, in order
    rotary = qwen.adapter.language_model.rotary_emb
    cos, _ = rotary(seen["cos"], expected[:, None, kept])
    torch.testing.assert_close(seen["cos"], cos, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
def test_video_chat_keeps_time_exact_in_bf16(tiny_checkpoints, dtype):
    """A 47 s video sampled at 16 frames: seconds per temporal patch 94/15 stays fp32, so the
    time ids are floor(t * 94/15 * 2) (in bf16 it would round to 6.28125: the last id off)."""
    loaded = load_model(str(tiny_checkpoints["tiny-qwen2.5-vl"]), device="cpu", dtype=dtype,
                        max_pixels=56 * 84)
    frames = random_frames(T=16, H=56, W=84)
    clip = VideoClip(frames, np.linspace(0, 47, 16), 25.0, 47.0, 1175, "47s.mp4")
    chat = VideoChat(loaded, STTMConfig.all_tokens(1), max_new_tokens=2)
    chat.set_clip(clip)
    calls = []
    model_hook = loaded.model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(kwargs.get("second_per_grid_ts")), with_kwargs=True)
    seen, handle = record_positions(loaded.model)
    chat.ask("What happens?")
    handle.remove()
    model_hook.remove()
    assert calls[0].dtype == torch.float32
    video, placeholder = chat.prefix._encoded  # the encoded video: its grid and placeholder
    prompt, _ = loaded.adapter.prompt_ids(loaded.tokenizer, placeholder)
    video_token = loaded.model.config.video_token_id
    grid = tuple(video["video_grid_thw"][0].tolist())
    expected = reference_positions(prompt, video_token, [grid], seconds=[94 / 15],
                                   tokens_per_second=2)
    video_times = expected[0, torch.tensor(prompt) == video_token].unique()
    assert (video_times - video_times[0]).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]
    assert torch.equal(seen[0][:, 0], expected)  # the prefix prefill: [3, 1, L]
    question = seen[1]  # the question's tokens continue at max + 1 on all three rows
    assert question[:, 0, 0].tolist() == [next_position(expected)] * 3
