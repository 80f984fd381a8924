"""STTM Studio: args -> load the model (or explain why not and fall back) -> build the UI -> launch.

    python app.py                                   # LLaVA-OneVision 7B on a GPU, 0.5B on a CPU
                                                    # (or the fallback, saying why)
    sttm-studio --model Qwen/Qwen2.5-VL-3B-Instruct --device cuda
    sttm-studio --model /path/to/checkpoint --frames 32 --port 7860 --share
    sttm-studio --no-model                          # merge pixels only, no model at all
"""
from __future__ import annotations

import argparse
import logging
import sys

# the paper's LLaVA-OneVision-7B where there is a GPU (a ZeroGPU Space preloads it), else 0.5B
DEFAULT_MODELS = {"cuda": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
                  "cpu": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"}
log = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sttm-studio",
                                     description="STTM Studio: see, tune and use STTM merging.")
    parser.add_argument("--model", default=None,
                        help="hub id or local path of a supported video LLM (default: "
                             f"{DEFAULT_MODELS['cuda']} on a GPU, {DEFAULT_MODELS['cpu']} "
                             "on a CPU)")
    parser.add_argument("--no-model", action="store_true",
                        help="do not load a model: merge per-patch pixel features only")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if present)")
    parser.add_argument("--frames", type=int, default=16, help="default frames per video")
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=600, help="longest video accepted")
    parser.add_argument("--max-upload-mb", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=256,
                        help="longest chat reply, in tokens")
    parser.add_argument("--max-sessions", type=int, default=32,
                        help="browser sessions that keep a video in memory; the longest idle "
                             "beyond are closed (told to load again)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="Qwen-VL: at most this many pixels per frame (default: the "
                             "checkpoint's range); other families refuse it")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the checkpoint's own code to run (off by default)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default=None, help="e.g. 0.0.0.0 to serve on the network")
    parser.add_argument("--share", action="store_true", help="a public gradio.live link")
    return parser.parse_args(argv)


def load_engine(args: argparse.Namespace):
    """The model every session shares (or the reason there is none)."""
    from .session import Engine

    limits = dict(max_seconds=args.max_seconds, max_frames=args.max_frames,
                  max_sessions=args.max_sessions, max_new_tokens=args.max_new_tokens)
    if args.no_model:
        return Engine(None, "started with --no-model.", **limits)
    from sttm_core import ModelLoadError, UnsupportedModelError, load_model
    from sttm_core.models.checkpoints import default_device_and_dtype

    device, _ = default_device_and_dtype(args.device)  # a ZeroGPU Space: cuda, here, at start
    name = args.model or DEFAULT_MODELS["cuda" if str(device).startswith("cuda") else "cpu"]
    try:
        loaded = load_model(name, device=device, trust_remote_code=args.trust_remote_code,
                            max_pixels=args.max_pixels)
    except (ModelLoadError, UnsupportedModelError) as err:
        reason = str(err).splitlines()[0]
        log.warning("running without a model: %s", err)
        return Engine(None, f"{reason}. Start with `--model <hub id or local path>` once the "
                            "weights are downloaded (`huggingface-cli download "
                            f"{name}`).", **limits)
    return Engine(loaded, **limits)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:  # sttm-studio export OUT_DIR [VIDEO…]: the lab as a static site
        from .export import main as export
        return export(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:  # the app's own dependencies come with the `app` extra
        from .ui import build_demo
    except ImportError as err:
        sys.exit(f"sttm-studio needs {err.name}: pip install 'sttm-studio[app]'")
    from sttm_core.models.base import FrameSizeError

    try:
        engine = load_engine(args)
    except FrameSizeError as err:  # an option the model refuses: --max-pixels on fixed-size frames
        sys.exit(f"sttm-studio: {err}")
    demo = build_demo(engine, default_frames=min(args.frames, args.max_frames))
    demo.queue(default_concurrency_limit=1, max_size=64).launch(
        server_name=args.host, server_port=args.port, share=args.share,
        max_file_size=f"{args.max_upload_mb}mb")

