"""The paper's baselines (ToMe per frame / snippet / video, DyCoke, FrameFusion), the Table 5
root-grid pooling and the Table 6 joint octree (its own cases: tests/test_octree.py): budgets,
bookkeeping, one hand-computed case each, and inside the models."""
import pytest
import torch

from sttm_core import STTMConfig, reduce_tokens
from sttm_core.dycoke import compared_frame, dycoke
from sttm_core.framefusion import frame_fusion
from sttm_core.merge import VideoTokenMerger
from sttm_core.methods import METHODS
from sttm_core.tome import tome
from support.invariants import check_bookkeeping
from support.videos import smooth_features

PAPER = ["tome_frame", "tome_snippet", "tome_video", "dycoke", "framefusion", "octree"]
QUERY_AGNOSTIC = [m for m in PAPER if m != "framefusion"]
E0, E1, BOTH = [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]


def frames(*rows) -> torch.Tensor:
    """[T, 1, W, 2] from T rows of W 2-vectors."""
    return torch.tensor(rows)[:, None]


def tokens_of(result) -> list[list[tuple]]:
    """Each token's patches as (t, x) on a 1-row grid, tokens in order."""
    return [[(t, x) for t, _, x in (result.token_map == n).nonzero().tolist()]
            for n in range(result.num_tokens)]


@pytest.mark.core
@pytest.mark.parametrize("method", PAPER)
@pytest.mark.parametrize("budget", [0.5, 0.3, 0.15])
def test_each_baseline_keeps_its_budget_and_its_books(method, budget):
    x = smooth_features(8, 14, 14, 16, seed=3, noise=0.9, drift=0.6)
    attention = torch.rand(8, 14, 14, generator=torch.Generator().manual_seed(0))
    r = reduce_tokens(x, STTMConfig(method=method, keep_ratio=budget), attention)
    assert r.method == method
    if method == "dycoke" and budget < 0.25:  # each group's first frame stays whole
        assert r.keep_ratio == 0.25
    else:
        assert abs(r.keep_ratio - budget) <= 0.01
    if method == "framefusion":  # pruned: dropped patches map to -1, the rest add up
        kept = r.token_map >= 0
        assert int(r.num_patches.sum()) == int(kept.sum())
        for n in range(r.num_tokens):
            torch.testing.assert_close(r.features[n], x[r.token_map == n].mean(0))
    else:
        check_bookkeeping(x, r, contiguous=method == "tome_frame")
        for n in range(0, r.num_tokens, 7):  # each token is the plain mean of its patches
            torch.testing.assert_close(r.features[n], x[r.token_map == n].mean(0))
    if method == "tome_frame":  # nothing crosses a frame
        assert (r.frame_span[:, 0] == r.frame_span[:, 1]).all()


@pytest.mark.core
@pytest.mark.parametrize("method", PAPER)
def test_every_frame_keeps_a_token_when_the_family_needs_one(method):
    x = smooth_features(8, 6, 6, 8, seed=2, noise=0.01, drift=0.01)  # almost static: merges away
    attention = torch.rand(8, 6, 6, generator=torch.Generator().manual_seed(1))
    r = reduce_tokens(x, STTMConfig(method=method, keep_ratio=0.1), attention,
                      keep_every_frame=True)
    assert set(r.boxes[:, 0].tolist()) == set(range(8))


@pytest.mark.core
def test_tome_by_hand():
    # one frame of 4 patches: A = {0, 2}, B = {1, 3}; 0 matches 1 (cos .995), 2 matches 3 (.98)
    x = frames([E0, [1.0, 0.1], E1, [0.2, 1.0]])
    r = tome(x, 0.75, 1, "tome_frame")  # one merge: the most similar edge, 0 into 1
    assert tokens_of(r) == [[(0, 0), (0, 1)], [(0, 2)], [(0, 3)]]
    torch.testing.assert_close(r.features[0], torch.tensor([1.0, 0.05]))
    assert r.boxes[:, 2].tolist() == [0, 2, 3]  # each token at its first patch
    r = tome(x, 0.25, 1, "tome_frame")  # round 1 merges both edges, round 2 the two tokens
    assert tokens_of(r) == [[(0, 0), (0, 1), (0, 2), (0, 3)]]
    torch.testing.assert_close(r.features[0], x.reshape(4, 2).mean(0))
    # per video, the same two frames side by side: patches pair across frames too
    video = torch.cat([x, x])
    assert tome(video, 0.5, 1, "tome_frame").num_tokens == tome(video, 0.5, None, "tome_video").num_tokens == 4
    # frame 1's A patches match frame 0's B patches (ties go to the first B)
    assert tokens_of(tome(video, 0.5, None, "tome_video")) == [
        [(0, 0), (0, 1), (1, 0)], [(0, 2), (0, 3), (1, 2)], [(1, 1)], [(1, 3)]]


@pytest.mark.core
def test_dycoke_by_hand():
    assert compared_frame(9).tolist() == [0, 0, 0, 2, 4, 4, 4, 6, 8]  # pairs, then quadruples
    x = frames([E0, E1],        # frame 0: kept whole
               [E0, BOTH],      # frame 1 vs 0: (1,0) same -> joins (0,0); (1,1) kept
               [BOTH, E1],      # frame 2 vs 0: (2,1) same -> joins (0,1); (2,0) kept
               [BOTH, E0])      # frame 3 vs 2: (3,0) same -> joins (2,0); (3,1) kept
    r = dycoke(x, 5 / 8)        # 2 first-frame patches + 1 per later frame
    assert tokens_of(r) == [[(0, 0), (1, 0)], [(0, 1), (2, 1)], [(1, 1)], [(2, 0), (3, 0)],
                            [(3, 1)]]
    torch.testing.assert_close(r.features, torch.tensor([E0, E1, BOTH, BOTH, E0]))
    # a chain: frame 3's patch follows frame 2's into frame 0's token
    r = dycoke(frames([E0], [E1], [E0], [E0]), 0.5)
    assert tokens_of(r) == [[(0, 0), (2, 0), (3, 0)], [(1, 0)]]


@pytest.mark.core
def test_framefusion_by_hand():
    x = frames([E0, E1], [E0, BOTH], [E0, [0.2, 1.0]])
    # similar to the previous frame: (1,0), (2,0) 1.0, (2,1) .83, (1,1) .71; 3 tokens leave
    r = frame_fusion(x, torch.zeros(3, 1, 2), 0.5)
    assert tokens_of(r) == [[(0, 0), (1, 0), (2, 0)], [(0, 1)], [(1, 1), (2, 1)]]
    # a high floor merges only column 0; the attention then drops the two least attended
    attention = torch.tensor([[0.3, 0.9], [0.3, 0.1], [0.3, 0.5]])[:, None]
    r = frame_fusion(x, attention, 2 / 6, similarity_floor=0.9)
    assert tokens_of(r) == [[(0, 1)], [(2, 1)]]
    assert r.token_map.flatten().tolist() == [-1, 0, -1, -1, -1, 1]
    with pytest.raises(ValueError, match="FrameFusion needs the attention"):
        reduce_tokens(x, STTMConfig(method="framefusion", keep_ratio=0.5))


@pytest.mark.core
def test_root_pool_is_the_root_grid():
    x = smooth_features(3, 14, 14, 4, seed=1)
    for level, (h, w) in enumerate([(2, 2), (4, 4), (7, 7)]):
        r = reduce_tokens(x, STTMConfig(method="root_pool", root_level=level))
        check_bookkeeping(x, r)
        assert r.num_tokens == 3 * h * w  # the pyramid's pooled nodes of that level
        torch.testing.assert_close(r.features, VideoTokenMerger(x).pyramid.levels[level].reshape(-1, 4))
    with pytest.raises(ValueError, match="takes no keep_ratio"):
        STTMConfig(method="root_pool", keep_ratio=0.3)


@pytest.mark.core
def test_the_registry_reaches_the_app_sweep_and_plugin():
    from sttm_core.lmms_plugin.options import reduction_config
    from sttm_core.sweep.cli import CHOOSABLE
    from sttm_viz.handlers import METHOD_MENU, SERVER_METHODS

    for name in PAPER:
        assert name in METHOD_MENU.values() and name in SERVER_METHODS and name in CHOOSABLE
        assert reduction_config({"method": name, "keep_ratio": 0.3}).method == name
    config = reduction_config({"method": "dycoke", "keep_ratio": 0.3, "position_rule": "mean",
                               "temporal_mode": "best_match"})
    assert (config.position_rule, config.temporal_mode) == ("mean", "best_match")
    with pytest.raises(ValueError, match="position_rule='first' is not one of"):
        reduction_config({"position_rule": "first"})
    assert {"uniform", "fastv"} <= set(SERVER_METHODS)
    assert not {"sttm", "spatial_only", "temporal_only"} & set(SERVER_METHODS)
    assert METHODS["framefusion"].query_aware and METHODS["framefusion"].keeps_positions
    assert not any(METHODS[m].query_aware or METHODS[m].keeps_positions for m in QUERY_AGNOSTIC)


# --- inside the models ----------------------------------------------------------------------

@pytest.mark.model
@torch.no_grad()
def test_merging_nothing_is_the_unpatched_model(tiny):
    from support.model_inputs import prompt_inputs
    from support.videos import random_frames
    from sttm_core.models import patch, unpatch

    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    logits = model(**inputs).logits
    rules = [None, "mean", "survivor"] + (["reassign"] if tiny.adapter.position_mode == "reindex" else [])
    for method in PAPER:
        for rule in rules if method == "tome_video" else [None]:
            patch(model, STTMConfig(method=method, keep_ratio=1.0, position_rule=rule))
            merged = model(**inputs).logits
            assert model.sttm.last_merge.num_tokens == model.sttm.last_merge.token_map.numel()
            torch.testing.assert_close(merged, logits, atol=2e-5, rtol=1e-5,
                                       msg=f"{method} {rule}")
    unpatch(model)


@pytest.mark.model
@torch.no_grad()
def test_a_cached_prefix_is_one_prefill_for_the_query_agnostic_ones(tiny):
    from transformers import DynamicCache

    from support.model_inputs import prompt_inputs
    from support.videos import random_frames
    from sttm_core.models import patch

    model = tiny.model
    inputs, prefix_length = prompt_inputs(tiny, random_frames(), ["How many ducks are there?"])
    for method in QUERY_AGNOSTIC:
        patch(model, STTMConfig(method=method, keep_ratio=0.4))
        full = model(**inputs).logits[0, -1]
        assert model.sttm.last_merge.keep_ratio < 0.5
        prefix = {k: (v[:, :prefix_length] if k in ("input_ids", "attention_mask", "mm_token_type_ids")
                      else v) for k, v in inputs.items()}
        cache = DynamicCache(config=model.config)
        model(**prefix, past_key_values=cache, use_cache=True)
        question = inputs["input_ids"][:, prefix_length:]
        positions = tiny.adapter.text_positions(model.sttm.prefill.next_position, question.shape[1])
        logits = model(input_ids=question, past_key_values=cache, position_ids=positions,
                       use_cache=True).logits[0, -1]
        torch.testing.assert_close(logits, full, atol=2e-5, rtol=1e-5, msg=method)


@pytest.mark.model
def test_framefusion_in_a_chat_reprefills_and_matches_generate(tiny, tmp_path):
    from test_chat import SETTINGS, greedy_reference
    from support.videos import random_frames
    from sttm_core.chat import VideoChat
    from sttm_core.video import write_video

    path = tmp_path / "clip.mp4"
    write_video(path, random_frames(T=12, H=84, W=140), fps=6)
    chat = VideoChat(tiny, STTMConfig(keep_ratio=0.3, method="framefusion", merge_layer=1),
                     **SETTINGS)
    chat.load_video(path)
    first, second = chat.ask("What is shown?"), chat.ask("What is shown?")
    assert not first.cache_reused and not second.cache_reused
    assert chat.merge_result.keep_ratio == pytest.approx(0.3, abs=0.02)
    assert first.text == greedy_reference(chat, "What is shown?")


@pytest.mark.model
@torch.no_grad()
def test_position_rules_where_the_rope_allows_them(tiny):
    from support.model_inputs import prompt_inputs
    from support.videos import random_frames
    from sttm_core.models import patch

    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    config = dict(method="sttm_budget", keep_ratio=0.4)
    patch(model, STTMConfig(**config))
    default = model(**inputs).logits
    own = "reassign" if tiny.adapter.position_mode == "reindex" else "survivor"
    patch(model, STTMConfig(**config, position_rule=own))
    torch.testing.assert_close(model(**inputs).logits, default, atol=0, rtol=0)
    others = {}
    for rule in ("mean", "survivor"):
        if rule != own:
            patch(model, STTMConfig(**config, position_rule=rule))
            others[rule] = model(**inputs).logits
            assert torch.isfinite(others[rule]).all()
            assert not torch.allclose(others[rule][0, -1], default[0, -1])
    if own == "survivor":
        with pytest.raises(ValueError, match="only 1D RoPE models allow"):
            patch(model, STTMConfig(**config, position_rule="reassign"))
