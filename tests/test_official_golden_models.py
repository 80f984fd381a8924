"""Inside tiny LLaVA-OneVision and Qwen2-VL models, STTM merges layer k as the official code does.

The official repository (github HYUNJS/STTM) replaces whole transformers-4.45 forward functions,
so its models do not run under transformers 5.23. What its patched forward does at layer k is
small: cut the video's T*H*W hidden states out of the sequence, lay them out [T, C, H, W], call
`quadtree_build_video`, put the tokens back between the text, and give them positions
(LLaVA: 0..L'-1; Qwen2-VL: each token keeps its first patch's (t, h, w) ids).
tests/support/make_official_golden.py did that with the official merge on these models' layer-k hidden
states (tests/data/official_golden_models.pt.xz); here the patched models must give the same.
"""
from functools import cache

import pytest
import torch

from sttm_core import STTMConfig
from support.golden import MODEL_CASES, MODELS, load, prefill

pytestmark = pytest.mark.model

@cache
def golden() -> dict:
    return load(MODELS)


@torch.no_grad()
@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_k_merge_matches_official(case):
    name, merge_layer, tau_s, tau_t, root_level = case
    entry = golden()["models"][f"{name}@{merge_layer}"]
    official = entry["cases"][case]
    model, hidden, seen = prefill(name, STTMConfig(tau_s, tau_t, root_level, merge_layer))
    start, (T, H, W) = entry["start"], entry["grid"]
    video = slice(start, start + T * H * W)
    # the official merge ran on these hidden states: the model must still produce them
    torch.testing.assert_close(hidden[video], entry["hidden"])
    result = model.sttm.last_merge
    assert torch.equal(result.boxes, official["boxes"].long())
    assert torch.equal(result.num_patches, official["num_patches"].long())
    torch.testing.assert_close(result.features, official["features"])
    # the sequence layer k sees: text, the official tokens, text; positions by its rule
    expected = torch.cat([hidden[:start], official["features"], hidden[video.stop:]])
    torch.testing.assert_close(seen["merged"], expected)
    adapter = model.sttm.adapter
    if adapter.position_mode == "keep":  # Qwen2-VL: each token keeps its first patch's ids
        ids = model.sttm.layer_input.positions  # [3, 1, L] (t, h, w)
        t, y, x = official["boxes"][:, :3].long().T
        first = start + (t * H + y) * W + x
        ids = torch.cat([ids[..., :start], ids[..., first], ids[..., video.stop:]], dim=-1)
    else:  # LLaVA: the merged sequence renumbered 0..L'-1
        ids = torch.arange(len(expected))[None]
    for got, want in zip(seen["rope"], adapter.language_model.rotary_emb(expected[None], ids)):
        torch.testing.assert_close(got, want)
