"""The model's work on a ZeroGPU Space: each call in a GPU worker, the session kept here.

ZeroGPU (Hugging Face's free GPU hosting) runs every `@spaces.GPU` call in a worker process
forked from the app: the call's arguments and results are pickled, whatever the call builds
stays in the worker, and the worker may be gone before the next call. The model is loaded on
`cuda` before the UI is built (the main process only emulates CUDA), so every worker has it.

What lives where, and why: a session (its video, features and evidence, the chats with their
encoded video and merged video prefix) lives in the main process, on the CPU, in the page's
gr.State. A model event ships the session to the worker and gets it back with the outputs:

    main: handler(state, *inputs) -> run(session, ...) ----pickled----> worker
          session.take(returned)  <----pickled: session (CPU), outputs-- session.attach(engine)
                                                                         handler's work

so the merged prefix's KV cache built by one question is the one the next question reuses
(a reply says "cached video prefix"), though they ran in two workers. The cached tensors
travel as torch.save blobs that load on the CPU (VideoPrefix.__getstate__): no CUDA tensor is
ever returned. Budget tables and the page's other requests never touch the model and stay in
the main process. Each call asks for the GPU time its work needs (`seconds`).

Off a Space (no `spaces` package, or `spaces` outside ZeroGPU, where its decorator runs the
call in place) the same code runs with the session in place: nothing is pickled.
"""
from __future__ import annotations

import inspect
import logging
import math
from numbers import Real

log = logging.getLogger(__name__)

# GPU seconds asked for, generous for a 7B model on a ZeroGPU half card (the slowest case):
START_S = 20.0        # a worker's start (the model moved to its GPU), a video decoded
FRAME_S = 0.75        # per frame: vision encoder + prefill of its tokens
TOKEN_S = 0.06        # per generated token
QUESTION_S = 3.0      # per scored question (its prefill and a short answer), each way
MAX_S = 120           # a free account's longest call


def zero_gpu():
    """`spaces.GPU` on a Hugging Face Space (the `spaces` package), else None."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces.GPU


def seconds(name: str, engine, session, args: tuple) -> int:
    """GPU seconds to ask for handler `name` (sttm_viz.handlers) on this session's video;
    `args` are the handler's inputs (a load's second one is its number of frames)."""
    frames = session.clip.num_frames if session is not None and session.clip else engine.max_frames
    if name == "load" and len(args) > 1 and isinstance(args[1], Real) and args[1] > 0:
        frames = min(args[1], engine.max_frames)
    prefix = FRAME_S * frames
    reply = TOKEN_S * engine.max_new_tokens
    questions = len(session.qa) if session is not None else 0
    work = {"load": prefix, "change_layer": prefix,
            "chat": prefix + 2 * reply,                  # with "compare": two prefixes, replies
            "measure_ttft": 8 * prefix,                   # a warm-up and 3 rounds, both ways
            "score": 2 * prefix + 2 * QUESTION_S * questions}.get(name, prefix)
    return int(min(MAX_S, math.ceil(START_S + work)))


def in_worker(engine, gpu, name: str, run):
    """`run(session, *args)` (a function or a generator) as a GPU call: the session goes to
    the worker and its new state comes back into the caller's session (see the module's
    docstring). gpu: `spaces.GPU` (or a stand-in with its semantics); None: run in place."""
    if gpu is None:
        return run

    def duration(session, *args):
        return seconds(name, engine, session, args)

    if inspect.isgeneratorfunction(run):
        @gpu(duration=duration)
        def worker(session, *args):  # yields (None, output)..., then (session, None)
            _arrived(session, engine)
            for output in run(session, *args):
                yield None, output
            yield session, None

        def streamed(session, *args):
            engine.touch(session)  # its caches stay here; idle sessions beyond the cap drop theirs
            for returned, output in worker(session, *args):
                if returned is None:
                    yield output
                else:
                    session.take(returned)
        return streamed

    @gpu(duration=duration)
    def worker(session, *args):
        _arrived(session, engine)
        return session, run(session, *args)

    def called(session, *args):
        engine.touch(session)
        returned, output = worker(session, *args)
        session.take(returned)
        return output
    return called


def _arrived(session, engine) -> None:
    """A session unpickled in a worker has no engine yet; one passed in place keeps its own."""
    if session.engine is None:
        session.attach(engine.for_worker())
