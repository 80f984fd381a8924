"""Where the bundled example videos and their QA set are: `assets/examples` of a checkout, or
the copy an installed package carries (the `sttm_assets` package of the wheel)."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def examples_dir() -> Path:
    """The folder of the bundled examples (*.mp4 and qa.jsonl)."""
    checkout = Path(__file__).resolve().parents[1] / "assets" / "examples"
    if checkout.is_dir():
        return checkout
    return Path(str(files("sttm_assets") / "examples"))
