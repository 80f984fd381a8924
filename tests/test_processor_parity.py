"""The project's own frame preprocessing gives transformers' video processors' pixel_values.

STTM Studio resizes and normalises frames itself (sttm_core/models/*.py `video_inputs`), so it
runs without torchvision. With torchvision present, transformers' processors load; here both
preprocess the bundled example videos (decoded with `load_video`, 8 frames each) with the same
settings, built offline from the tiny checkpoints' saved processor configs (LLaVA-OneVision also
at the real SigLIP size, 384). Shapes and grid_thw must be identical; the values differ only by
rounding: transformers resizes uint8 frames (each resize pass rounds and clips to 0..255, as
PIL does), the project resizes in float. Measured on torch 2.11 / transformers 5.23 (normalised
units; CLIP's std 0.27 makes one grey level 0.015, SigLIP's and Qwen3-VL's 0.5 make it 0.008):
mean |diff| 0.0004-0.0024, 99.9th percentile <= 0.015 (one grey level), max 0.15 (~10 grey
levels, at a few pixels on sharp edges, where the float path keeps the bicubic overshoot).
Resizing the uint8 frames with the same F.interpolate call instead gives their values to 2.4e-7
(measured once, all four families); the README says why the project keeps its float path.
"""
import numpy as np
import pytest
import torch

from sttm_core.models.checkpoints import load_model
from sttm_core.video import load_video

pytestmark = pytest.mark.model
pytest.importorskip("torchvision", reason="transformers' video processors need torchvision")

# tolerances on normalised pixels, with headroom over the measured values above
MAX_DIFF, P999_DIFF, MEAN_DIFF = 0.2, 0.02, 0.003
FRAMES = 8  # even: Qwen3-VL's processor bounds t*h*w, equal to per-frame bounds for even T


@pytest.fixture(scope="module")
def clips(examples):
    """[T, H, W, 3] uint8 frames of every bundled example video."""
    paths = sorted(examples.glob("*.mp4"))
    assert len(paths) >= 8
    return {p.name: load_video(p, FRAMES).frames for p in paths}


def their_processor(name: str, path):
    """transformers' video processor of a family, from a saved tiny checkpoint (no download)."""
    from transformers import (LlavaOnevisionVideoProcessor, Qwen2VLVideoProcessor,
                              Qwen3VLVideoProcessor)

    if name == "tiny-llava-onevision":
        return LlavaOnevisionVideoProcessor.from_pretrained(path)
    if name == "tiny-qwen3-vl":  # the saved config is Qwen2-VL's image processor: same fields
        saved = Qwen2VLVideoProcessor.from_pretrained(path)
        fields = ("image_mean", "image_std", "patch_size", "temporal_patch_size", "merge_size")
        return Qwen3VLVideoProcessor(**{k: getattr(saved, k) for k in fields})
    return Qwen2VLVideoProcessor.from_pretrained(path)  # Qwen2-VL and Qwen2.5-VL


def their_size(name: str, settings: dict, frames: int) -> dict:
    """The processor's size arguments for the project's frame settings."""
    if name == "tiny-llava-onevision":
        return {"size": {"height": settings["size"], "width": settings["size"]}}
    low, high = settings["min_pixels"], settings["max_pixels"]
    if name == "tiny-qwen3-vl":  # whole-video pixel bounds: per-frame bounds x T
        return {"size": {"shortest_edge": low * frames, "longest_edge": high * frames},
                "cap_pixels_per_frame": False}
    return {"size": {"shortest_edge": low, "longest_edge": high}}


def differences(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float, float]:
    """(max, 99.9th percentile, mean) of |ours - theirs|."""
    diff = (ours - theirs).abs().flatten().double()
    p999 = float(np.quantile(diff.numpy(), 0.999))
    return diff.max().item(), p999, diff.mean().item()


@pytest.mark.parametrize("name, size", [
    ("tiny-llava-onevision", None), ("tiny-llava-onevision", 384), ("tiny-qwen2-vl", None),
    ("tiny-qwen2.5-vl", None), ("tiny-qwen3-vl", None)])
def test_pixel_values_match_transformers(name, size, tiny_checkpoints, clips):
    path = tiny_checkpoints[name]
    loaded = load_model(str(path), device="cpu")
    settings = dict(loaded.settings, **({"size": size} if size else {}))
    processor = their_processor(name, path)
    for video, frames in clips.items():
        ours, _ = loaded.adapter.video_inputs(frames, settings, fps=4.0)
        theirs = processor(videos=[frames], return_tensors="pt", do_sample_frames=False,
                           **their_size(name, settings, len(frames)))
        # LLaVA [1, T, 3, S, S]; Qwen [gt*gh*gw, 3*tp*p*p] with video_grid_thw [1, 3]
        assert ours["pixel_values_videos"].shape == theirs["pixel_values_videos"].shape, video
        if "video_grid_thw" in ours:
            assert torch.equal(ours["video_grid_thw"], theirs["video_grid_thw"]), video
        worst, p999, mean = differences(ours["pixel_values_videos"],
                                        theirs["pixel_values_videos"])
        assert worst <= MAX_DIFF and p999 <= P999_DIFF and mean <= MEAN_DIFF, (
            f"{video}: max {worst:.4f}, 99.9% {p999:.4f}, mean {mean:.5f}")
