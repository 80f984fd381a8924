"""How much memory one app session holds, and that the session cap bounds it.

    python benchmarks/session_memory.py                                   # tiny random LLaVA-OV
    python benchmarks/session_memory.py --model llava-onevision-qwen2-0.5b-ov-hf --frames 16
    python benchmarks/session_memory.py --model /path/to/checkpoint --sessions 8 --json

The app runs in this process on CPU. --model is a checkpoint path, or the name of an
architecture `build_random_checkpoint` knows (the real layer sizes with random weights: memory
depends on the shapes, not the weights). New browser sessions (gradio_client) each load a
bundled example and ask one question; after each one the process's resident memory is read
(after garbage collection and malloc_trim). With max_cached_sessions = C, the first C sessions
keep their KV caches; every later one drops the caches of the longest-idle one, so the growth
per session after C is what an idle session holds, and the growth up to C adds its caches.
With max_sessions = S, sessions beyond S close the longest-idle one: growth stops (Gradio's
records of the page payload, 4 x S of them, aside).
Printed: resident MB after each session, MB per idle session, MB of one session's KV caches.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import socket
import statistics
import tempfile
from pathlib import Path

NAMES = ["static", "fast_motion", "camera_pan", "scene_cuts", "needle_count", "needle_order",
         "needle_word", "text_overlay"]


def resident_mb() -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_for(model: str, frames: int, sessions: int, cached: int, max_pixels: int | None):
    from sttm_core.models.checkpoints import build_random_checkpoint, load_model
    from sttm_viz.session import Engine

    path = Path(model)
    if not path.exists():  # an architecture name: its shapes with random weights
        path = build_random_checkpoint(model, Path(tempfile.mkdtemp()) / model)
    return Engine(load_model(str(path), device="cpu", max_pixels=max_pixels),
                  max_frames=max(frames, 64), max_sessions=sessions, max_cached_sessions=cached,
                  max_new_tokens=8)


def run(engine, frames: int, count: int) -> list[float]:
    from gradio_client import Client, handle_file
    from sttm_core.examples import examples_dir
    from sttm_viz.ui import build_demo

    port = free_port()
    demo = build_demo(engine, default_frames=frames)
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True, share=False, _frontend=False)  # no "is localhost up?" probe
    client = Client(f"http://127.0.0.1:{port}/", verbose=False,
                    httpx_kwargs={"timeout": 900})  # a real-size model on a CPU is slow
    controls = ["Thresholds", 0.8, 0.6, True, 0.3, "4×4", 2, "STTM"]
    memory = [resident_mb()]
    try:
        for i in range(count):
            client.reset_session()  # a new browser session
            video = handle_file(str(examples_dir() / f"{NAMES[i % len(NAMES)]}.mp4"))
            out = client.predict(video, None, frames, *controls, api_name="/load")
            root = out[1]["value"]
            client.predict("What is shown?", [], False, *controls[:5], root, *controls[6:],
                           api_name="/chat")
            memory.append(resident_mb())
    finally:
        demo.close()
    return memory


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llava-onevision-14x14")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=8, help="new sessions to open")
    parser.add_argument("--max-sessions", type=int, default=32)
    parser.add_argument("--cached", type=int, default=2, help="max_cached_sessions")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engine = engine_for(args.model, args.frames, args.max_sessions, args.cached, args.max_pixels)
    memory = run(engine, args.frames, args.sessions)
    growth = [b - a for a, b in zip(memory, memory[1:])]  # per new session
    idle = statistics.median(growth[args.cached + 1:]) if len(growth) > args.cached + 1 else None
    first = statistics.median(growth[1:args.cached]) if args.cached > 1 else growth[0]
    result = dict(model=args.model, frames=args.frames, resident_mb=[round(m, 1) for m in memory],
                  idle_session_mb=idle and round(idle, 1),
                  kv_cache_mb=idle is not None and round(first - idle, 1) or None)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.model}, {args.frames} frames, max_cached_sessions {args.cached}, "
          f"max_sessions {args.max_sessions}")
    print("resident MB: start " + ", ".join(f"{m:.0f}" for m in memory))
    print(f"per idle session: {result['idle_session_mb']} MB; "
          f"a session's KV caches: {result['kv_cache_mb']} MB")


if __name__ == "__main__":
    main()
