"""STTM inside transformers video LLMs: family adapters (one registry) and patch / unpatch."""
from .adapters import ADAPTERS, UnsupportedModelError, VideoLLMAdapter, adapter_for
from .patching import STTMState, patch, remerge, unpatch

__all__ = ["ADAPTERS", "STTMState", "UnsupportedModelError", "VideoLLMAdapter", "adapter_for",
           "patch", "remerge", "unpatch"]
