"""Inside tiny LLaVA-OneVision and Qwen2-VL models, STTM merges layer k as the official code does.

The official repository (github HYUNJS/STTM) replaces whole transformers-4.45 forward functions,
so its models do not run under transformers 5.23. What its patched forward does at layer k is
small: cut the video's T*H*W hidden states out of the sequence, lay them out [T, C, H, W], call
`quadtree_build_video`, put the tokens back between the text, and give them positions
(LLaVA: 0..L'-1; Qwen2-VL: each token keeps its first patch's (t, h, w) ids).
benchmarks/official_golden.py did that with the official merge on these models' layer-k hidden
states (tests/data/official_golden_models.pt.xz); here the patched models must give the same.
"""
import io
import lzma
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from sttm_core import STTMConfig, VideoChat
from sttm_core.models.checkpoints import random_model
from sttm_core.video import VideoClip

pytestmark = pytest.mark.model

GOLDEN = Path(__file__).parent / "data" / "official_golden_models.pt.xz"
QWEN_MIN_PIXELS = 196 * 308  # lifts the 84 x 140 frames to a 7 x 12 token grid


def golden_frames(T: int = 8, H: int = 84, W: int = 140, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8: drifting colour blocks (6 x 10) plus pixel noise, integers only."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (6, 10, 3), generator=g)
    frames = []
    for _ in range(T):
        blocks = (blocks + torch.randint(-12, 13, blocks.shape, generator=g)).clamp(0, 255)
        frame = blocks.repeat_interleave(H // 6, 0).repeat_interleave(W // 10, 1)
        frames.append((frame + torch.randint(-6, 7, frame.shape, generator=g)).clamp(0, 255))
    return torch.stack(frames).to(torch.uint8).numpy()


def prefill(name: str, config: STTMConfig) -> tuple:
    """Prefill a tiny random model's video prompt with STTM through VideoChat.

    Returns (model, hidden [L, D] entering layer k before merging, what layer k then got:
    (merged [L', D], its (cos, sin) position embeddings))."""
    loaded = random_model(name, device="cpu", dtype=torch.float32)
    chat = VideoChat(loaded, config)
    chat.settings["min_pixels"] = QWEN_MIN_PIXELS
    frames = golden_frames()
    chat.set_clip(VideoClip(frames, np.arange(len(frames)) / 4.0, 4.0, len(frames) / 4.0,
                            len(frames), "golden"))
    seen = {}
    layer = loaded.adapter.decoder_layers[config.merge_layer]
    handle = layer.register_forward_pre_hook(  # after STTM's own hook: sees the merged input
        lambda module, args, kwargs: seen.update(merged=args[0][0],
                                                 rope=kwargs["position_embeddings"]),
        with_kwargs=True)
    chat.prepare()
    handle.remove()
    return loaded.model, loaded.model.sttm.layer_input.hidden[0], seen


# (model, merge layer k, tauS, tauT, root level): settings that merge these random weights
# partly, spatially and in time; 1.01 / None switch spatial / temporal merging off.
CASES = [("tiny-llava-onevision", 2, 0.92, 0.995, 0), ("tiny-llava-onevision", 2, 0.93, None, 0),
         ("tiny-llava-onevision", 2, 1.01, 0.997, 1), ("tiny-llava-onevision", 0, 0.4, 0.993, 0),
         ("tiny-qwen2-vl", 2, 0.8, 0.6, 1), ("tiny-qwen2-vl", 2, 0.6, 0.98, 0),
         ("tiny-qwen2-vl", 2, 0.5, None, 1), ("tiny-qwen2-vl", 0, 0.4, 0.99, 0),
         ("tiny-qwen2-vl", 0, 1.01, 0.99, 2)]


@cache
def golden() -> dict:
    return torch.load(io.BytesIO(lzma.decompress(GOLDEN.read_bytes())), weights_only=True)


@torch.no_grad()
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
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
