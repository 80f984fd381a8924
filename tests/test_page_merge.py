"""The page's merge (sttm_viz/web/merge.js's τS filter and unionfind.js, run in Chromium) equals
merge_video_tokens: the same spatial boxes, token of each box, token boxes, patch counts and
token map, for many settings, odd and non-square grids, one frame, either half off, thresholds
right at a similarity."""
import itertools
import random
from pathlib import Path

import pytest
import torch

from sttm_core import VideoTokenMerger
from sttm_core.evidence import merge_evidence
from sttm_viz.payload import BUDGETS, budget_table, evidence_json
from support.page import CHROMIUM, chromium, merge_all, script_page
from support.videos import smooth_features

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]

GRIDS = [(3, 14, 14), (2, 7, 9), (3, 5, 3), (1, 6, 6), (2, 1, 1), (4, 2, 5), (5, 11, 6),
         (2, 3, 16)]
TAUS_S = [-1.0, 0.3, 0.8, 0.95, 0.99, 1.0, 1.5, None]
TAUS_T = [None, -1.0, 0.3, 0.6, 0.9, 0.99]


@pytest.fixture(scope="module")
def page():
    with chromium() as browser:
        yield script_page(browser, "unionfind.js", "merge.js")


def expected(merger, tau_s, tau_t, root):
    r = merger.merge(tau_s, tau_t, root)
    return {"spatial_boxes": r.spatial_boxes.flatten().tolist(),
            "spatial_to_token": r.spatial_to_token.tolist(), "boxes": r.boxes.flatten().tolist(),
            "num_patches": r.num_patches.tolist(), "token_map": r.token_map.flatten().tolist()}


def at_the_edge(ev, seed):
    """Thresholds equal to similarities in the evidence (as doubles and a hair above, which
    float32 rounds back down): where a comparison in the wrong precision would differ."""
    rng = random.Random(seed)
    sims = torch.cat([c.flatten() for c in ev.child_similarity] + [ev.pair_similarity.flatten()])
    picked = [float(sims[rng.randrange(len(sims))]) for _ in range(6)] if len(sims) else []
    return [v + d for v in picked for d in (0.0, 1e-9, -1e-9)]  # 18 values


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_page_merge_equals_merge_video_tokens(page, grid, dtype):
    x = smooth_features(*grid, C=12, seed=sum(grid), noise=0.4, dtype=dtype)
    merger = VideoTokenMerger(x)
    ev = merge_evidence(merger)
    edges = at_the_edge(ev, seed=len(grid))
    settings = list(itertools.product(TAUS_S + edges[:6], TAUS_T + edges[6:12],
                                      range(merger.num_levels)))
    got = merge_all(page, evidence_json(ev), settings)
    for setting, page_tokens in zip(settings, got):
        assert page_tokens == expected(merger, *setting), setting


def test_page_merge_on_a_long_video(page):
    """32 frames x 14x14 with strong temporal redundancy: long chains, many merged pairs."""
    x = smooth_features(32, 14, 14, C=16, seed=7, noise=0.1, drift=0.05)
    merger = VideoTokenMerger(x)
    ev = merge_evidence(merger)
    settings = [(s, t, r) for s in (0.7, 0.9, 0.97) for t in (0.5, 0.8, 0.95) for r in (0, 1, 3)]
    got = merge_all(page, evidence_json(ev), settings)
    for setting, page_tokens in zip(settings, got):
        assert page_tokens == expected(merger, *setting), setting


def test_budget_table_thresholds_give_the_budget_search_tokens(page):
    """Budget mode: the page merges with the thresholds sttm_core's search chose; its tokens
    are the search's own result."""
    from sttm_core import thresholds_for_budget

    x = smooth_features(6, 9, 9, C=8, seed=11, noise=0.3)
    merger = VideoTokenMerger(x)
    budgets = BUDGETS[::19]
    for root, temporal in [(1, True), (0, False)]:
        table = budget_table(merger, root, temporal, budgets)
        settings = [(s, t, root) for s, t in zip(table["tau_s"], table["tau_t"])]
        got = merge_all(page, evidence_json(merge_evidence(merger)), settings)
        for ratio, page_tokens in zip(budgets, got):
            want = thresholds_for_budget(merger, ratio, root_level=root, temporal=temporal).result
            assert page_tokens["token_map"] == want.token_map.flatten().tolist()
            assert len(page_tokens["num_patches"]) == want.num_tokens


def test_the_page_merges_what_a_bf16_model_merges(page, tmp_path):
    """With a model the page's evidence comes from layer k's input in the model's own dtype
    (bf16 here), so the page's tokens are the ones the model prefilled with."""
    from sttm_core import STTMConfig
    from sttm_core.examples import examples_dir
    from sttm_core.models.checkpoints import build_random_checkpoint, load_model
    from sttm_viz.session import Controls, Engine, Session

    path = build_random_checkpoint("tiny-llava-onevision-14x14", tmp_path / "ck")
    loaded = load_model(str(path), device="cpu", dtype=torch.bfloat16)
    session = Session(Engine(loaded))
    session.load(str(examples_dir() / "fast_motion.mp4"), 6, Controls())
    evidence = session.video.evidence
    assert evidence.grid == (6, 14, 14)
    configs = [STTMConfig(s, t, r) for s, t, r in
               [(0.9, 0.8, 1), (0.97, 0.95, 0), (0.7, 0.5, 2), (0.99, None, 1), (1.5, 0.9, 3)]]
    table = session.budget_table(1, True)
    k = table["budgets"].index(0.3)
    settings = [(c.spatial_threshold, c.temporal_threshold, c.root_level) for c in configs]
    settings.append((table["tau_s"][k], table["tau_t"][k], 1))
    configs.append(STTMConfig(method="sttm_budget", keep_ratio=0.3))
    got = merge_all(page, evidence_json(evidence), settings)
    chat = session.chat
    for config, page_tokens in zip(configs, got):
        chat.set_config(config)
        chat.prepare()
        model = chat.merge_result  # what the model merged its prefill with
        assert page_tokens["token_map"] == model.token_map.flatten().tolist(), config
        assert page_tokens["boxes"] == model.boxes.flatten().tolist(), config


def test_page_keeps_every_frame_as_the_engine_does(page):
    """Evidence of a merger with keep_every_frame (Qwen3-VL's rule): the page gives each frame
    left without a token its first one back, as the engine does."""
    changed = 0
    for grid, seed in [((6, 7, 9), 1), ((4, 5, 3), 2), ((5, 1, 2), 3)]:
        x = smooth_features(*grid, C=8, seed=seed, noise=0.05, drift=0.02)
        x = torch.cat([x[:1].repeat(2, 1, 1, 1), x])  # two identical frames first
        merger = VideoTokenMerger(x, keep_every_frame=True)
        ev = evidence_json(merge_evidence(merger))
        assert ev["keep_every_frame"] is True
        settings = [(s, t, r) for s in (0.5, 0.9, None) for t in (0.2, 0.7, 0.99)
                    for r in range(merger.num_levels)]
        got = merge_all(page, ev, settings)
        plain = VideoTokenMerger(x)
        for setting, page_tokens in zip(settings, got):
            assert page_tokens == expected(merger, *setting), setting
            changed += page_tokens != expected(plain, *setting)
    assert changed  # some settings would have lost a frame without the rule


def test_the_page_merges_what_a_qwen3_vl_model_merges(page, tiny_checkpoints):
    """A Qwen3-VL model keeps a token in every token frame: the app's evidence says so, and the
    page's tokens on a static video are the model's."""
    from sttm_core import STTMConfig
    from sttm_core.examples import examples_dir
    from sttm_core.models.checkpoints import load_model
    from sttm_viz.session import Controls, Engine, Session

    loaded = load_model(str(tiny_checkpoints["tiny-qwen3-vl"]), device="cpu",
                        max_pixels=15 * 32 * 32)
    session = Session(Engine(loaded))
    session.load(str(examples_dir() / "static.mp4"), 8, Controls())
    assert session.video.evidence.keep_every_frame
    configs = [STTMConfig(0.9, 0.3, 0, merge_layer=2), STTMConfig(None, 0.1, 0, merge_layer=2),
               STTMConfig(0.7, 0.9, 1, merge_layer=2)]
    settings = [(c.spatial_threshold, c.temporal_threshold, c.root_level) for c in configs]
    got = merge_all(page, evidence_json(session.video.evidence), settings)
    chat = session.chat
    for config, page_tokens in zip(configs, got):
        chat.set_config(config)
        chat.prepare()
        model = chat.merge_result
        assert set(model.boxes[:, 0].tolist()) == set(range(model.grid[0]))
        assert page_tokens["token_map"] == model.token_map.flatten().tolist(), config
        assert page_tokens["boxes"] == model.boxes.flatten().tolist(), config
