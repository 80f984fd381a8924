"""Shared fixtures. Lanes (markers, registered in pyproject.toml):
core (the engine, video, QA, drawing, sweeps without a model), model (tiny random-weight
models), app (the running Gradio app), browser (headless Chromium on the app).
`python -m pytest -m core` is the quick lane."""
import os
import socket

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run, so CI never fails by chance;
# HYPOTHESIS_PROFILE=explore searches afresh with 10x the examples.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=600, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# Tiny models run in milliseconds; a second intra-op thread only adds scheduling noise here.
torch.set_num_threads(1)

TINY = ["tiny-llava-onevision", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl"]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Random-weight checkpoints of each family, saved once and loaded via from_pretrained."""
    from sttm_core.models.checkpoints import build_random_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build_random_checkpoint(name, root / name) for name in TINY}


@pytest.fixture(params=TINY)
def tiny(request, tiny_checkpoints):
    """A freshly loaded tiny model of one family (sdpa attention)."""
    from sttm_core.models.checkpoints import load_model

    return load_model(str(tiny_checkpoints[request.param]), device="cpu")


@pytest.fixture(scope="session")
def examples():
    """The bundled example videos and QA set, found as an installed package finds them."""
    from sttm_core.examples import examples_dir

    return examples_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port nothing listens on right now."""
    return _free_port()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (no browser download), one per test module; a
    test that needs it is skipped, saying why, where it is missing."""
    from pathlib import Path

    from support.page import CHROMIUM, chromium

    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def serve():
    """serve(engine, frames, **build_demo options) -> URL of the app running on its own port;
    closed at the end."""
    from sttm_viz.ui import build_demo

    demos = []

    def start(engine, frames: int = 8, **options) -> str:
        port = _free_port()
        demo = build_demo(engine, default_frames=frames, **options)
        demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                            quiet=True)
        demos.append(demo)
        return f"http://127.0.0.1:{port}/"

    yield start
    for demo in demos:
        demo.close()
