"""FastV as FastV does it (Chen et al. 2024): the video tokens are ranked by layer k-1's
attention map (the last prompt token's row, mean over heads); layers >= k see only the kept
ones, which keep their original position ids.

The reference is computed without STTM's code: an eager-attention model's own attention
weights (output_attentions) pick the tokens, and a plain run of the unpatched model whose
layers >= k cannot attend to the dropped tokens (their mask columns at -inf) gives the output:
with original positions that equals running layers >= k on the kept tokens alone."""
import pytest
import torch

from support.model_inputs import prompt_inputs
from support.positions import reference_position_ids, with_text_row
from support.videos import random_frames
from sttm_core import STTMConfig
from sttm_core.models import patch
from sttm_core.models.checkpoints import load_model

pytestmark = pytest.mark.model

K, KEEP = 2, 0.3
FASTV = STTMConfig(method="fastv", keep_ratio=KEEP, merge_layer=K)


def video_grid_positions(sdpa, inputs):
    """Indices of the video's T*H*W grid tokens (found by the patched model's adapter)."""
    patch(sdpa.model, STTMConfig.all_tokens(K))
    sdpa.model(**inputs)
    (span,) = sdpa.model.sttm.prefill.spans
    return span.positions  # one run, or Qwen3-VL's runs between timestamps


def mask_columns(layers, dropped):
    """Pre-hooks that make layers >= K blind to the `dropped` token positions."""
    def hook(module, args, kwargs):
        mask = kwargs["attention_mask"].clone()  # eager: additive [B, 1, q, L]
        mask[..., dropped] = torch.finfo(mask.dtype).min
        return args, {**kwargs, "attention_mask": mask}
    return [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers[K:]]


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_fastv_ranks_by_layer_k_minus_1_and_keeps_positions(tiny, tiny_checkpoints, dtype):
    path = str(tiny.name)
    eager = load_model(path, device="cpu", dtype=dtype, attn_implementation="eager")
    sdpa = load_model(path, device="cpu", dtype=dtype)  # the patched model runs with sdpa
    inputs, _ = prompt_inputs(sdpa, random_frames(T=12), ["Which colour moves left?"], fps=1.0)
    positions = reference_position_ids(sdpa, inputs)  # Qwen: the reference rule; LLaVA: None
    explicit = {} if positions is None else {
        "position_ids": with_text_row(positions, inputs["attention_mask"])}
    grid = video_grid_positions(sdpa, inputs)

    patch(sdpa.model, FASTV)
    got = sdpa.model.generate(**inputs, max_new_tokens=4, do_sample=False, output_scores=True,
                              return_dict_in_generate=True)
    result = sdpa.model.sttm.last_merge
    T, H, W = result.grid
    kept = grid[result.token_map.flatten() >= 0]
    dropped = grid[~torch.isin(grid, kept)]
    every_frame = sdpa.adapter.keeps_every_frame  # Qwen3-VL: each frame's best patch stays
    assert len(kept) == max(round(KEEP * len(grid)), T if every_frame else 1)

    # the kept tokens are a top-n of layer K-1's attention map (last row, mean over heads),
    # after each frame's most attended patch where every frame keeps a token; bf16 attention
    # weights tie often, so a tie may go either way
    out = eager.model(**inputs, **explicit, output_attentions=True)
    attention = out.attentions[K - 1][0, :, -1].float().mean(0)  # [L]
    tie = 1e-6 if dtype == torch.float32 else 2 * torch.finfo(dtype).eps * attention[grid].max()
    scores = attention[grid].view(T, H * W)
    frame_of = torch.isin(grid, kept).nonzero().flatten() // (H * W)  # frame of each kept token
    # a kept token is its frame's best (where every frame keeps one) or outranks every dropped
    its_frames_best = attention[kept] >= scores.amax(1)[frame_of] - tie
    by_rank = attention[kept] >= attention[dropped].max() - tie
    assert (by_rank | (its_frames_best & every_frame)).all()
    assert not every_frame or set(frame_of.tolist()) == set(range(T))
    if dtype == torch.float32:
        ranked = attention[grid]
        if every_frame:
            ranked = ranked.index_fill(0, scores.argmax(1) + torch.arange(T) * H * W, torch.inf)
        assert torch.equal(kept, grid[ranked.topk(len(kept)).indices.sort().values])

    # layers >= K on the kept tokens at their original positions == layers >= K blind to the rest
    handles = mask_columns(eager.adapter.decoder_layers, dropped)
    expected = eager.model.generate(**inputs, **explicit, max_new_tokens=4, do_sample=False,
                                    output_scores=True, return_dict_in_generate=True)
    for handle in handles:
        handle.remove()
    assert torch.equal(got.sequences, expected.sequences)
    tolerance = 2e-4 if dtype == torch.float32 else 0.1
    for a, b in zip(got.scores, expected.scores):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)


def test_fastv_needs_a_layer_before_the_merge_layer():
    with pytest.raises(ValueError, match="merge_layer must be >= 1"):
        STTMConfig(method="fastv", keep_ratio=0.5, merge_layer=0)
