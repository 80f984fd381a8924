"""What the official-parity tests and their data generator (make_official_golden.py) share: how
the inputs are rebuilt, bit-exactly, and where the golden files are."""
import hashlib
import io
import lzma
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sttm_core import STTMConfig, VideoChat
from sttm_core.models.checkpoints import random_model
from sttm_core.video import VideoClip

DATA = Path(__file__).resolve().parents[1] / "data"
MERGES = DATA / "official_golden.pt.xz"
MODELS = DATA / "official_golden_models.pt.xz"


def load(path: Path) -> dict:
    return torch.load(io.BytesIO(lzma.decompress(path.read_bytes())), weights_only=True)


def golden_features(T: int, H: int, W: int, C: int, seed: int, noise: float) -> Tensor:
    """[T, H, W, C] fp32 features, the same bits on any machine: integer draws scaled by powers
    of two (every step exact in fp32). Block fields 2, 4 and 8 patches wide (parts and objects)
    drift from frame to frame; per-patch noise (0.5, 1 or 2) sets how much merges."""
    g = torch.Generator().manual_seed(seed)

    def draw(shape, r: int) -> Tensor:  # integers in [-r, r]
        return torch.randint(-r, r + 1, tuple(shape), generator=g).float()

    fields = [(s, draw((-(-H // s), -(-W // s), C), 8)) for s in (2, 4, 8)]
    video = torch.empty(T, H, W, C)
    for t in range(T):
        fields = [(s, f + draw(f.shape, 2)) for s, f in fields]
        frame = sum(f.repeat_interleave(s, 0).repeat_interleave(s, 1)[:H, :W] for s, f in fields)
        video[t] = frame + noise * draw((H, W, C), 4)
    return video


def sha256(x: Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


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


def prefill(name: str, config: STTMConfig, given: Tensor | None = None) -> tuple:
    """Prefill a tiny random model's video prompt with STTM through VideoChat.

    given: [L, D] a stored layer-k input; layer k then gets it instead of what layers 0..k-1
    computed (the tiny models' weights depend on the torch build, the merge must not).
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
    handles = [layer.register_forward_pre_hook(  # after STTM's own hook: sees the merged input
        lambda module, args, kwargs: seen.update(merged=args[0][0],
                                                 rope=kwargs["position_embeddings"]),
        with_kwargs=True)]
    if given is not None:  # before STTM's hook, so that the merge reads it
        handles.append(layer.register_forward_pre_hook(
            lambda module, args, kwargs: _splice(given, args, kwargs), with_kwargs=True,
            prepend=True))
    chat.prepare()
    for handle in handles:
        handle.remove()
    return loaded.model, loaded.model.sttm.layer_input.hidden[0], seen


def _splice(given: Tensor, args: tuple, kwargs: dict):
    """Layer k's input [1, L, D] replaced by `given` [L, D] on the prefill (the only call of
    that length); other calls pass through."""
    hidden = args[0]
    if hidden.shape[1] != len(given):
        return None
    return (given.to(hidden)[None], *args[1:]), kwargs


def layer_positions(model, length: int) -> Tensor:
    """[P, L] int64 position ids layer k got before merging: Qwen-VL's (t, h, w) rows (P = 3),
    or 0..L-1 (P = 1) where the model passed none (LLaVA)."""
    positions = model.sttm.layer_input.positions  # [3, 1, L] or None
    if positions is None:
        return torch.arange(length)[None]
    return positions[:, 0].long()


def official_positions(positions: Tensor, start: int, grid: tuple, boxes: Tensor,
                       keep: bool) -> Tensor:
    """[P, L'] position ids of the merged sequence by the official patches' rule: Qwen2-VL
    (keep) gives each token its first patch's ids (text around unchanged); LLaVA renumbers the
    merged sequence 0..L'-1. positions [P, L] before merging, boxes [N, 5] the merged tokens."""
    T, H, W = grid
    stop = start + T * H * W
    if not keep:
        return torch.arange(positions.shape[1] - (stop - start) + len(boxes))[None]
    t, y, x = boxes[:, :3].long().T
    first = start + (t * H + y) * W + x  # each token's first (top-left, earliest) patch
    return torch.cat([positions[:, :start], positions[:, first], positions[:, stop:]], dim=-1)


# (model, merge layer k, tauS, tauT, root level): settings that merge these random weights
# partly, spatially and in time; 1.01 / None switch spatial / temporal merging off.
MODEL_CASES = [("tiny-llava-onevision", 2, 0.92, 0.995, 0), ("tiny-llava-onevision", 2, 0.93, None, 0),
         ("tiny-llava-onevision", 2, 1.01, 0.997, 1), ("tiny-llava-onevision", 0, 0.4, 0.993, 0),
         ("tiny-qwen2-vl", 2, 0.8, 0.6, 1), ("tiny-qwen2-vl", 2, 0.6, 0.98, 0),
         ("tiny-qwen2-vl", 2, 0.5, None, 1), ("tiny-qwen2-vl", 0, 0.4, 0.99, 0),
         ("tiny-qwen2-vl", 0, 1.01, 0.99, 2)]
