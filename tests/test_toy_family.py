"""A new model family needs its adapter file and one registry line, nothing else: registered,
a model of it is served by its adapter everywhere (patch, VideoChat's prompt, the app's presets);
unregistered, the nearest base class's family serves it."""
import pytest
import torch

from sttm_core import STTMConfig, patch, unpatch
from sttm_core.chat import VideoChat
from sttm_core.examples import examples_dir
from sttm_core.models import registry
from sttm_core.models.checkpoints import LoadedModel, random_config, random_model
from sttm_core.models.qwen2_vl import Qwen2VLAdapter
from sttm_viz.session import Engine
from support.toy_family import ToyAdapter, ToyVideoLM

pytestmark = pytest.mark.model


def toy_model() -> LoadedModel:
    """A random-weight ToyVideoLM with tiny-qwen2-vl's shapes, served by whatever family the
    registry finds for it."""
    torch.manual_seed(0)
    config, image_processor = random_config("tiny-qwen2-vl")
    model = ToyVideoLM(config).eval()
    adapter = registry.adapter_for(model)
    tokenizer = random_model("tiny-qwen2-vl", device="cpu").tokenizer
    return LoadedModel(model, tokenizer, adapter, adapter.preprocessing(image_processor, config),
                       "toy-video-lm")


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, ToyAdapter))  # the one line


def test_unregistered_the_base_class_family_serves_it():
    assert type(toy_model().adapter) is Qwen2VLAdapter


def test_registered_its_adapter_serves_it_everywhere(toy_registered):
    loaded = toy_model()
    assert type(loaded.adapter) is ToyAdapter
    # the runtime: the prompt is built from the family's chat facts
    chat = VideoChat(loaded.with_max_pixels(28 * 28 * 15), STTMConfig(0.8, 0.6, 0, 2), num_frames=4)
    chat.load_video(examples_dir() / "static.mp4")
    prompts = []  # what the model was given
    hook = loaded.model.register_forward_pre_hook(
        lambda m, args, kwargs: prompts.append(kwargs["input_ids"][0].tolist()), with_kwargs=True)
    reply = chat.ask("What is shown?", max_new_tokens=1)
    hook.remove()
    assert reply.done and reply.tokens_after < reply.tokens_before
    assert "<|im_start|>system\nYou are a toy.<|im_end|>" in loaded.tokenizer.decode(prompts[0])
    # patch: the family's adapter runs the merge
    model = patch(loaded.model, STTMConfig(0.8, 0.6, 0, 2))
    assert model.sttm.adapter.__class__ is ToyAdapter
    unpatch(model)
    # the app: the paper's presets for this family, said whose
    engine = Engine(loaded)
    assert engine.presets == {"Paper 50% (τS .90, τT .70)": (0.9, 0.7),
                              "Paper 30% (τS .90, τT .50)": (0.9, 0.5)}
    assert "Toy-7B" in engine.preset_note


@pytest.mark.parametrize("name", ["tiny-llava-onevision", "tiny-qwen2-vl", "tiny-qwen3-vl"])
def test_a_random_tokenizer_holds_the_special_tokens_its_adapter_declares(name):
    """The byte tokenizer of a random-weight model: bytes 0..255, then the family's declared
    special tokens in order, and the config's video token is one of them."""
    loaded = random_model(name, device="cpu")
    declared = type(loaded.adapter).special_tokens
    tokenizer = loaded.tokenizer
    assert tokenizer.convert_tokens_to_ids(list(declared)) == list(range(256, 256 + len(declared)))
    assert set(tokenizer.all_special_tokens) == set(declared)
    assert tokenizer.convert_ids_to_tokens(loaded.model.config.video_token_id) in declared
    assert loaded.model.generation_config.eos_token_id == tokenizer.eos_token_id
