"""Time to first token: all video tokens vs STTM at the paper's budgets, vs the FLOP ideal,
and a follow-up question on the cached video prefix vs re-prefilling the video.

    python benchmarks/ttft.py                                  # llava-onevision-qwen2-0.5b shapes
    python benchmarks/ttft.py --arch Qwen2.5-VL-3B-Instruct --frames 16
    python benchmarks/ttft.py --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf  # real weights
    python benchmarks/ttft.py --json

Without --model the named architecture is built from its config numbers with random weights
(nothing is downloaded); speed depends on shapes and token counts, not on weight values.
TTFT here is the language model's: prefill of the prompt (system, video tokens, question) up
to the first generated token. The vision encoder, which STTM does not change, is timed apart.
STTM runs use automatic thresholds for the budget (keep_ratio) at merge layer 2, root level 1.
FastV (query-aware: it must re-prefill the video for every question) runs at the same budgets.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from sttm_core import STTMConfig
from sttm_core.chat import VideoChat
from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import default_device_and_dtype, load_model, random_model
from sttm_core.models.registry import ARCHITECTURES
from sttm_core.video import VideoClip, load_video

BUDGETS = (0.5, 0.3, 0.15)
QUESTIONS = ("What is happening in this video? Answer in one sentence.",
             "What colour is the largest object?")
EXAMPLE = examples_dir() / "camera_pan.mp4"


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


def first_question(chat: VideoChat, config: STTMConfig, repeats: int):
    """Best of `repeats` first questions on a fresh video prefix (the encoded video is reused):
    (LLM TTFT s, reply)."""
    chat.set_config(config)
    best = None
    for _ in range(repeats):
        chat.reset_prefix()
        reply = chat.ask(QUESTIONS[0])
        llm = reply.ttft_s - reply.timings["vision_encoder"]
        if best is None or llm < best[0]:
            best = (llm, reply)
    return best


def follow_up(chat: VideoChat, repeats: int) -> float:
    """Best TTFT of a second question on the cached prefix."""
    return min(chat.ask(QUESTIONS[1]).ttft_s for _ in range(repeats))


def video_clip(frames: int) -> VideoClip:
    if EXAMPLE.exists():
        return load_video(EXAMPLE, frames)
    rng = np.random.default_rng(0)  # no bundled example: smooth random frames
    base = rng.integers(0, 255, (1, 24, 32, 3)).repeat(frames, 0)
    frames_ = np.kron(base, np.ones((1, 16, 16, 1))).astype(np.uint8)
    return VideoClip(frames_, np.arange(frames) / 4.0, 4.0, frames / 4.0, frames, "synthetic")


def run(args) -> dict:
    device, dtype = default_device_and_dtype(args.device)
    loaded = (load_model(args.model, device=device, dtype=dtype) if args.model
              else random_model(args.arch, device=device, dtype=dtype))
    text_config = loaded.model.config.get_text_config()
    clip = video_clip(args.frames)
    options = dict(num_frames=args.frames, max_new_tokens=1, max_pixels=args.max_pixels)

    chat = VideoChat(loaded, STTMConfig.all_tokens(merge_layer=args.merge_layer), **options)
    chat.set_clip(clip)
    encoder_s = chat.ask(QUESTIONS[0]).timings["vision_encoder"]  # also warms everything up
    full_ttft, full_reply = first_question(chat, STTMConfig.all_tokens(args.merge_layer),
                                           args.repeats)
    full_followup = follow_up(chat, args.repeats)
    runs, fastv = [], []
    for budget in BUDGETS:
        config = STTMConfig(method="sttm_budget", keep_ratio=budget, merge_layer=args.merge_layer)
        ttft, reply = first_question(chat, config, args.repeats)
        runs.append(dict(
            target=budget, keep_ratio=round(reply.keep_ratio, 4), ttft_s=round(ttft, 4),
            speedup=round(full_ttft / ttft, 2), tokens=[reply.tokens_before, reply.tokens_after],
            ideal_speedup=round(ideal_speedup(text_config, reply.tokens_before,
                                              reply.tokens_after, args.merge_layer), 2),
            followup_ttft_s=round(follow_up(chat, args.repeats), 4)))
        if not args.skip_fastv:
            config = STTMConfig(keep_ratio=budget, method="fastv", merge_layer=args.merge_layer)
            ttft, reply = first_question(chat, config, args.repeats)
            second = chat.ask(QUESTIONS[1])  # no cache to reuse: the video is prefilled again
            fastv.append(dict(target=budget, keep_ratio=round(reply.keep_ratio, 4),
                              ttft_s=round(ttft, 4), speedup=round(full_ttft / ttft, 2),
                              followup_ttft_s=round(second.ttft_s, 4)))
    sttm30 = min(runs, key=lambda r: abs(r["target"] - 0.3))
    return dict(
        model=args.model or f"{args.arch} (random weights)", device=str(device),
        dtype=str(dtype).replace("torch.", ""), frames=clip.num_frames,
        prompt_tokens=full_reply.tokens_before, merge_layer=args.merge_layer,
        threads=torch.get_num_threads(), encoder_s=round(encoder_s, 4),
        full_ttft_s=round(full_ttft, 4), full_followup_ttft_s=round(full_followup, 4),
        runs=runs, followup_ttft_s=sttm30["followup_ttft_s"],
        reprefill_ttft_s=sttm30["ttft_s"], fastv=fastv)


def print_table(result: dict) -> None:
    print(f"{result['model']} on {result['device']} ({result['dtype']}, {result['threads']} "
          f"threads), {result['frames']} frames, {result['prompt_tokens']} prompt tokens, "
          f"merge layer {result['merge_layer']}; vision encoder {result['encoder_s']:.2f} s "
          "(not in TTFT)")
    print(f"{'method':8} {'keep':>6} {'tokens':>12} {'TTFT s':>8} {'speed-up':>9} "
          f"{'FLOP ideal':>10} {'follow-up TTFT s':>17}")
    print(f"{'all':8} {1.0:6.3f} {result['prompt_tokens']:>12} {result['full_ttft_s']:8.3f} "
          f"{1.0:9.2f} {1.0:10.2f} {result['full_followup_ttft_s']:17.3f}")
    for r in result["runs"]:
        tokens = f"{r['tokens'][0]}->{r['tokens'][1]}"
        print(f"{'STTM':8} {r['keep_ratio']:6.3f} {tokens:>12} {r['ttft_s']:8.3f} "
              f"{r['speedup']:9.2f} {r['ideal_speedup']:10.2f} {r['followup_ttft_s']:17.3f}")
    for r in result["fastv"]:
        print(f"{'FastV':8} {r['keep_ratio']:6.3f} {'':>12} {r['ttft_s']:8.3f} "
              f"{r['speedup']:9.2f} {'':>10} {r['followup_ttft_s']:17.3f}")
    print(f"follow-up on the cached STTM prefix: {result['followup_ttft_s']:.3f} s vs "
          f"re-prefilling the video: {result['reprefill_ttft_s']:.3f} s "
          f"({result['followup_ttft_s'] / result['reprefill_ttft_s']:.1%})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="llava-onevision-qwen2-0.5b-ov-hf",
                        choices=list(ARCHITECTURES))
    parser.add_argument("--model", help="a real checkpoint (hub id or path) instead of --arch")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="Qwen-VL: pixels per frame (default: the video processor's)")
    parser.add_argument("--merge-layer", type=int, default=2)
    parser.add_argument("--device", default=None)
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
