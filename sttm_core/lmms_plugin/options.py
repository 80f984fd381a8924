"""The model_args of `--model sttm` -> the settings of one lmms-eval run (plain data).

lmms-eval hands model_args over already converted (`handle_arg_string`): "0.85" -> 0.85,
"2" -> 2, "-1" -> -1.0, "true" -> True, anything else stays a string ("none" too). The
functions here take those values, or plain Python values, and check each one once. This
module does not import lmms-eval, so it is tested without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

from ..config import STTMConfig
from ..merge import OFF
from ..methods import parse, registered

DTYPES = ("auto", "float32", "bfloat16", "float16")
OFF_WORDS = ("none", "off")
KNOWN = ("pretrained", "method", "tau_s", "tau_t", "keep_ratio", "root_level", "merge_layer",
         "position_rule", "temporal_mode",
         "num_frames", "max_pixels", "max_new_tokens", "device", "dtype", "attn_implementation",
         "log_file", "batch_size", "max_batch_size")


@dataclass(frozen=True)
class PluginSettings:
    """Everything one `--model sttm` run needs: the checkpoint, the reduction, the frames."""

    pretrained: str             # hub id or local checkpoint directory
    config: STTMConfig          # the reduction (method, thresholds or budget, layer k)
    num_frames: int = 32        # frames sampled uniformly over each video
    max_pixels: int | None = None  # Qwen-VL frame size cap, for load_model (None: the
    #                                checkpoint's range; fixed-size families refuse one)
    max_new_tokens: int = 32    # when a task's generation_kwargs give none
    device: str | None = None   # None: CUDA when present, else CPU
    dtype: str = "auto"         # auto: bf16 on CUDA, fp32 on CPU
    attn_implementation: str = "sdpa"
    log_file: str | None = None  # per-request JSONL (appended to)


def parse_model_args(args: dict) -> PluginSettings:
    """model_args (after lmms-eval's conversion, plus its batch_size / device / max_batch_size)
    -> PluginSettings. Raises ValueError naming the argument at fault."""
    unknown = sorted(set(args) - set(KNOWN))
    if unknown:
        raise ValueError(f"unknown model_args {', '.join(unknown)}; the sttm model takes "
                         f"{', '.join(KNOWN)}")
    if not args.get("pretrained"):
        raise ValueError("model_args needs pretrained=<hub id or local checkpoint directory>")
    batch_size = args.get("batch_size", 1)
    if str(batch_size).strip() not in ("1", "1.0"):  # lmms-eval passes 1 or "1"
        raise ValueError(f"batch_size={batch_size!r}: the sttm model answers one request at a "
                         "time (each video is prefilled once and its questions reuse it); "
                         "use --batch_size 1")
    dtype = str(args.get("dtype", "auto"))
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")
    max_pixels = args.get("max_pixels")
    return PluginSettings(
        pretrained=str(args["pretrained"]),
        config=reduction_config(args),
        num_frames=_positive_int("num_frames", args.get("num_frames", 32)),
        max_pixels=None if max_pixels is None else _positive_int("max_pixels", max_pixels),
        max_new_tokens=_positive_int("max_new_tokens", args.get("max_new_tokens", 32)),
        device=None if args.get("device") is None else str(args["device"]),
        dtype=dtype,
        attn_implementation=str(args.get("attn_implementation", "sdpa")),
        log_file=None if args.get("log_file") is None else str(args["log_file"]),
    )


def reduction_config(args: dict) -> STTMConfig:
    """The STTMConfig of model_args. method defaults to "sttm", or to "sttm_budget" when a
    keep_ratio is given. The reduction's values (tau_s, tau_t, keep_ratio, root_level,
    temporal_mode) are turned from lmms-eval's text into numbers here and checked by the
    registry's one parse (sttm_core.methods.parse): thresholds go with "sttm" only, a
    keep_ratio with budget methods only."""
    method = args.get("method") or ("sttm_budget" if args.get("keep_ratio") is not None
                                    else "sttm")
    merge_layer = _int("merge_layer", args.get("merge_layer", 2))
    values = {name: READ[name](name, args[name]) for name in READ if name in args}
    if registered(method).takes == "budget":
        values.setdefault("keep_ratio", None)  # missing: parse says a budget method needs it
    return STTMConfig.of(method, parse(method, **values), merge_layer=merge_layer,
                         position_rule=args.get("position_rule"))  # checked by STTMConfig


def _threshold(name: str, value) -> float | None:
    """A tau value: a number, or "none" / "off" (lmms-eval leaves those as strings) for OFF."""
    if value is OFF or (isinstance(value, str) and value.strip().lower() in OFF_WORDS):
        return OFF
    return _number(name, value)


def _number(name: str, value) -> float:
    if isinstance(value, Real) and not isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None


def _int(name: str, value) -> int:
    """An integer from what lmms-eval gives: 2, "2", or -1.0 (how it reads "-1")."""
    number = _number(name, value)
    if float(number).is_integer():
        return int(number)
    raise ValueError(f"{name}={value!r} is not an integer")


def _positive_int(name: str, value) -> int:
    number = _int(name, value)
    if number < 1:
        raise ValueError(f"{name}={value!r} must be >= 1")
    return number


# the reduction's model_args as lmms-eval gives them -> the values `parse` takes
READ = {"tau_s": _threshold, "tau_t": _threshold, "root_level": _int,
        "keep_ratio": lambda name, value: None if value is None else _number(name, value),
        "temporal_mode": lambda name, value: str(value)}
