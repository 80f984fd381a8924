"""Threshold sweeps: keep ratio, accuracy, agreement, first-token KL and TTFT of STTM and its
baselines over a grid of settings, resumable, sharded over processes with accelerate.

    python -m sttm_core.sweep assets/examples --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf \\
        --tau-s 0.7,0.8,0.9 --tau-t 0.5,0.6,none --budgets 0.5,0.3,0.15
    python -m sttm_core.sweep assets/examples --features pixel          # no model: merge only
    accelerate launch --multi_gpu --num_processes 4 -m sttm_core.sweep QA --model ID

Flow: QA items -> videos (sorted; this process takes videos[rank::N]) -> cells (method,
setting, video) not yet in DIR/results.csv -> each cell runs and appends its rows -> barrier
-> the main process merges the per-process files, writes summary.csv and the plots, prints a
table and the recommended setting.

With a model, a cell's VideoChat answers its video's questions (`answer_questions`): one row
per question. The all-token reference ("all") runs first for each video and its first-token
logits stay in memory for that video only, to give every other cell `agree` and `kl`.
With `--features pixel` (per-patch pixels, `sttm_core.pixels`) a cell is one merge: one row
with keep ratios only.
"""
from .cli import main, parse_args
from .plan import Setting, plan_settings
from .report import format_table, recommend, summarize
from .results import KEY, MODEL_COLUMNS, PIXEL_COLUMNS
from .runner import Outcome, run

__all__ = ["KEY", "MODEL_COLUMNS", "Outcome", "PIXEL_COLUMNS", "Setting", "format_table", "main",
           "parse_args", "plan_settings", "recommend", "run", "summarize"]
