"""STTM Studio core: multi-granular spatio-temporal token merging for video LLMs."""
from .merge import MergeResult, VideoTokenMerger, merge_video_tokens, pyramid_sizes
from .temporal import TEMPORAL_MODES

__all__ = ["MergeResult", "VideoTokenMerger", "merge_video_tokens", "pyramid_sizes",
           "TEMPORAL_MODES"]
