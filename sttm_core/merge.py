"""STTM token merging: `merge_video_tokens` and the reusable `VideoTokenMerger`.

features [T, H, W, C] -> quadtree pyramid -> spatial tokens (coarse-to-fine search, tauS)
-> temporal groups of nested tokens in consecutive frames (tauT) -> MergeResult.
Imports torch only; runs on any device; outputs keep the input dtype, similarities are fp32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .quadtree import QuadtreePyramid, SpatialTokens, pyramid_sizes
from .reduction import OFF, Thresholds, check_temporal_mode, check_threshold, is_int
from .temporal import (candidate_pairs, group_labels, keep_every_frame, merge_groups,
                       pair_similarity)

log = logging.getLogger(__name__)


@dataclass
class MergeResult:
    """Merged video tokens. Token order: by (t, y0, x0) of each token's first occurrence."""

    features: Tensor          # [N, C] merged tokens, input dtype
    boxes: Tensor             # [N, 5] (t, y0, x0, y1, x1) first occurrence, patch units, exclusive
    num_patches: Tensor       # [N] patches each token stands for, over all frames it spans
    token_map: Tensor         # [T, H, W] output token of each input patch
    spatial_boxes: Tensor     # [S, 5] per-frame multi-granular tokens before temporal merging
    spatial_to_token: Tensor  # [S] output token each of them went into
    spatial_threshold: float | None   # tauS used; OFF: no spatial merging
    temporal_threshold: float | None  # tauT used; OFF: no temporal merging
    root_level: int | None    # pyramid level the search started from (None: no quadtree)
    temporal_mode: str | None
    method: str = "sttm"      # the reduction that made it (sttm_core.methods)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T, H, W) of the input."""
        return tuple(self.token_map.shape)

    @property
    def num_tokens(self) -> int:
        return self.features.shape[0]

    @property
    def num_spatial_tokens(self) -> int:
        return self.spatial_boxes.shape[0]

    @property
    def keep_ratio(self) -> float:
        """Tokens kept after spatial and temporal merging, as a fraction of T*H*W."""
        return self.num_tokens / self.token_map.numel()

    @property
    def spatial_keep_ratio(self) -> float:
        """Tokens kept after spatial merging alone, as a fraction of T*H*W."""
        return self.num_spatial_tokens / self.token_map.numel()

    @property
    def frame_span(self) -> Tensor:
        """[N, 2] first and last frame (inclusive) each token spans. With temporal_mode
        "components" or "best_match" a chain covers every frame in between; the official
        union-find (default) can group frames t and t+2 without t+1."""
        last = self.boxes[:, 0].clone()
        last.scatter_reduce_(0, self.spatial_to_token, self.spatial_boxes[:, 0], reduce="amax")
        return torch.stack([self.boxes[:, 0], last], dim=1)

    def cpu(self) -> "MergeResult":
        """A copy with every tensor on the CPU (for drawing)."""
        moved = {k: v.cpu() if isinstance(v, Tensor) else v for k, v in vars(self).items()}
        return MergeResult(**moved)


class VideoTokenMerger:
    """Builds a video's quadtree pyramid once; `merge` then takes any thresholds and root level.

    >>> merger = VideoTokenMerger(features)            # features [T, H, W, C]
    >>> merger.merge(0.8, 0.6, root_level=1).num_tokens
    Re-merging reads only small per-node similarity maps, so sliders and budget searches are
    cheap. head_dim: average the cosine similarity over heads of this size; area_weighted:
    average by patch count (pyramid pooling and temporal means) instead of plain means;
    keep_every_frame: no frame loses all its tokens to earlier frames (see `merge`).
    """

    def __init__(self, features: Tensor, *, head_dim: int | None = None,
                 area_weighted: bool = False, keep_every_frame: bool = False):
        check_features(features, head_dim)
        self.head_dim = head_dim
        self.area_weighted = area_weighted
        self.keep_every_frame = bool(keep_every_frame)
        self.pyramid = QuadtreePyramid(features, head_dim, area_weighted)
        check_finite(features, self.pyramid.levels[0])

    @property
    def num_levels(self) -> int:
        return self.pyramid.num_levels

    @property
    def level_sizes(self) -> list[tuple[int, int]]:
        """Grid of each root_level choice, coarse -> fine (e.g. [(2, 2), (4, 4), (7, 7), (14, 14)])."""
        return list(self.pyramid.sizes)

    def temporal_candidates(self, spatial: SpatialTokens) -> tuple[Tensor, Tensor, Tensor]:
        """(earlier [P], later [P], similarity [P]) of the nested pairs of consecutive frames."""
        earlier, later = candidate_pairs(spatial.token_map, spatial.boxes)
        return earlier, later, pair_similarity(spatial.features, earlier, later, self.head_dim)

    def temporal_labels(self, spatial: SpatialTokens, pairs: tuple[Tensor, Tensor, Tensor],
                        temporal_threshold: float, temporal_mode: str) -> Tensor:
        """[S] group representative of each spatial token; pairs: `temporal_candidates`.
        With keep_every_frame, a frame left without a token of its own gets its first back."""
        label = group_labels(len(spatial.boxes), *pairs, temporal_threshold, temporal_mode)
        if self.keep_every_frame:
            label = keep_every_frame(label, spatial.boxes[:, 0], self.pyramid.grid[0])
        return label

    def merge(self, spatial_threshold: float | None = 0.8,
              temporal_threshold: float | None = 0.6, root_level: int = 1,
              temporal_mode: str = "official") -> MergeResult:
        """Merge with these settings (as in merge_video_tokens); checked here, trusted below."""
        check_threshold("spatial_threshold", spatial_threshold)
        check_threshold("temporal_threshold", temporal_threshold)
        check_temporal_mode(temporal_mode)
        root_level = check_root_level(root_level, self.pyramid.sizes)  # negative -> from the top
        return self.merge_at(Thresholds(spatial_threshold, temporal_threshold, root_level,
                                        temporal_mode))

    def merge_at(self, thresholds: Thresholds) -> MergeResult:
        """Merge at a parsed record (sttm_core.methods.parse checked it): the entry the
        registry's STTM takes, so the record reaches the search whole. A root level this
        video's pyramid lacks starts from its finest level (see `usable_level`)."""
        root_level = self.usable_level(thresholds.root_level)
        spatial = self.pyramid.tokens(self.pyramid.search(thresholds.spatial_threshold,
                                                          root_level))
        if thresholds.temporal_threshold is OFF:
            label = torch.arange(len(spatial.boxes), device=spatial.boxes.device)
        else:
            label = self.temporal_labels(spatial, self.temporal_candidates(spatial),
                                         thresholds.temporal_threshold, thresholds.temporal_mode)
        return self.finish(spatial, label, thresholds.spatial_threshold,
                           thresholds.temporal_threshold, root_level, thresholds.temporal_mode)

    def usable_level(self, root_level: int) -> int:
        """A record's root level as a level of this pyramid (>= 0), or its finest level when
        the grid has too few (the result's root_level says which was used). Not an error:
        root grids are per video, and a sweep or a page may carry one level to a smaller one."""
        levels = self.num_levels
        if -levels <= root_level < levels:
            return int(root_level) % levels
        log.info("root_level=%d: a %dx%d grid has %d levels; starting from its finest",
                 root_level, *self.level_sizes[-1], levels)
        return levels - 1

    def finish(self, spatial: SpatialTokens, label: Tensor, spatial_threshold: float | None,
               temporal_threshold: float | None, root_level: int,
               temporal_mode: str) -> MergeResult:
        """Turn spatial tokens and their temporal group labels [S] into a MergeResult."""
        areas = spatial.areas
        is_rep = label == torch.arange(len(label), device=label.device)
        if bool(is_rep.all()):
            features, group_of = spatial.features, label  # nothing merged in time
        else:
            weights = areas if self.area_weighted else torch.ones_like(areas)
            features, group_of = merge_groups(spatial.features, weights, label)
        num_patches = torch.zeros(len(features), dtype=torch.long, device=areas.device)
        num_patches.index_add_(0, group_of, areas)
        return MergeResult(
            features=features, boxes=spatial.boxes[is_rep], num_patches=num_patches,
            token_map=group_of[spatial.token_map], spatial_boxes=spatial.boxes,
            spatial_to_token=group_of, spatial_threshold=_used(spatial_threshold),
            temporal_threshold=_used(temporal_threshold), root_level=root_level,
            temporal_mode=temporal_mode)


def merge_video_tokens(features: Tensor, spatial_threshold: float | None = 0.80,
                       temporal_threshold: float | None = 0.60, root_level: int = 1, *,
                       temporal_mode: str = "official", head_dim: int | None = None,
                       area_weighted: bool = False, keep_every_frame: bool = False) -> MergeResult:
    """Merge a video's patch tokens into multi-granular spatio-temporal tokens (STTM).

    features: [T, H, W, C] any float dtype and device.
    spatial_threshold (tauS): a quadtree node becomes one token iff its cosine similarity to
        each of its children is >= tauS; OFF (None) or any value > 1 disables spatial merging.
    temporal_threshold (tauT): nested tokens of consecutive frames with similarity >= tauT
        merge into one token; OFF (None) disables temporal merging.
    root_level: where the coarse-to-fine search starts, an index into the pyramid's levels
        coarse -> fine (0 = coarsest, -1 = the patch grid itself, i.e. no spatial merging).
    temporal_mode: "official" (default, the official code's tokens), "components" or
        "best_match"; see sttm_core.temporal.
    head_dim: average cosine similarities over heads of this size; area_weighted: weight the
        averages by patch count. Both off by default, as in the paper.
    keep_every_frame: every frame keeps at least one token of its own: a frame whose tokens
        all merged into earlier frames' gets its first (top-left) spatial token back as a
        token (the rest of its group stays merged). For models that write a timestamp before
        each frame's tokens; off by default, as in the paper.
    """
    merger = VideoTokenMerger(features, head_dim=head_dim, area_weighted=area_weighted,
                              keep_every_frame=keep_every_frame)
    return merger.merge(spatial_threshold, temporal_threshold, root_level, temporal_mode)


def merge_like(result: MergeResult, features: Tensor, *, area_weighted: bool = False) -> Tensor:
    """Other features of the same video merged the way `result` merged its own: the same
    tokens, each the same weighted average of the same patches (e.g. DeepStack
    features, which join the hidden states after the merge). Once its tokens are chosen a
    merge is linear in the features, so merge_like(r, a) + merge_like(r, b) is the merge of
    a + b into r's tokens.

    features: [T, H, W, C'] on result's grid -> [N, C'] in features' dtype (fp32 sums), on
    features' device. area_weighted: as the merge that made result was run.
    """
    if tuple(features.shape[:3]) != result.grid:
        raise ValueError(f"features of shape {tuple(features.shape)} do not lie on the merge's "
                         f"grid {result.grid}")
    device, C = features.device, features.shape[-1]
    if result.root_level is None:  # pooling baselines and FastV: plain means of their patches
        token_of = result.token_map.flatten().to(device)  # -1: dropped (FastV)
        kept = token_of >= 0
        members, weights = features.reshape(-1, C)[kept], torch.ones(int(kept.sum()), device=device)
        token_of = token_of[kept]
    else:  # STTM: each spatial token pooled by the pyramid, then averaged over its group
        boxes = result.spatial_boxes.to(device)
        members = QuadtreePyramid(features, area_weighted=area_weighted).node_features(boxes)
        areas = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
        weights = areas.float() if area_weighted else torch.ones(len(boxes), device=device)
        token_of = result.spatial_to_token.to(device)
    sums = torch.zeros(result.num_tokens, C, device=device)
    sums.index_add_(0, token_of, members.float() * weights[:, None])
    total = torch.zeros(result.num_tokens, device=device).index_add_(0, token_of, weights)
    return (sums / total[:, None]).to(features.dtype)


# --- input checks: clear ValueErrors before any work (thresholds: sttm_core.reduction) ------

def check_features(features, head_dim: int | None = None) -> None:
    if not isinstance(features, Tensor):
        raise ValueError(f"features must be a torch.Tensor [T, H, W, C], got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"features must have shape [T, H, W, C] (4 dims), got {tuple(features.shape)}")
    if 0 in features.shape:
        raise ValueError(f"features has an empty dimension: shape {tuple(features.shape)} "
                         "(need at least 1 frame, a 1x1 grid and 1 channel)")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got {features.dtype}")
    if head_dim is not None:
        channels = features.shape[-1]
        if not is_int(head_dim) or head_dim <= 0 or channels % head_dim:
            raise ValueError(f"head_dim={head_dim!r} must be a positive integer dividing the "
                             f"{channels} channels")


def check_finite(features: Tensor, coarsest: Tensor) -> None:
    """A NaN/inf feature reaches the coarsest pyramid level (a mean over every patch), so that
    small tensor is checked first; the full count is only taken for the message."""
    if not bool(torch.isfinite(coarsest).all()):
        bad = int((~torch.isfinite(features)).sum())
        if bad:
            raise ValueError(f"features contain {bad} NaN/inf values; merging needs finite features")


def _used(threshold: float | None) -> float | None:
    """A threshold as results report it: OFF when it merges nothing, else a float."""
    return OFF if threshold is OFF or threshold > 1 else float(threshold)


def check_root_level(root_level, sizes: list[tuple[int, int]]) -> int:
    """Validate a root level (negative counts from the finest level) and return it as >= 0."""
    n = len(sizes)
    if not is_int(root_level) or not -n <= root_level < n:
        grids = ", ".join(f"{i}: {h}x{w}" for i, (h, w) in enumerate(sizes))
        raise ValueError(f"root_level={root_level!r} is out of range for a {sizes[-1][0]}x"
                         f"{sizes[-1][1]} grid; its levels are {grids} (or -{n}..-1)")
    return int(root_level) % n


__all__ = ["OFF", "MergeResult", "VideoTokenMerger", "merge_like", "merge_video_tokens",
           "pyramid_sizes"]
