"""STTM inside transformers video LLMs: family adapters (one registry) and patch / unpatch."""
from .base import UnsupportedModelError, VideoLLMAdapter
from .patching import STTMState, patch, remerge, unpatch
from .registry import FAMILIES, SUPPORTED, adapter_for

__all__ = ["FAMILIES", "STTMState", "SUPPORTED", "UnsupportedModelError", "VideoLLMAdapter",
           "adapter_for", "patch", "remerge", "unpatch"]
