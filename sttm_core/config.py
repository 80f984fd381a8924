"""STTMConfig: every setting of one STTM merge, validated once, applied by `merge`."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .baselines import METHODS, drop_by_attention, uniform_pooling
from .budget import thresholds_for_budget
from .merge import (MergeResult, VideoTokenMerger, check_temporal_mode, check_threshold,
                    _is_int)

NO_SPATIAL = 1.01  # tauS above any cosine similarity: spatial merging off


@dataclass(frozen=True)
class STTMConfig:
    """STTM settings.

    spatial_threshold (tauS), temporal_threshold (tauT, None = off), root_level: as in
    merge_video_tokens. merge_layer: the decoder layer whose input hidden states are merged
    (paper: 2; 0 for 72B models). keep_ratio: when set, tauS and tauT are chosen per video to
    keep this fraction of the video tokens (sttm_core.budget); the threshold values are then
    unused, except that temporal_threshold=None still keeps temporal merging off. A grid too
    small for root_level (few pyramid levels) starts from its finest level instead.
    method: "sttm" (default) or a baseline at the same keep_ratio (sttm_core.baselines):
    "uniform", "spatial_only", "temporal_only", "fastv" (query-aware token dropping).
    """

    spatial_threshold: float = 0.8
    temporal_threshold: float | None = 0.6
    root_level: int = 1
    merge_layer: int = 2
    keep_ratio: float | None = None
    temporal_mode: str = "official"
    head_dim: int | None = None
    area_weighted: bool = False
    method: str = "sttm"

    def __post_init__(self):
        check_threshold("spatial_threshold", self.spatial_threshold)
        check_threshold("temporal_threshold", self.temporal_threshold, allow_none=True)
        check_temporal_mode(self.temporal_mode)
        if not _is_int(self.root_level):
            raise ValueError(f"root_level must be an integer, got {self.root_level!r}")
        if not _is_int(self.merge_layer) or self.merge_layer < 0:
            raise ValueError(f"merge_layer must be a layer index >= 0, got {self.merge_layer!r}")
        if self.keep_ratio is not None and not (
                isinstance(self.keep_ratio, (int, float)) and 0 < self.keep_ratio <= 1):
            raise ValueError(f"keep_ratio={self.keep_ratio!r} must be in (0, 1] or None")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {METHODS}")
        if self.method != "sttm" and self.keep_ratio is None:
            raise ValueError(f"method={self.method!r} needs a keep_ratio (its token budget)")

    @classmethod
    def disabled(cls, merge_layer: int = 2) -> "STTMConfig":
        """A config that merges nothing (the model behaves exactly as unpatched)."""
        return cls(spatial_threshold=NO_SPATIAL, temporal_threshold=None, merge_layer=merge_layer)

    @property
    def merges_nothing(self) -> bool:
        return (self.keep_ratio is None and self.spatial_threshold > 1
                and self.temporal_threshold is None)

    @property
    def query_aware(self) -> bool:
        """The reduction looks at the question, so a video prefix cannot be reused."""
        return self.method == "fastv"

    def merge(self, features: Tensor | VideoTokenMerger,
              attention: Tensor | None = None) -> MergeResult:
        """Apply these settings to video features [T, H, W, C] (or a prepared merger).
        attention [T, H, W]: what each patch receives from the last prompt token (fastv)."""
        if self.method == "fastv":
            if attention is None:
                raise ValueError("method='fastv' needs the attention of the last prompt token")
            return drop_by_attention(features, attention, self.keep_ratio)
        merger = features if isinstance(features, VideoTokenMerger) else VideoTokenMerger(
            features, head_dim=self.head_dim, area_weighted=self.area_weighted)
        # a video's grid may be too small for the root level asked: start from its finest level
        root_level = min(self.root_level, merger.num_levels - 1) if self.root_level >= 0 \
            else max(self.root_level, -merger.num_levels)
        if self.method == "uniform":
            return uniform_pooling(merger.pyramid.levels[-1], self.keep_ratio)
        if self.method != "sttm":  # spatial_only / temporal_only: one side of the budget
            spatial = self.method == "spatial_only"
            choice = thresholds_for_budget(
                merger, self.keep_ratio, root_level=root_level if spatial else -1,
                temporal=not spatial, temporal_mode=self.temporal_mode)
            return choice.result
        if self.keep_ratio is not None:
            return thresholds_for_budget(
                merger, self.keep_ratio, root_level=root_level,
                temporal=self.temporal_threshold is not None,
                temporal_mode=self.temporal_mode).result
        return merger.merge(self.spatial_threshold, self.temporal_threshold, root_level,
                            self.temporal_mode)
