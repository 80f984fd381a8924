"""The model families STTM supports: one adapter file each, one line each here."""
from __future__ import annotations

from torch import nn

from .base import UnsupportedModelError, VideoLLMAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_vl import Qwen25VLAdapter, Qwen2VLAdapter
from .qwen3_vl import Qwen3VLAdapter

FAMILIES: tuple[type[VideoLLMAdapter], ...] = (
    LlavaOnevisionAdapter,  # LLaVA-OneVision, LLaVA-Video
    Qwen2VLAdapter,         # Qwen2-VL
    Qwen25VLAdapter,        # Qwen2.5-VL
    Qwen3VLAdapter,         # Qwen3-VL, dense and MoE
)
SUPPORTED = tuple(name for family in FAMILIES for name in family.model_classes)


def family_of(class_names) -> type[VideoLLMAdapter]:
    """The family serving the first of `class_names` (most specific first) that one serves."""
    for name in class_names:
        for family in FAMILIES:
            if name in family.model_classes:
                return family
    raise UnsupportedModelError(
        f"STTM does not support {next(iter(class_names), '?')}; supported model classes: "
        f"{', '.join(SUPPORTED)} (in transformers 5.x)")


def adapter_for(model: nn.Module) -> VideoLLMAdapter:
    """The adapter of a loaded model, matched on its class or the nearest base class."""
    return family_of([cls.__name__ for cls in type(model).__mro__])(model)


def architecture(name: str) -> tuple[type[VideoLLMAdapter], dict]:
    """(family, spec) of a named published or tiny architecture, for random-weight models."""
    for family in FAMILIES:
        if name in family.architectures:
            return family, family.architectures[name]
    known = [n for family in FAMILIES for n in family.architectures]
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(known)}")


def paper_presets(adapter: VideoLLMAdapter | None = None) -> tuple[str, tuple]:
    """(model, ((tauS, tauT) at the paper's ~50% budget, at ~30%)): the paper's thresholds for
    a loaded model's family; LLaVA-OneVision-7B's (the paper's main model) without a model or
    for a family the paper did not run."""
    family = type(adapter) if adapter is not None and adapter.paper_thresholds else FAMILIES[0]
    return family.paper_model, family.paper_thresholds


ARCHITECTURES = tuple(name for family in FAMILIES for name in family.architectures)
