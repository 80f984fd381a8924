"""STTM Studio core: multi-granular spatio-temporal token merging for video LLMs.

    from sttm_core import merge_video_tokens, STTMConfig
"""
from .budget import BudgetChoice, thresholds_for_budget
from .config import STTMConfig
from .merge import MergeResult, VideoTokenMerger, merge_video_tokens, pyramid_sizes
from .temporal import TEMPORAL_MODES

__all__ = ["BudgetChoice", "MergeResult", "STTMConfig", "TEMPORAL_MODES", "VideoTokenMerger",
           "merge_video_tokens", "pyramid_sizes", "thresholds_for_budget"]
