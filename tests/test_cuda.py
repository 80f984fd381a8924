"""What only a GPU can check: FlashAttention-2 and sdpa on the merged sequence, peak prefill
memory, and a model split over two GPUs (device_map). Skipped, saying why, without them."""
import pytest
import torch

from support.model_inputs import prompt_inputs
from support.videos import random_frames
from sttm_core import STTMConfig
from sttm_core.models import patch, unpatch
from sttm_core.models.checkpoints import load_model, random_model

pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MERGING = STTMConfig(method="sttm_budget", keep_ratio=0.4, merge_layer=2)


def on(inputs, device):
    return {k: v.to(device) for k, v in inputs.items()}


@torch.no_grad()
@pytest.mark.parametrize("attention", ["sdpa", "flash_attention_2"])
def test_merged_sequence_with_fast_attention_matches_eager(tiny, attention):
    if attention == "flash_attention_2":
        pytest.importorskip("flash_attn", reason="flash-attn is not installed")
    path = str(tiny.name)
    eager = load_model(path, device="cuda", dtype=torch.bfloat16, attn_implementation="eager")
    fast = load_model(path, device="cuda", dtype=torch.bfloat16, attn_implementation=attention)
    inputs, _ = prompt_inputs(fast, random_frames(T=16), ["What happens?"])
    inputs = on(inputs, "cuda")
    runs = merged_greedy_runs((eager, fast), inputs)
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    for a, b in zip(runs[0].scores, runs[1].scores):
        torch.testing.assert_close(a, b, atol=0.1, rtol=0.1)


@torch.no_grad()
def test_sttm_peak_prefill_memory_is_not_above_the_unpatched_model():
    """A real shape (LLaVA-OV-0.5B's, 4 layers, random weights), 32 frames, bf16, sdpa."""
    loaded = random_model("llava-onevision-qwen2-0.5b-ov-hf", device="cuda",
                          dtype=torch.bfloat16, num_layers=4)
    inputs, _ = prompt_inputs(loaded, random_frames(T=32, H=384, W=384), ["What happens?"])
    inputs = on(inputs, "cuda")
    peaks = []
    for config in (None, STTMConfig(method="sttm_budget", keep_ratio=0.3, merge_layer=2)):
        if config is None:
            unpatch(loaded.model)
        else:
            patch(loaded.model, config)
        loaded.model(**inputs, logits_to_keep=1)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        loaded.model(**inputs, logits_to_keep=1)
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated())
    assert peaks[1] <= peaks[0]


@torch.no_grad()
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_model_split_over_two_gpus_equals_one_gpu(tiny):
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    path = str(tiny.name)
    size = compute_module_sizes(tiny.model)[""]
    device_map = infer_auto_device_map(tiny.model, max_memory={0: size // 2, 1: 4 * size},
                                       no_split_module_classes=tiny.model._no_split_modules)
    assert set(device_map.values()) == {0, 1}
    split = load_model(path, dtype=torch.float32, device_map=device_map)
    single = load_model(path, device="cuda:0", dtype=torch.float32)
    inputs, _ = prompt_inputs(single, random_frames(T=16), ["What happens?"])
    inputs = on(inputs, "cuda:0")
    runs = merged_greedy_runs((single, split), inputs)
    assert torch.equal(runs[0].sequences.cpu(), runs[1].sequences.cpu())
    for a, b in zip(runs[0].scores, runs[1].scores):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-4, rtol=1e-4)


def merged_greedy_runs(models, inputs) -> list:
    """Each model patched with MERGING, then 5 greedy tokens with their scores."""
    runs = []
    for loaded in models:
        patch(loaded.model, MERGING)
        runs.append(loaded.model.generate(**inputs, max_new_tokens=5, do_sample=False,
                                          output_scores=True, return_dict_in_generate=True))
    return runs


def test_a_chat_pickled_on_the_gpu_unpickles_on_the_cpu_and_resumes_there(tiny):
    """ZeroGPU's rule, on a real GPU: what a worker returns holds no CUDA tensor; attached to
    the model again, the cached prefix goes back to the GPU and answers as before."""
    import pickle

    from sttm_core.chat import VideoChat
    from sttm_core.examples import examples_dir

    loaded = load_model(str(tiny.name), device="cuda", dtype=torch.bfloat16)
    chat = VideoChat(loaded, STTMConfig(0.8, 0.6), num_frames=8, max_new_tokens=5)
    chat.load_video(examples_dir() / "static.mp4")
    first = chat.ask("What is shown?")
    blob = pickle.dumps(chat)
    packed = pickle.loads(blob)
    prefix = packed._prefix.unpack("cpu")  # what a main process without a GPU would load
    assert all(layer.keys.device.type == "cpu" for layer in prefix.cache.layers)
    again = packed.attach(loaded).ask("What is shown?")
    assert again.cache_reused and again.text == first.text
    assert packed._prefix.cache.layers[0].keys.device.type == "cuda"
