"""A stand-in for `spaces.GPU` with ZeroGPU's semantics, on the CPU.

What the real decorator (the `spaces` package, 0.51) does with a call, and so this one:
- it runs in a worker process forked from the app (the model, loaded before, is there);
- its arguments and its results (each item, for a generator) cross as pickles: what cannot be
  pickled fails the call, and the caller gets copies, never the worker's objects;
- the worker's memory is gone afterwards (here: a new worker for every call);
- a gr.Error raised in the worker reaches the page with its message; any other exception
  arrives only as "ZeroGPU worker error" and its class name;
- `duration` (seconds, or a callable of the call's arguments) is asked before the call.
Every call is recorded in `CALLS` (name, duration asked, worker pid, bytes each way).
"""
from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import sys
import traceback
from dataclasses import dataclass
from functools import wraps

import gradio as gr

_fork = multiprocessing.get_context("fork")


@dataclass
class Call:
    name: str
    duration: float | None
    pid: int
    sent: int       # bytes of the pickled arguments
    received: int   # bytes of the pickled results


CALLS: list[Call] = []


def GPU(task=None, *, duration=None, size=None):  # noqa: N802 (the real decorator's name)
    if task is None:
        return lambda fn: GPU(fn, duration=duration, size=size)
    generator = inspect.isgeneratorfunction(task)

    @wraps(task)
    def call(*args, **kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        sent = pickle.dumps((args, kwargs))
        record = Call(task.__name__, seconds, 0, len(sent), 0)
        CALLS.append(record)
        receive, send = _fork.Pipe(duplex=False)
        worker = _fork.Process(target=_work, args=(task, generator, sent, send), daemon=True)
        worker.start()
        send.close()
        record.pid = worker.pid
        try:
            while True:
                kind, blob = receive.recv_bytes(), receive.recv_bytes()
                record.received += len(blob)
                if kind == b"item":
                    yield pickle.loads(blob)
                elif kind == b"error":
                    raise _error(*pickle.loads(blob))
                else:
                    return
        finally:
            receive.close()
            worker.join(timeout=30)

    if generator:
        return call

    @wraps(task)
    def single(*args, **kwargs):
        (result,) = call(*args, **kwargs)
        return result
    return single


def _work(task, generator: bool, sent: bytes, send) -> None:
    """The worker: unpickle the arguments, run, pickle each result back; then exit at once
    (os._exit: nothing of the parent's, threads or atexit handlers, runs here)."""
    try:
        args, kwargs = pickle.loads(sent)
        results = task(*args, **kwargs)
        for item in (results if generator else [results]):
            _send(send, b"item", pickle.dumps(item))
        _send(send, b"end", b"")
    except BaseException as err:  # noqa: BLE001 (everything goes back to the caller)
        message = str(err) if isinstance(err, gr.Error) else None
        _send(send, b"error", pickle.dumps((type(err).__name__, message,
                                            traceback.format_exc())))
    finally:
        send.close()
        os._exit(0)


def _send(pipe, kind: bytes, blob: bytes) -> None:
    pipe.send_bytes(kind)
    pipe.send_bytes(blob)


def _error(cls: str, message: str | None, trace: str) -> Exception:
    if message is not None:
        return gr.Error(message)
    sys.stderr.write(trace)  # the real one prints it in the Space's logs; the page sees less
    return gr.Error(f"ZeroGPU worker error: {cls}")
