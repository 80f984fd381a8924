"""What Qwen3-VL adds to the family invariants (tests/test_patch.py etc. run on it too): the
timestamp before each token frame, DeepStack merged with the hidden states, every token frame
keeping a token, and the MoE variant."""
import numpy as np
import pytest
import torch
from transformers import DynamicCache, Qwen3VLProcessor

from sttm_core import STTMConfig, merge_video_tokens, patch, unpatch
from sttm_core.chat import VideoChat
from sttm_core.models.checkpoints import build_random_checkpoint, load_model
from sttm_core.models.patching import Plan, planned
from sttm_core.models.qwen3_vl import Qwen3VLAdapter
from sttm_core.video import VideoClip
from support.positions import next_position, reference_positions
from support.reference import reference_merge_like
from support.videos import random_frames

pytestmark = pytest.mark.model

FIVE_BY_SEVEN = dict(min_pixels=4 * 32 * 32, max_pixels=35 * 32 * 32)  # 160x224: 5x7 tokens
DEEPSTACK_LAYERS = 3  # the tiny model adds DeepStack features after layers 0, 1, 2


@pytest.fixture
def qwen3(tiny_checkpoints):
    return load_model(str(tiny_checkpoints["tiny-qwen3-vl"]), device="cpu")


def video_prompt(loaded, frames, question="What moves?", fps=2.0):
    """Model inputs of one prompt over a video on a 5x7 token grid."""
    adapter, tokenizer = loaded.adapter, loaded.tokenizer
    video, placeholder = adapter.video_inputs(frames, {**loaded.settings, **FIVE_BY_SEVEN}, fps)
    prefix, closing = adapter.prompt_ids(tokenizer, placeholder)
    ids = torch.tensor([prefix + tokenizer.encode(question, add_special_tokens=False) + closing])
    return dict(input_ids=ids, **video, **adapter.prefill_inputs(ids))


def grid_and_slots(inputs, model, result):
    """The video's grid token positions (raster order over its frame runs), and the slot of
    each merged token in the merged sequence (at its representative, its first patch)."""
    ids = inputs["input_ids"][0]
    grid = (ids == model.config.video_token_id).nonzero().flatten()
    T, H, W = result.grid
    representatives = grid[(result.boxes[:, 0] * H + result.boxes[:, 1]) * W + result.boxes[:, 2]]
    kept = torch.ones(len(ids), dtype=torch.bool)
    kept[grid] = False
    kept[representatives] = True
    return grid, kept, kept.cumsum(0)[representatives] - 1


@torch.no_grad()
def test_prompt_writes_each_token_frames_time_before_it(qwen3):
    """`<t seconds>` then the frame's tokens between <|vision_start|> and <|vision_end|>, t the
    mean time of its two frames, computed as transformers' Qwen3VLProcessor computes it."""
    fps = 2.5
    frames = random_frames(T=7, H=64, W=96)  # 7 frames: the last repeats into a 4th patch
    clip = VideoClip(frames, np.arange(7) / fps, fps, 7 / fps, 7, "clip.mp4")
    chat = VideoChat(qwen3, STTMConfig.all_tokens(1), max_new_tokens=1)
    chat.set_clip(clip)
    fed, seen = [], []
    qwen3.model.register_forward_pre_hook(
        lambda m, args, kwargs: fed.append(kwargs["input_ids"][0].tolist()), with_kwargs=True)
    qwen3.model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["position_ids"]), with_kwargs=True)
    chat.ask("What happens?")
    video, _ = chat.prefix._encoded
    t, h, w = video["video_grid_thw"][0].tolist()
    per_frame = h * w // 4
    times = Qwen3VLProcessor._calculate_timestamps(None, list(range(7)), fps, 2)
    assert [round(x, 2) for x in times] == [0.2, 1.0, 1.8, 2.4] and t == 4
    text = "<|im_start|>user\n" + "".join(
        f"<{x:.1f} seconds><|vision_start|>" + "<|video_pad|>" * per_frame + "<|vision_end|>"
        for x in times)
    expected_ids = qwen3.tokenizer.encode(text, add_special_tokens=False)
    assert fed[0] == expected_ids
    # positions: each token frame a block of its own (Qwen's rule); the question at max + 1
    reference = reference_positions(expected_ids, qwen3.model.config.video_token_id,
                                    [(1, h, w)] * t)
    assert torch.equal(seen[0][:, 0], reference)
    assert seen[1][:, 0, 0].tolist() == [next_position(reference)] * 3


@torch.no_grad()
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_deepstack_is_merged_like_the_hidden_states(qwen3, k):
    """For k < 3 the DeepStack features added after layers k..2 are the video's features
    merged into the merge's tokens with its weights (checked with the reference quadtree), at
    the merged tokens' slots; before k (and for k >= 3 all of them) they are added unmerged."""
    model, layers = qwen3.model, qwen3.adapter.decoder_layers
    inputs = video_prompt(qwen3, random_frames(T=8, H=160, W=224))
    encoded = model.model.get_video_features(inputs["pixel_values_videos"],
                                             inputs["video_grid_thw"])
    deepstack = [f[0] for f in encoded.deepstack_features]  # per layer: [T*H*W, D]
    assert len(deepstack) == qwen3.adapter.deepstack_layers == DEEPSTACK_LAYERS
    raw, added, seen = {}, {}, {}
    for j in range(DEEPSTACK_LAYERS):  # before STTM's hook: the layer's own output
        layers[j].register_forward_hook(lambda m, a, out, j=j: raw.__setitem__(j, out))
    patch(model, STTMConfig(method="sttm_budget", keep_ratio=0.3, root_level=0, merge_layer=k))
    for j in range(DEEPSTACK_LAYERS):  # after it: with the DeepStack features added
        layers[j].register_forward_hook(lambda m, a, out, j=j: added.__setitem__(j, out))
    layers[k].register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(merged=args[0][0]), with_kwargs=True)
    with planned(model, Plan(model.sttm.config, keep_layer_input=True)):
        model(**inputs)

    result = model.sttm.last_merge
    T, H, W = result.grid
    assert result.spatial_keep_ratio < 1 and result.num_tokens < result.num_spatial_tokens
    grid, kept, token_slots = grid_and_slots(inputs, model, result)
    # layer k's merged input is merge_video_tokens of its video states (every frame kept)
    hidden = model.sttm.layer_input.hidden[0]
    expected = merge_video_tokens(hidden[grid].view(T, H, W, -1), result.spatial_threshold,
                                  result.temporal_threshold, 0, keep_every_frame=True)
    assert torch.equal(result.boxes, expected.boxes)
    torch.testing.assert_close(seen["merged"][token_slots], expected.features)
    for j in range(DEEPSTACK_LAYERS):
        addition = added[j][0] - raw[j][0]  # [L or L', D]
        if j < k:  # before the merge: every video token gets its own feature
            where, features = grid, deepstack[j]
        else:  # after it: each merged token gets its group's merged feature
            where = token_slots
            features = reference_merge_like(result, deepstack[j].view(T, H, W, -1), False).float()
        assert addition.shape[0] == (len(kept) if j < k else int(kept.sum()))
        torch.testing.assert_close(addition[where], features, atol=1e-5, rtol=1e-4)
        others = torch.ones(len(addition), dtype=torch.bool)
        others[where] = False
        assert not addition[others].any()  # text, timestamps: nothing added


@torch.no_grad()
def test_a_static_video_keeps_a_token_after_every_timestamp(qwen3):
    """Identical frames merge into the first at layer 0, so without keep_every_frame every
    later timestamp would be followed directly by <|vision_end|>; each keeps one token."""
    model = qwen3.model
    inputs = video_prompt(qwen3, np.repeat(random_frames(T=1, H=160, W=224), 8, axis=0))
    patch(model, STTMConfig(spatial_threshold=0.9, temporal_threshold=0.5, root_level=0,
                            merge_layer=0))
    with planned(model, Plan(model.sttm.config, keep_layer_input=True)):
        model(**inputs)
    result = model.sttm.last_merge
    T, H, W = result.grid
    grid = (inputs["input_ids"][0] == model.config.video_token_id).nonzero().flatten()
    video = model.sttm.layer_input.hidden[0, grid].view(T, H, W, -1)
    alone = merge_video_tokens(video, 0.9, 0.5, 0)  # the engine without the family's rule
    assert set(alone.boxes[:, 0].tolist()) == {0}
    assert set(result.boxes[:, 0].tolist()) == set(range(T))
    assert result.num_tokens == alone.num_tokens + T - 1
    merged_ids = inputs["input_ids"][0, model.sttm.prefill.slots[0]].tolist()
    start, end = model.config.vision_start_token_id, model.config.vision_end_token_id
    assert merged_ids.count(start) == T
    assert all(merged_ids[i + 1] != end for i, token in enumerate(merged_ids) if token == start)


@pytest.mark.parametrize("k", [0, 1])
def test_new_thresholds_remerge_deepstack_from_the_layer_k_states(qwen3, tmp_path, k):
    """set_config re-merges layer k's stored states and the DeepStack features still to be
    added: the re-merged prefix's cache is the fresh prefix's, layer by layer."""
    from sttm_core.video import write_video

    write_video(tmp_path / "clip.mp4", random_frames(T=8, H=160, W=224), fps=4)
    qwen3 = qwen3.with_max_pixels(FIVE_BY_SEVEN["max_pixels"])
    settings = dict(num_frames=8, max_new_tokens=3)
    config = STTMConfig(method="sttm_budget", keep_ratio=0.6, root_level=0, merge_layer=k)
    chat = VideoChat(qwen3, config, **settings)
    chat.load_video(tmp_path / "clip.mp4")
    chat.prepare()
    assert chat.prefix.cached.layer_input.deepstack is not None
    new = STTMConfig(method="sttm_budget", keep_ratio=0.3, root_level=0, merge_layer=k)
    chat.set_config(new)
    fresh = VideoChat(qwen3, new, **settings)
    fresh.set_clip(chat.clip)
    fresh.prepare()
    assert torch.equal(chat.merge_result.boxes, fresh.merge_result.boxes)
    for mine, theirs in zip(chat.prefix.cached.cache.layers, fresh.prefix.cached.cache.layers):
        torch.testing.assert_close(mine.keys, theirs.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.values, theirs.values, atol=1e-5, rtol=1e-5)
    again, reply = fresh.ask("What is shown?"), chat.ask("What is shown?")
    assert reply.cache_reused and reply.text == again.text
    torch.testing.assert_close(chat.last_first_logits, fresh.last_first_logits,
                               atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_the_moe_variant_passes_the_invariants(tmp_path):
    loaded = load_model(str(build_random_checkpoint("tiny-qwen3-vl-moe", tmp_path / "moe")),
                        device="cpu")
    model = loaded.model
    assert type(model).__name__ == "Qwen3VLMoeForConditionalGeneration"
    assert isinstance(loaded.adapter, Qwen3VLAdapter)
    inputs = video_prompt(loaded, random_frames(T=8, H=160, W=224), "Which way?")
    logits = model(**inputs).logits
    tokens = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    patch(model, STTMConfig.all_tokens(merge_layer=1))  # merging off: exactly the model
    assert torch.equal(model(**inputs).logits, logits)
    assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), tokens)
    patch(model, STTMConfig(method="sttm_budget", keep_ratio=0.4, root_level=0, merge_layer=1))
    full = model(**inputs).logits[0, -1]
    assert model.sttm.last_merge.keep_ratio < 0.6
    # the question on the cached prefix == the whole prompt in one prefill
    length = len(inputs["input_ids"][0]) - len(loaded.tokenizer.encode(
        "Which way?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False))
    prefix = {key: (v[:, :length] if key in ("input_ids", "attention_mask", "mm_token_type_ids")
                    else v) for key, v in inputs.items()}
    cache = DynamicCache(config=model.config)
    model(**prefix, past_key_values=cache, use_cache=True)
    question = inputs["input_ids"][:, length:]
    positions = loaded.adapter.text_positions(model.sttm.prefill.next_position, question.shape[1])
    got = model(input_ids=question, past_key_values=cache, position_ids=positions).logits[0, -1]
    torch.testing.assert_close(got, full, atol=2e-5, rtol=1e-5)
    unpatch(model)
    assert torch.equal(model(**inputs).logits, logits)
