"""STTM Studio core: multi-granular spatio-temporal token merging for video LLMs.

    from sttm_core import STTMConfig, merge_video_tokens, patch, unpatch, VideoChat

The merge engine needs torch only; the model parts (patch, unpatch, VideoChat, load_model)
import transformers when first used.
"""
from typing import TYPE_CHECKING

from .budget import BudgetChoice, thresholds_for_budget
from .config import STTMConfig
from .merge import (OFF, MergeResult, VideoTokenMerger, merge_like, merge_video_tokens,
                    pyramid_sizes)
from .methods import METHODS, reduce_tokens
from .reduction import ReductionError
from .temporal import TEMPORAL_MODES

if TYPE_CHECKING:  # what editors and type checkers see of the lazy names below
    from .chat import Reply, VideoChat
    from .models import Plan, UnsupportedModelError, patch, planned, remerge, unpatch
    from .prefix import VideoPrefix
    from .models.checkpoints import ModelLoadError, load_model

_LAZY = {"patch": ".models", "unpatch": ".models", "remerge": ".models", "planned": ".models",
         "Plan": ".models", "VideoPrefix": ".prefix",
         "UnsupportedModelError": ".models", "load_model": ".models.checkpoints",
         "ModelLoadError": ".models.checkpoints", "VideoChat": ".chat", "Reply": ".chat"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'sttm_core' has no attribute {name!r}")


__all__ = ["BudgetChoice", "METHODS", "MergeResult", "OFF", "ReductionError", "STTMConfig",
           "TEMPORAL_MODES", "VideoTokenMerger", "merge_like", "merge_video_tokens",
           "pyramid_sizes", "reduce_tokens", "thresholds_for_budget", *_LAZY]
