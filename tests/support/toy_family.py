"""A model family of its own, as a contributor would add one: this adapter file plus one line in
sttm_core/models/registry.py's FAMILIES (tests/test_toy_family.py adds that line for the test).

ToyVideoLM is a transformers Qwen2-VL under another class name, so the family's facts are what
tells it apart: its system turn, the paper's thresholds for it, its frame-size option.
"""
from transformers import Qwen2VLForConditionalGeneration

from sttm_core.models.qwen2_vl import Qwen2VLAdapter


class ToyVideoLM(Qwen2VLForConditionalGeneration):
    """A 'new' video LLM class (its layers are Qwen2-VL's)."""


class ToyAdapter(Qwen2VLAdapter):
    model_classes = ("ToyVideoLM",)
    system_prompt = "You are a toy."
    paper_thresholds = ((0.9, 0.7), (0.9, 0.5))
    paper_model = "Toy-7B"
    architectures = {}  # no published shapes: the test builds one from tiny-qwen2-vl's config
