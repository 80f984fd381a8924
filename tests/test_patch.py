"""STTM inside real transformers models (tiny random weights): the correctness invariants."""
import pytest
import torch
from transformers import DynamicCache

from support.videos import random_frames
from support.model_inputs import prompt_inputs
from sttm_core import STTMConfig, merge_video_tokens
from sttm_core.models import UnsupportedModelError, patch, unpatch
from sttm_core.models.patching import Plan, planned

pytestmark = pytest.mark.model

MERGING = STTMConfig(method="sttm_budget", keep_ratio=0.4, merge_layer=2)  # a budget makes random weights merge too


@torch.no_grad()
def test_disabled_merge_and_unpatch_are_exact(tiny):
    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    logits = model(**inputs).logits
    tokens = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    patch(model, STTMConfig.all_tokens(merge_layer=1))
    assert torch.equal(model(**inputs).logits, logits)
    assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False), tokens)
    patch(model, MERGING)
    merged_logits = model(**inputs).logits
    assert merged_logits.shape[1] < logits.shape[1]  # the sequence really got shorter
    unpatch(model)
    assert not hasattr(model, "sttm")
    assert torch.equal(model(**inputs).logits, logits)
    assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False), tokens)


@torch.no_grad()
def test_merged_hidden_states_are_merge_video_tokens_of_layer_k(tiny):
    model, k = tiny.model, MERGING.merge_layer
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, MERGING)
    seen = {}
    layer = tiny.adapter.decoder_layers[k]
    handle = layer.register_forward_pre_hook(  # runs after STTM's hook: sees the merged input
        lambda m, args, kwargs: seen.update(merged=args[0]), with_kwargs=True)
    with planned(model, Plan(MERGING, keep_layer_input=True)) as prefilled:
        model(**inputs)
    handle.remove()
    assert prefilled.layer_input is model.sttm.layer_input  # the planner's, and the read-out
    hidden = prefilled.layer_input.hidden[0]  # [L, D] what layer k received before merging
    (span,) = model.sttm.prefill.spans
    T, H, W = span.grid
    # the grid tokens: every video token in order (Qwen3-VL: T runs between timestamps; LLaVA:
    # its last video token is the newline, not a grid token)
    grid = (inputs["input_ids"][0] == tiny.model.config.video_token_id).nonzero().flatten()
    grid = grid[:T * H * W]
    assert torch.equal(span.positions, grid)
    video = hidden[grid].view(T, H, W, -1)
    expected = merge_video_tokens(video, **MERGING_THRESHOLDS(model),
                                  keep_every_frame=tiny.adapter.keeps_every_frame)
    result = model.sttm.last_merge
    assert torch.equal(result.boxes, expected.boxes)
    # the merged sequence: each merged token at its representative's place (its first patch),
    # every token outside the grid (text, timestamps, newline) untouched
    representatives = grid[(expected.boxes[:, 0] * H + expected.boxes[:, 1]) * W + expected.boxes[:, 2]]
    kept = torch.ones(len(hidden), dtype=torch.bool)
    kept[grid] = False
    kept[representatives] = True
    merged = seen["merged"][0]
    assert merged.shape[0] == int(kept.sum()) == len(hidden) - T * H * W + expected.num_tokens
    token_slots = kept.cumsum(0)[representatives] - 1
    others = torch.ones(len(merged), dtype=torch.bool)
    others[token_slots] = False
    is_rep = torch.zeros(len(hidden), dtype=torch.bool)
    is_rep[representatives] = True
    assert torch.equal(merged[others], hidden[kept & ~is_rep])
    torch.testing.assert_close(merged[token_slots], expected.features)


def MERGING_THRESHOLDS(model):
    """The thresholds the budget search chose for the last prefill."""
    r = model.sttm.last_merge
    return dict(spatial_threshold=r.spatial_threshold, temporal_threshold=r.temporal_threshold,
                root_level=r.root_level)


@torch.no_grad()
def test_question_on_cached_prefix_equals_one_prefill(tiny):
    model = tiny.model
    inputs, prefix_length = prompt_inputs(tiny, random_frames(), ["How many ducks are there?"])
    patch(model, MERGING)
    full = model(**inputs).logits[0, -1]
    prefix = {k: (v[:, :prefix_length] if k in ("input_ids", "attention_mask", "mm_token_type_ids")
                  else v) for k, v in inputs.items()}
    cache = DynamicCache(config=model.config)
    model(**prefix, past_key_values=cache, use_cache=True)
    question = inputs["input_ids"][:, prefix_length:]
    start = model.sttm.prefill.next_position
    positions = tiny.adapter.text_positions(start, question.shape[1])
    logits = model(input_ids=question, past_key_values=cache, position_ids=positions,
                   use_cache=True).logits[0, -1]
    torch.testing.assert_close(logits, full, atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_cached_decoding_equals_recomputing(tiny):
    """Decode steps after a merged prefill (mask, positions, per-layer cache lengths) agree
    with re-running the whole sequence each step."""
    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, MERGING)
    cached = model.generate(**inputs, max_new_tokens=6, do_sample=False, output_scores=True,
                            return_dict_in_generate=True)
    fresh = model.generate(**inputs, max_new_tokens=6, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, use_cache=False)
    assert torch.equal(cached.sequences, fresh.sequences)
    for a, b in zip(cached.scores, fresh.scores):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_left_padded_batch_rows_equal_single_rows(tiny, tiny_checkpoints, attention):
    from sttm_core.models.checkpoints import load_model

    loaded = load_model(str(tiny.name), device="cpu", attn_implementation=attention)
    model = loaded.model
    questions = ["Is it day?", "What colour is the sky in the second half?"]
    batch, _ = prompt_inputs(loaded, random_frames(), questions)
    patch(model, STTMConfig(method="sttm_budget", keep_ratio=0.5, merge_layer=1))
    together = model.generate(**batch, max_new_tokens=5, do_sample=False, output_scores=True,
                              return_dict_in_generate=True)
    for row, question in enumerate(questions):
        single, _ = prompt_inputs(loaded, random_frames(), [question])
        alone = model.generate(**single, max_new_tokens=5, do_sample=False, output_scores=True,
                               return_dict_in_generate=True)
        width = alone.sequences.shape[1]
        assert torch.equal(together.sequences[row, -width:], alone.sequences[0])
        for a, b in zip(together.scores, alone.scores):
            torch.testing.assert_close(a[row], b[0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_merge_at_any_layer_and_bad_configs(tiny):
    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    for k in range(tiny.adapter.num_layers):
        patch(model, STTMConfig(method="sttm_budget", keep_ratio=0.5, merge_layer=k))
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert out.shape[1] == inputs["input_ids"].shape[1] + 3
        assert model.sttm.last_merge.keep_ratio == pytest.approx(0.5, abs=0.15)
    with pytest.raises(ValueError, match="merge_layer=4 is out of range: this model has 4"):
        patch(model, STTMConfig(merge_layer=4))


def test_unsupported_model_is_named():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text_only = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             num_key_value_heads=1, vocab_size=100))
    with pytest.raises(UnsupportedModelError, match="does not support Qwen2ForCausalLM; "
                                                    "supported model classes: LlavaOnevision"):
        patch(text_only, STTMConfig())


def test_loading_failures_say_why_and_what_to_do(tmp_path):
    import time

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sttm_core import ModelLoadError, load_model

    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="could not load the model 'sttm-tests/no-such-model'"):
        load_model("sttm-tests/no-such-model")  # not local, not cached: no download attempted
    assert time.perf_counter() - start < 30
    with pytest.raises(ModelLoadError, match="local checkpoint directory"):
        load_model(str(tmp_path / "missing"))
    Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1,
                                 vocab_size=100)).save_pretrained(tmp_path / "text_only")
    with pytest.raises(UnsupportedModelError, match="does not support Qwen2ForCausalLM"):
        load_model(str(tmp_path / "text_only"))


@torch.no_grad()
def test_text_only_call_after_a_video_prefill_merges_nothing(tiny):
    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    text = torch.randint(0, 256, (1, 120))
    embeds, positions = model.get_input_embeddings()(text), torch.arange(120)[None]
    expected = model(inputs_embeds=embeds, position_ids=positions).logits  # unpatched
    patch(model, MERGING)
    model(**inputs)  # a video prefill first: its spans must not leak into the next call
    got = model(inputs_embeds=embeds, position_ids=positions).logits
    assert got.shape[1] == 120
    assert torch.equal(got, expected)
    video_embeds = model.get_input_embeddings()(inputs["input_ids"])
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "mm_token_type_ids")}
    with pytest.raises(ValueError, match="pass input_ids with the video"):
        model(inputs_embeds=video_embeds, **rest)


@torch.no_grad()
@pytest.mark.parametrize("decode_positions", ["merged", "official"])
def test_decode_positions_after_a_merged_prefill(tiny, decode_positions):
    """1D RoPE: layers >= k decode at L' + i by default (right after the merged prefix) and at
    L + i with decode_positions="official" (the official code's numbering, a gap of L - L').
    M-RoPE: max(prompt ids) + 1 + i either way (the rope deltas)."""
    from dataclasses import replace

    from support.positions import next_position, reference_position_ids

    model, k = tiny.model, MERGING.merge_layer
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, replace(MERGING, decode_positions=decode_positions))
    seen = []
    handle = tiny.adapter.decoder_layers[k].register_forward_pre_hook(  # after STTM's hook
        lambda m, args, kwargs: seen.append(kwargs["position_embeddings"][0]), with_kwargs=True)
    model.generate(**inputs, max_new_tokens=4, do_sample=False)
    handle.remove()
    L = inputs["input_ids"].shape[1]
    (span,) = model.sttm.prefill.spans
    T, H, W = span.grid
    merged_length = L - T * H * W + model.sttm.last_merge.num_tokens
    reference = reference_position_ids(tiny, inputs)
    if reference is not None:  # M-RoPE
        first = torch.tensor([next_position(reference)] * 3).view(3, 1, 1)
    else:
        first = torch.tensor([[merged_length if decode_positions == "merged" else L]])
    rotary = tiny.adapter.language_model.rotary_emb
    for step, cos in enumerate(seen[1:]):  # seen[0] is the prefill
        expected, _ = rotary(cos, first + step)
        torch.testing.assert_close(cos, expected, rtol=0, atol=0)


@torch.no_grad()
def test_merge_is_timed_only_when_asked(tiny):
    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, MERGING)
    model(**inputs)
    assert model.sttm.merge_seconds is None  # the default path times (and waits for) nothing
    with planned(model, Plan(MERGING, time_merge=True)) as prefilled:
        model(**inputs)
    assert 0 < prefilled.merge_seconds < 60 and model.sttm.merge_seconds == prefilled.merge_seconds
    with planned(model, Plan(STTMConfig.all_tokens(2), time_merge=True)):
        model(**inputs)  # nothing merged: no time left over from the last merge
    assert model.sttm.merge_seconds is None
    model(**inputs)
    assert model.sttm.merge_seconds is None  # a plan lasts its block: bare calls time nothing


@torch.no_grad()
def test_what_layer_k_builds_lies_on_the_device_of_its_hidden_states(tiny):
    """With device_map="auto" layer k's input can sit on another GPU than the embeddings; here
    (one device) this checks the rule is stated everywhere; tests/test_cuda.py splits a model
    over two GPUs where there are two."""
    model, k = tiny.model, MERGING.merge_layer
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, MERGING)
    devices = []

    def record(module, args, kwargs):
        tensors = [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        tensors += [t for v in kwargs.values() if isinstance(v, tuple) for t in v
                    if isinstance(t, torch.Tensor)]
        devices.append({t.device for t in tensors} | {args[0].device})
    handle = tiny.adapter.decoder_layers[k].register_forward_pre_hook(record, with_kwargs=True)
    model.generate(**inputs, max_new_tokens=3, do_sample=False)
    handle.remove()
    assert len(devices) == 3 and all(len(d) == 1 for d in devices)


@torch.no_grad()
def test_an_encoded_video_keeps_only_what_the_language_model_reads(tiny):
    """A cached video held the vision tower's every hidden layer (GBs for a long video)."""
    video, _ = tiny.adapter.video_inputs(random_frames(), tiny.settings, 4.0)
    encoded = tiny.adapter.encode_video(video)["mm_encoder_outputs"]["video"]
    assert encoded.pooler_output is not None
    assert not set(encoded.keys()) & {"last_hidden_state", "hidden_states", "attentions"}
    assert set(encoded.keys()) <= {"pooler_output", "deepstack_features"}
