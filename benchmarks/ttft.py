"""Time to first token and peak memory: all video tokens vs STTM at the paper's thresholds and
at token budgets, vs the FLOP ideal, FastV at the same budgets, and a follow-up question on the
cached video prefix vs re-prefilling the video.

    python benchmarks/ttft.py                                  # llava-onevision-qwen2-0.5b shapes
    python benchmarks/ttft.py --frames 64 --skip-fastv         # a long video (needle_count.mp4)
    python benchmarks/ttft.py --arch Qwen2.5-VL-3B-Instruct --frames 16
    python benchmarks/ttft.py --arch Qwen3-VL-2B-Instruct --frames 4 --num-layers 4  # small RAM
    python benchmarks/ttft.py --device cuda --attn flash_attention_2
    python benchmarks/ttft.py --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf  # real weights
    python benchmarks/ttft.py --json

Without --model the named architecture is built from its config numbers with random weights
(nothing is downloaded); speed depends on shapes and token counts, not on weight values.
TTFT here is the language model's: prefill of the prompt (system, video tokens, question) up
to the first generated token. The vision encoder, which STTM does not change, is timed apart.
Rows: STTM with the paper's fixed thresholds for the family (no search), STTM at budgets
(thresholds searched per video: the search is part of the merge time), FastV (query-aware: it
re-prefills the video for every question) at the same budgets; merge layer 2, root level 1.
The merge is timed with CUDA events on GPU (no stall), after one warm-up of the merge path.
Peak memory is that of the first question (prefix prefill + question): the process's peak
RSS on CPU (allocations >= 1 MiB mmapped, so freed tensors leave it), max_memory_allocated on
GPU; "+prefill" is the rise above the memory held before it (weights, encoded video).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from sttm_core import STTMConfig
from sttm_core.chat import VideoChat
from sttm_core.examples import examples_dir
from sttm_core.methods import parse
from sttm_core.models.checkpoints import default_device_and_dtype, load_model, random_model
from sttm_core.models.registry import ARCHITECTURES
from sttm_core.video import VideoClip, load_video

BUDGETS = (0.5, 0.3, 0.15)
QUESTIONS = ("What is happening in this video? Answer in one sentence.",
             "What colour is the largest object?")
EXAMPLE = examples_dir() / "camera_pan.mp4"
MIB = 2 ** 20


def prefill_flops(text_config, lengths: list[int]) -> float:
    """FLOPs of a causal prefill whose decoder layer i sees lengths[i] tokens (+ the lm head
    on the last token)."""
    d, ffn = text_config.hidden_size, text_config.intermediate_size
    head_dim = getattr(text_config, "head_dim", None) or d // text_config.num_attention_heads
    q_dim = text_config.num_attention_heads * head_dim
    kv_dim = text_config.num_key_value_heads * head_dim
    per_token = 2 * (d * q_dim + 2 * d * kv_dim + q_dim * d + 3 * d * ffn)
    layers = sum(n * per_token + 2 * n * n * q_dim for n in lengths)  # QK^T + AV, causal half
    return layers + 2 * d * text_config.vocab_size


def ideal_speedup(text_config, before: int, after: int, merge_layer: int) -> float:
    n = text_config.num_hidden_layers
    full = prefill_flops(text_config, [before] * n)
    merged = prefill_flops(text_config, [before] * merge_layer + [after] * (n - merge_layer))
    return full / merged


class PeakMemory:
    """Peak memory of a block of work: torch.cuda.max_memory_allocated on a GPU, the process's
    peak RSS (VmHWM, reset through /proc/self/clear_refs) on CPU. None where unmeasurable."""

    def __init__(self, device):
        self.device = torch.device(device)
        if self.device.type == "cpu":
            _map_large_allocations()

    def _current(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return _proc_status("VmRSS")

    @contextmanager
    def measure(self):
        """Yields a dict that holds peak_mib and prefill_mib (rise over the start) afterwards."""
        out = {"peak_mib": None, "prefill_mib": None}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = self._current()
        else:
            before = self._current() if _reset_peak_rss() else None
        yield out
        if before is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _proc_status("VmHWM")
        out.update(peak_mib=round(peak / MIB), prefill_mib=round((peak - before) / MIB))


def _proc_status(field: str) -> int | None:
    """Bytes of a /proc/self/status memory field (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _map_large_allocations(threshold: int = MIB) -> None:
    """glibc: serve every allocation >= threshold by its own mmap, returned to the OS when
    freed, so the RSS follows the live tensors (by default glibc keeps freed blocks resident
    and raises its threshold as it goes)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Hand freed memory back to the OS, then reset the peak RSS to the current one."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS (VmHWM)
        return _proc_status("VmHWM") is not None
    except OSError:
        return False


def first_question(chat: VideoChat, config: STTMConfig, repeats: int, memory: PeakMemory):
    """Best of `repeats` first questions on a fresh video prefix (the encoded video is reused):
    (LLM TTFT s, its reply, peak memory of the largest run)."""
    chat.reset_prefix()
    chat.set_config(config)
    best, peaks = None, []
    for _ in range(repeats):
        chat.reset_prefix()
        with memory.measure() as peak:
            reply = chat.ask(QUESTIONS[0])
        peaks.append(peak)
        llm = reply.ttft_s - reply.timings["vision_encoder"]
        if best is None or llm < best[0]:
            best = (llm, reply)
    largest = max(peaks, key=lambda p: p["peak_mib"] or 0)
    return best[0], best[1], largest


def follow_up(chat: VideoChat, repeats: int) -> float:
    """Best TTFT of a second question on the cached prefix (FastV: a re-prefill)."""
    return min(chat.ask(QUESTIONS[1]).ttft_s for _ in range(repeats))


def video_clip(frames: int) -> VideoClip:
    """`frames` frames of the first bundled example that has that many (camera_pan first)."""
    for path in [EXAMPLE] + sorted(examples_dir().glob("*.mp4")):
        if path.exists() and (clip := load_video(path, frames)).num_frames == frames:
            return clip
    rng = np.random.default_rng(0)  # no bundled example that long: smooth random frames
    base = rng.integers(0, 255, (1, 24, 32, 3)).repeat(frames, 0)
    frames_ = np.kron(base, np.ones((1, 16, 16, 1))).astype(np.uint8)
    return VideoClip(frames_, np.arange(frames) / 4.0, 4.0, frames / 4.0, frames, "synthetic")


def configs(loaded, args) -> list[tuple[str, STTMConfig]]:
    """(label, config) of every measured row but the all-tokens reference."""
    layer = args.merge_layer
    def config(method: str, **values) -> STTMConfig:  # the registry's one parse, as the app's
        return STTMConfig.of(method, parse(method, **values), merge_layer=layer)

    rows = [(f"STTM τ {s:.2f}/{t:.2f}", config("sttm", tau_s=s, tau_t=t, root_level=1))
            for s, t in loaded.adapter.paper_thresholds]
    rows += [(f"STTM {b:.0%}", config("sttm_budget", budget=b)) for b in BUDGETS]
    if not args.skip_fastv:
        rows += [(f"FastV {b:.0%}", config("fastv", budget=b)) for b in BUDGETS]
    return rows


def run(args) -> dict:
    device, dtype = default_device_and_dtype(args.device)
    memory = PeakMemory(device)  # first: on CPU it sets how large blocks are allocated
    options = dict(device=device, dtype=dtype, attn_implementation=args.attn,
                   max_pixels=args.max_pixels)
    loaded = (load_model(args.model, **options) if args.model
              else random_model(args.arch, num_layers=args.num_layers, **options))
    text_config = loaded.model.config.get_text_config()
    clip = video_clip(args.frames)
    full = STTMConfig.all_tokens(args.merge_layer)
    chat = VideoChat(loaded, full, num_frames=args.frames, max_new_tokens=1, time_merge=True)
    chat.set_clip(clip)
    encoder_s = chat.ask(QUESTIONS[0]).timings["vision_encoder"]  # also warms everything up
    rows = configs(loaded, args)
    for _, config in rows:
        if not config.query_aware:
            chat.set_config(config)  # re-merges the cached prefix: warms the merge path up
    first_question(chat, full, 1, memory)  # once unmeasured: the RSS settles after the warm-up
    full_ttft, full_reply, full_peak = first_question(chat, full, args.repeats, memory)
    measured = [dict(label="all tokens", method="all", keep_ratio=1.0,
                     tokens=[full_reply.tokens_before, full_reply.tokens_after],
                     ttft_s=round(full_ttft, 4), speedup=1.0, ideal_speedup=1.0, merge_s=None,
                     followup_ttft_s=round(follow_up(chat, args.repeats), 4), **full_peak)]
    for label, config in rows:
        ttft, reply, peak = first_question(chat, config, args.repeats, memory)
        measured.append(dict(
            label=label, method=config.method, keep_ratio=round(reply.keep_ratio, 4),
            tokens=[reply.tokens_before, reply.tokens_after], ttft_s=round(ttft, 4),
            speedup=round(full_ttft / ttft, 2),
            ideal_speedup=round(ideal_speedup(text_config, reply.tokens_before,
                                              reply.tokens_after, args.merge_layer), 2),
            merge_s=round(reply.timings["merge"], 4),
            followup_ttft_s=round(follow_up(chat, args.repeats), 4), **peak))
    return dict(
        model=args.model or f"{args.arch} (random weights{layers_note(args.num_layers)})",
        device=str(device),
        dtype=str(dtype).replace("torch.", ""), attn=args.attn, frames=clip.num_frames,
        prompt_tokens=full_reply.tokens_before, merge_layer=args.merge_layer,
        threads=torch.get_num_threads(), encoder_s=round(encoder_s, 4), rows=measured)


def layers_note(num_layers: int | None) -> str:
    return "" if num_layers is None else f", {num_layers} decoder layers only"


def print_table(result: dict) -> None:
    print(f"{result['model']} on {result['device']} ({result['dtype']}, {result['attn']}, "
          f"{result['threads']} threads), {result['frames']} frames, {result['prompt_tokens']} "
          f"prompt tokens, merge layer {result['merge_layer']}; vision encoder "
          f"{result['encoder_s']:.2f} s (not in TTFT)")
    print(f"{'method':17} {'keep':>6} {'tokens':>13} {'TTFT s':>8} {'speed-up':>9} "
          f"{'FLOP ideal':>10} {'merge s':>8} {'peak MiB':>9} {'+prefill':>9} "
          f"{'follow-up s':>12}")
    for r in result["rows"]:
        tokens = f"{r['tokens'][0]}->{r['tokens'][1]}"
        merge = "" if r["merge_s"] is None else f"{r['merge_s']:.3f}"
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']}"
        rise = "" if r["prefill_mib"] is None else f"{r['prefill_mib']}"
        print(f"{r['label']:17} {r['keep_ratio']:6.3f} {tokens:>13} {r['ttft_s']:8.3f} "
              f"{r['speedup']:9.2f} {r['ideal_speedup']:10.2f} {merge:>8} {peak:>9} {rise:>9} "
              f"{r['followup_ttft_s']:12.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="llava-onevision-qwen2-0.5b-ov-hf",
                        choices=list(ARCHITECTURES))
    parser.add_argument("--model", help="a real checkpoint (hub id or path) instead of --arch")
    parser.add_argument("--num-layers", type=int, default=None,
                        help="--arch with only this many decoder layers (checks a big shape on "
                             "a small machine; TTFTs then are not the model's)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="Qwen-VL: at most this many pixels per frame (default: the video "
                             "processor's range)")
    parser.add_argument("--merge-layer", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"],
                        help="attention implementation (flash_attention_2: CUDA + flash-attn)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="best of N per measurement (default 1 on CPU, 3 on GPU)")
    parser.add_argument("--skip-fastv", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 3 if torch.cuda.is_available() and args.device != "cpu" else 1
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
