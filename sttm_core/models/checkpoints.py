"""Loading checkpoints (hub id or local path) and building random-weight ones from configs.

`load_model` is what users call with a real checkpoint. `build_random_checkpoint` writes the
real architecture of a named model (or a tiny one for tests) with random weights, a byte-level
tokenizer and the image-processor settings into a directory, so tests and benchmarks load it
through the very same `from_pretrained` path, with no download.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from .base import VideoLLMAdapter
from .registry import adapter_for, architecture, family_of

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A checkpoint could not be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    adapter: VideoLLMAdapter
    settings: dict  # frame preprocessing: size or min/max pixels (max_pixels: any cap applied),
    #                 image_mean, image_std
    name: str
    # held while tokenizing: whether special tokens are parsed is a switch on the shared tokenizer
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def with_max_pixels(self, max_pixels: int | None) -> "LoadedModel":
        """The same model, tokenizer (and its lock) with at most `max_pixels` pixels per frame,
        applied by the family's adapter (`frame_settings`: ValueError where frames have a fixed
        size); None: these settings."""
        return replace(self, settings=self.adapter.frame_settings(self.settings, max_pixels))


def default_device_and_dtype(device: str | None = None, dtype: torch.dtype | None = None):
    """CUDA with bf16 when present, else CPU with fp32."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return device, dtype


def load_model(name_or_path: str, *, device: str | None = None, dtype: torch.dtype | None = None,
               attn_implementation: str = "sdpa", trust_remote_code: bool = False,
               device_map: str | dict | None = None, max_pixels: int | None = None) -> LoadedModel:
    """Load a supported video LLM, its tokenizer and its frame preprocessing settings.

    name_or_path: a hub id (downloaded or cached) or a local checkpoint directory.
    device_map="auto" spreads a big model over the GPUs (accelerate); then device is ignored.
    max_pixels: at most this many pixels per frame (the Qwen-VL families; None: the
    checkpoint's range). A family with fixed-size frames (LLaVA-OneVision) refuses it with a
    ValueError, before any weights load.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    device, dtype = default_device_and_dtype(device, dtype)
    _check_reachable(str(name_or_path))
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as err:  # OSError, ValueError, HTTP errors: all mean "not loadable here"
        raise ModelLoadError(
            f"could not load the model '{name_or_path}': {_first_line(err)}\n"
            "Give a local checkpoint directory, or a hub id whose files are downloaded "
            f"(`huggingface-cli download {name_or_path}`); offline machines need them in the "
            "cache (HF_HUB_OFFLINE=1).") from err
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    family = family_of(architectures)  # unsupported: says so before any weights load
    # as does a cap the family's frames refuse
    settings = family.frame_settings(preprocessing_settings(name_or_path, family, config),
                                     max_pixels)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, dtype=dtype, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, device_map=device_map)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as err:
        raise ModelLoadError(f"could not load the weights or tokenizer of '{name_or_path}': "
                             f"{_first_line(err)}") from err
    if device_map is None:
        model = model.to(device)
    model.eval()
    return LoadedModel(model, tokenizer, adapter_for(model), settings, str(name_or_path))


def preprocessing_settings(name_or_path: str, family: type[VideoLLMAdapter], config) -> dict:
    """Frame resize/normalise settings from the checkpoint's image processor config."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except Exception as err:  # missing config: fall back to the family's published defaults
        log.warning("no image processor config in %s (%s); using the family defaults",
                    name_or_path, _first_line(err))
        processor = None
    return family.preprocessing(processor, config)


def _check_reachable(name_or_path: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with advice, when a hub id is neither local, nor cached, nor downloadable:
    otherwise the hub client retries for half a minute before giving up."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    if Path(name_or_path).exists():
        return
    try:
        if try_to_load_from_cache(name_or_path, "config.json"):
            return
    except HFValidationError:  # not a hub id either: a directory that is not there
        raise ModelLoadError(f"could not load the model '{name_or_path}': no such checkpoint "
                             "directory, and it is not a hub id (owner/name). Give a local "
                             "checkpoint directory or a hub id.") from None
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set and its files are not in the cache"
    else:
        host = urlparse(constants.ENDPOINT).hostname
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            return
        except OSError as err:
            reason = f"{host} cannot be reached ({err.strerror or err}) and it is not cached"
    raise ModelLoadError(
        f"could not load the model '{name_or_path}': {reason}.\n"
        "Give a local checkpoint directory, or download the checkpoint first "
        f"(`huggingface-cli download {name_or_path}`) on a machine with internet access.")


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


# --- random-weight checkpoints -------------------------------------------------------------------

def random_model(name: str, *, device: str | None = None, dtype=None,
                 num_layers: int | None = None, seed: int = 0,
                 attn_implementation: str = "sdpa", max_pixels: int | None = None) -> LoadedModel:
    """A named architecture (`registry.ARCHITECTURES`) with random weights, in memory, with the
    byte-level tokenizer: the real shapes and speed of a model you need not download.
    max_pixels: as `load_model`'s."""
    from transformers import AutoModelForImageTextToText

    device, dtype = default_device_and_dtype(device, dtype)
    family = architecture(name)[0]
    token_id = special_token_ids(family)
    torch.manual_seed(seed)
    config, image_processor = random_config(name, num_layers)
    model = AutoModelForImageTextToText.from_config(config, dtype=dtype,
                                                    attn_implementation=attn_implementation)
    model.generation_config.eos_token_id = token_id[family.end_of_turn]
    model.generation_config.pad_token_id = token_id[family.pad_token]
    model = model.to(device).eval()
    adapter = adapter_for(model)
    settings = adapter.frame_settings(adapter.preprocessing(image_processor, config), max_pixels)
    return LoadedModel(model, _byte_tokenizer(family), adapter, settings, name)


def build_random_checkpoint(name: str, out_dir: str | Path, *, num_layers: int | None = None,
                            seed: int = 0) -> Path:
    """Write a named architecture with random weights, its tokenizer and image-processor
    settings to out_dir; load it with `load_model(out_dir)` like any checkpoint. Returns out_dir."""
    loaded = random_model(name, device="cpu", dtype=torch.float32, num_layers=num_layers,
                          seed=seed)
    out_dir = Path(out_dir)
    loaded.model.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)
    random_config(name, num_layers)[1].save_pretrained(out_dir)
    return out_dir


RANDOM_WEIGHTS = "sttm_random_weights"  # the config flag of a random-weight model


def has_random_weights(model) -> bool:
    """Whether a model was made by `random_model` / `build_random_checkpoint` (its config says
    so, also after save_pretrained and load_model)."""
    return bool(getattr(getattr(model, "config", None), RANDOM_WEIGHTS, False))


def random_config(name: str, num_layers: int | None = None):
    """(model config, image processor) of a named architecture; its text model shortened to
    `num_layers` if given."""
    family, spec = architecture(name)
    token_id = special_token_ids(family)
    hidden, ffn, layers, heads, kv_heads, vocab, tied = spec["text"]
    text = dict(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=num_layers or layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                tie_word_embeddings=tied, max_position_embeddings=32768,
                eos_token_id=token_id[family.end_of_turn], pad_token_id=token_id[family.pad_token],
                bos_token_id=None)
    config, image_processor = family.random_config(spec, text, token_id)
    # saved with the checkpoint: an app can tell its answers are meaningless (RANDOM_WEIGHTS)
    setattr(config, RANDOM_WEIGHTS, True)
    return config, image_processor


def special_token_ids(family: type[VideoLLMAdapter]) -> dict[str, int]:
    """Ids of the family's special tokens in its byte tokenizer: 256 on, in declared order."""
    return {token: 256 + i for i, token in enumerate(family.special_tokens)}


def _byte_tokenizer(family: type[VideoLLMAdapter]):
    """Byte-level BPE without merges (every UTF-8 byte a token, ids 0..255) + the special
    tokens the family's prompts use (`special_token_ids`)."""
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    vocab.update(special_token_ids(family))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=family.pad_token,
                               eos_token=family.end_of_turn, pad_token=family.pad_token)
    others = [token for token in family.special_tokens if token != family.pad_token]
    tokenizer.add_special_tokens({"additional_special_tokens": others})
    return tokenizer


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]
