"""STTM inside transformers video LLMs: family adapters (one registry) and patch / unpatch."""
from .base import UnsupportedModelError, VideoLLMAdapter
from .patching import Plan, Prefilled, STTMState, patch, planned, remerge, unpatch
from .registry import FAMILIES, SUPPORTED, adapter_for

__all__ = ["FAMILIES", "Plan", "Prefilled", "STTMState", "SUPPORTED", "UnsupportedModelError",
           "VideoLLMAdapter", "adapter_for", "patch", "planned", "remerge", "unpatch"]
