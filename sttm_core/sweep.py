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
from __future__ import annotations

import argparse
import csv
import datetime
import logging
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import torch

from .config import STTMConfig
from .qa import QAItem, load_qa

log = logging.getLogger(__name__)

BASELINES = ("uniform", "spatial_only", "temporal_only", "fastv")
METHOD_ORDER = ("all", "sttm", *BASELINES)
PIXEL_GRID = (14, 14)  # patch grid of the model-free features (LLaVA-OneVision's), as in the app
# A process that finishes its shard early waits this long at the final barrier for the others
# (torch's default, 30 min, is shorter than one shard of a big model's sweep).
BARRIER_TIMEOUT = datetime.timedelta(hours=24)
KEY = ("method", "tau_s", "tau_t", "budget", "video", "question_id")
MODEL_COLUMNS = KEY + ("category", "task", "keep_ratio", "spatial_keep_ratio", "tokens_before",
                       "tokens_after", "tau_s_used", "tau_t_used", "ttft_s", "cache_reused",
                       "choice", "answer", "correct", "agree", "kl")
PIXEL_COLUMNS = KEY + ("category", "frames", "keep_ratio", "spatial_keep_ratio", "tokens_before",
                       "tokens_after", "tau_s_used", "tau_t_used", "merge_s")


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One reduction setting: a (tauS, tauT) grid point, a token budget, or all tokens."""

    method: str                      # "all", "sttm" or one of BASELINES
    tau_s: float | None = None       # grid point: tauS
    tau_t: float | None = None       # grid point: tauT (None = temporal merging off)
    budget: float | None = None      # keep ratio asked for; tauS/tauT chosen per video

    @property
    def is_grid(self) -> bool:
        return self.tau_s is not None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(method, tau_s, tau_t, budget) as written in the CSV files."""
        tau_t = ("none" if self.tau_t is None else _fmt(self.tau_t)) if self.is_grid else ""
        return self.method, _fmt(self.tau_s), tau_t, _fmt(self.budget)

    @property
    def label(self) -> str:
        if self.method == "all":
            return "all tokens"
        name = "STTM" if self.method == "sttm" else self.method
        if self.is_grid:
            tau_t = "off" if self.tau_t is None else f"{self.tau_t:g}"
            return f"{name} τS {self.tau_s:g} τT {tau_t}"
        return f"{name} {self.budget:.0%}"

    def config(self, root_level: int, merge_layer: int) -> STTMConfig:
        if self.method == "all":
            return STTMConfig.disabled(merge_layer)
        if self.is_grid:
            return STTMConfig(self.tau_s, self.tau_t, root_level, merge_layer)
        return STTMConfig(root_level=root_level, merge_layer=merge_layer,
                          keep_ratio=self.budget, method=self.method)


def plan_settings(methods, tau_s, tau_t, budgets, reference: bool) -> list[Setting]:
    """The settings of a sweep: all tokens first (when `reference`), STTM at every grid point
    (tau_s x tau_t) and every budget, each baseline at every budget."""
    settings = [Setting("all")] if reference else []
    if "sttm" in methods:
        settings += [Setting("sttm", s, t) for s, t in product(tau_s, tau_t)]
    for method in (m for m in METHOD_ORDER[1:] if m in methods):
        settings += [Setting(method, budget=b) for b in budgets]
    return settings


def _fmt(x) -> str:
    """A number as written in the CSV files ('' for None): short and stable across runs."""
    if x is None or x == "":
        return ""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.6g}" if isinstance(x, float) else str(x)


# ----------------------------------------------------------------------------- results files

def results_path(out: Path, rank: int | None = None) -> Path:
    return out / ("results.csv" if rank is None else f"results.part{rank}.csv")


def read_rows(out: Path, columns: tuple[str, ...]) -> list[dict]:
    """Rows of results.csv and of any per-process part files an interrupted run left, in that
    order. A row cut short by an interruption (fields missing) is dropped."""
    rows = []
    for path in [results_path(out), *sorted(out.glob("results.part*.csv"))]:
        rows += _read_csv(path, columns)
    return rows


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != columns:
            raise ValueError(f"{path} has columns {reader.fieldnames}, not those of this kind of "
                             f"sweep ({', '.join(columns)}); use another --out folder")
        rows = [row for row in reader if None not in row.values() and None not in row]
    return rows


def append_rows(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Append rows (header first when the file is new), flushed to disk at once."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows({c: _fmt(row.get(c)) for c in columns} for row in rows)
        f.flush()
        os.fsync(f.fileno())


def merge_results(out: Path, columns: tuple[str, ...]) -> list[dict]:
    """Fold the part files into results.csv: one row per KEY (the last written wins, so a
    recomputed cell replaces a cut-off one), sorted; the part files are removed."""
    parts = sorted(out.glob("results.part*.csv"))
    rows = {tuple(r[k] for k in KEY): r for r in read_rows(out, columns)}
    ordered = sorted(rows.values(), key=_row_order)
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(ordered)
    tmp.replace(results_path(out))  # atomic: an interruption leaves the old file or the new
    for part in parts:
        part.unlink()
    return ordered


def _row_order(row: dict):
    method = row["method"]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return row["video"], rank, row["budget"], row["tau_s"], row["tau_t"], row["question_id"]


def done_cells(rows: list[dict]) -> dict[tuple, set[str]]:
    """(method, tau_s, tau_t, budget, video) -> question ids that have a row."""
    done = defaultdict(set)
    for row in rows:
        done[tuple(row[k] for k in KEY[:5])].add(row["question_id"])
    return done


# ----------------------------------------------------------------------------- videos and cells

@dataclass
class Video:
    """One video of the QA set and its questions."""

    key: str                  # path relative to the QA folder (stable across working dirs)
    path: Path
    items: list[QAItem]

    @property
    def category(self) -> str:
        """The most common category of its questions ('' when none has one)."""
        counts = Counter(i.category for i in self.items if i.category)
        return counts.most_common(1)[0][0] if counts else ""


@dataclass
class Cell:
    setting: Setting
    video: Video

    @property
    def key(self) -> tuple:
        return (*self.setting.key, self.video.key)


def group_videos(items: list[QAItem], root: Path) -> list[Video]:
    """Questions grouped by video, videos sorted by key (the shard order)."""
    groups: dict[str, Video] = {}
    for item in items:
        key = _video_key(item.video, root)
        groups.setdefault(key, Video(key, item.video, [])).items.append(item)
    return [groups[k] for k in sorted(groups)]


def _video_key(video: Path, root: Path) -> str:
    try:
        return video.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(video.resolve())


def pending_cells(videos: list[Video], settings: list[Setting], rows: list[dict],
                  pixel: bool) -> list[Cell]:
    """Cells some of whose rows are missing, in video order then setting order."""
    done = done_cells(rows)
    cells = []
    for video in videos:
        wanted = {""} if pixel else {i.id for i in video.items}
        cells += [Cell(s, video) for s in settings
                  if not wanted <= done.get((*s.key, video.key), set())]
    return cells


# ----------------------------------------------------------------------------- pixel cells

def run_pixel_video(video: Video, cells: list[Cell], args) -> list[list[dict]]:
    """Merge one video's per-patch pixel features at each cell's setting: one row per cell."""
    from .merge import VideoTokenMerger
    from .pixels import pixel_patch_features
    from .video import load_video

    clip = load_video(video.path, args.frames)
    merger = VideoTokenMerger(pixel_patch_features(clip.frames, PIXEL_GRID))  # pyramid built once
    out = []
    for cell in cells:
        start = time.perf_counter()
        res = cell.setting.config(args.root_level, args.merge_layer).merge(merger)
        out.append([dict(zip(KEY, (*cell.key, "")), category=video.category,
                         frames=clip.num_frames, merge_s=time.perf_counter() - start,
                         **_merge_columns(res))])
    return out


def _merge_columns(res) -> dict:
    """Keep ratios, token counts and the thresholds a MergeResult (or None: nothing merged)
    reports."""
    if res is None:
        return dict(keep_ratio=1.0, spatial_keep_ratio=1.0, tau_s_used="", tau_t_used="")
    return dict(keep_ratio=res.keep_ratio, spatial_keep_ratio=res.spatial_keep_ratio,
                tokens_before=res.token_map.numel(), tokens_after=res.num_tokens,
                tau_s_used=float(res.spatial_threshold),
                tau_t_used="none" if res.temporal_threshold is None
                else float(res.temporal_threshold))


# ----------------------------------------------------------------------------- model cells

def _recording_chat_class():
    """VideoChat that keeps each Reply and the merge behind it (answer_questions returns only
    text and choice), and decodes and encodes a video once for all cells: a repeated
    load_video of the same video keeps the clip, so each cell re-runs only the LLM prefill."""
    from .chat import VideoChat

    class RecordingChat(VideoChat):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.records = []      # (Reply, MergeResult | None) per ask, in order
            self._loaded_from = None

        def load_video(self, path, num_frames=None):
            source = (str(path), num_frames or self.num_frames)
            if self.clip is not None and source == self._loaded_from:
                self.set_clip(self.clip)  # same clip object: its encoder output is kept
                return self.clip
            self._loaded_from = source
            return super().load_video(path, num_frames)

        def ask(self, *args, **kwargs):
            reply = super().ask(*args, **kwargs)
            self.records.append((reply, self.merge_result))
            return reply

    return RecordingChat


def run_model_video(loaded, video: Video, cells: list[Cell], reference_done: bool,
                    args) -> list[list[dict]]:
    """Answer one video's questions at each cell's setting: one row list per cell. The
    all-token answers come first (recomputed, not written, when `reference_done`)."""
    chat = _recording_chat_class()(loaded, STTMConfig.disabled(args.merge_layer),
                                   num_frames=args.frames, max_pixels=args.max_pixels,
                                   max_new_tokens=args.max_new_tokens)
    if reference_done:
        log.info("%s: re-running all tokens for agree / kl", video.key)
    reference = _answer_cell(chat, Setting("all"), video, args)
    by_id = {a.item.id: a for a, _ in reference}
    out = []
    for cell in cells:
        answered = reference if cell.setting.method == "all" else \
            _answer_cell(chat, cell.setting, video, args)
        out.append([_model_row(cell, answer, record, by_id) for answer, record in answered])
    return out


def _answer_cell(chat, setting: Setting, video: Video, args) -> list[tuple]:
    """(Answer, (Reply, MergeResult)) per question of the video, at `setting`."""
    from .scoring import answer_questions

    chat.reset_prefix()  # set_config would otherwise re-merge a prefix we are about to drop
    chat.set_config(setting.config(args.root_level, args.merge_layer))
    chat.records = []
    answers = answer_questions(chat, video.items, num_frames=args.frames,
                               max_new_tokens=args.max_new_tokens)
    return list(zip(answers, chat.records))


def _model_row(cell: Cell, answer, record, reference: dict) -> dict:
    reply, merge = record
    item = answer.item
    row = dict(zip(KEY, (*cell.key, item.id)), category=item.category or "",
               task=item.task or "", **_merge_columns(merge))
    row.update(tokens_before=reply.tokens_before, tokens_after=reply.tokens_after,  # prefill
               # LLM time to first token: the vision encoder runs once per video (in the first
               # cell) and STTM does not change it, so it is left out
               ttft_s=reply.ttft_s - reply.timings.get("vision_encoder", 0.0),
               cache_reused=int(reply.cache_reused), choice=answer.choice or "",
               answer=item.answer or "",
               correct="" if answer.correct is None else int(answer.correct))
    if cell.setting.method != "all":
        ref = reference[item.id]
        row.update(agree=int(answer.choice == ref.choice),
                   kl=first_token_kl(ref.first_logits, answer.first_logits))
    return row


def first_token_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """KL(p || q) of two first-token distributions given as logits [V] (nats, fp32)."""
    p, q = p_logits.float().cpu().log_softmax(-1), q_logits.float().cpu().log_softmax(-1)
    return float((p.exp() * (p - q)).sum())


# ----------------------------------------------------------------------------- the sweep

@dataclass
class Outcome:
    """What one process did, and on the main process what the sweep found."""

    computed: list[tuple] = field(default_factory=list)  # cell keys this process ran
    rows: list[dict] = field(default_factory=list)       # results.csv (main process)
    summary: list[dict] = field(default_factory=list)    # summary.csv (main process)
    recommended: dict | None = None
    reason: str = ""                                      # the recommendation, in words
    plots: list[Path] = field(default_factory=list)


def run(args) -> Outcome:
    """Run the sweep described by parsed CLI args (see `parse_args`)."""
    from accelerate import PartialState

    pixel = args.features == "pixel"
    state = PartialState(cpu=_use_cpu(args), timeout=BARRIER_TIMEOUT)
    _warn_single_cpu_launch(state)
    out, columns = Path(args.out), PIXEL_COLUMNS if pixel else MODEL_COLUMNS
    out.mkdir(parents=True, exist_ok=True)
    videos, settings = _plan(args, pixel)
    rows = read_rows(out, columns)  # every rank reads before any rank writes its part file
    shard = videos[state.process_index::state.num_processes]
    cells = pending_cells(shard, settings, rows, pixel)
    log.info("process %d/%d: %d videos, %d of %d cells to run", state.process_index,
             state.num_processes, len(shard), len(cells), len(shard) * len(settings))
    target = results_path(out, state.process_index if state.num_processes > 1 else None)
    outcome = Outcome(computed=_run_cells(cells, rows, args, pixel, state, target, columns))
    state.wait_for_everyone()
    if state.is_main_process:
        _finish(outcome, out, columns, videos, settings, args, pixel)
    return outcome


def _plan(args, pixel: bool) -> tuple[list[Video], list[Setting]]:
    items = load_qa(args.qa, missing="skip" if args.skip_missing else "error")
    if args.limit:
        items = items[:args.limit]
    root = Path(args.qa) if Path(args.qa).is_dir() else Path(args.qa).parent
    methods = [m for m in args.methods if not (pixel and m == "fastv")]
    if pixel and "fastv" in args.methods and args.methods_given:
        log.warning("fastv needs a model's attention: skipped with --features pixel")
    settings = plan_settings(methods, args.tau_s, args.tau_t, args.budgets, reference=not pixel)
    return group_videos(items, root), settings


def _run_cells(cells: list[Cell], rows: list[dict], args, pixel: bool, state, target: Path,
               columns) -> list[tuple]:
    """Run the cells video by video, appending each cell's rows as soon as it is done."""
    from tqdm.auto import tqdm

    loaded = None if pixel or not cells else _load(args, state)
    done = done_cells(rows)
    computed = []
    by_video = defaultdict(list)
    for cell in cells:
        by_video[cell.video.key].append(cell)
    bar = tqdm(total=len(cells), desc=f"sweep [{state.process_index}]", unit="cell",
               position=state.process_index, disable=args.quiet)
    for video_cells in by_video.values():
        video = video_cells[0].video
        for cell, cell_rows in zip(video_cells, _video_rows(loaded, video, video_cells, done,
                                                            args, pixel)):
            append_rows(target, cell_rows, columns)
            computed.append(cell.key)
            bar.update(1)
    bar.close()
    return computed


def _video_rows(loaded, video: Video, cells: list[Cell], done, args, pixel):
    if pixel:
        return run_pixel_video(video, cells, args)
    wanted = {i.id for i in video.items}
    reference_done = wanted <= done.get((*Setting("all").key, video.key), set())
    return run_model_video(loaded, video, cells, reference_done, args)


def _load(args, state):
    from .models.checkpoints import load_model

    device = args.device
    if device is None and state.num_processes > 1 and not args.device_map:
        device = "cpu" if state.device.type == "cpu" else str(state.device)  # one GPU per process
    if args.device_map and state.num_processes > 1:
        log.warning("--device-map %s with %d processes: each process spreads the model over "
                    "every visible GPU", args.device_map, state.num_processes)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_model(args.model, device=device, dtype=dtype, device_map=args.device_map)


def _use_cpu(args) -> bool:
    """Run the process group on CPU (gloo): pixel features need no GPU, and without CUDA
    accelerate would otherwise not start a process group at all."""
    return (args.features == "pixel" or args.device == "cpu" or not torch.cuda.is_available()
            or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))


def _warn_single_cpu_launch(state) -> None:
    """`accelerate launch --cpu --num_processes N` starts ONE process (several only through
    mpirun); it sets MASTER_ADDR, so that case can be told and explained."""
    if (state.num_processes == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
            and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ):
        log.warning("accelerate launch --cpu started a single process; for N processes on CPU "
                    "use `accelerate launch --multi_gpu --num_processes N` (torchrun; without "
                    "CUDA the sweep uses gloo on CPU) or `torchrun --nproc_per_node N`")


def _finish(outcome: Outcome, out: Path, columns, videos, settings, args, pixel) -> None:
    """Main process: merged results, summary.csv, plots, the recommendation."""
    outcome.rows = merge_results(out, columns)
    wanted = {(*s.key, v.key) for s in settings for v in videos}
    rows = [r for r in outcome.rows if tuple(r[k] for k in KEY[:5]) in wanted]
    outcome.summary = summarize(rows, settings)
    write_summary(out / "summary.csv", outcome.summary)
    outcome.recommended, outcome.reason = recommend(outcome.summary, args.max_drop)
    if not args.no_plots:
        outcome.plots = make_plots(out, rows, outcome.summary, outcome.recommended, args, pixel)


# ----------------------------------------------------------------------------- summary

SUMMARY_COLUMNS = ("method", "tau_s", "tau_t", "budget", "label", "videos", "questions",
                   "keep_ratio", "spatial_keep_ratio", "tokens_after", "accuracy", "acc_drop",
                   "agreement", "kl", "ttft_s", "ttft_cold_s")


def summarize(rows: list[dict], settings: list[Setting]) -> list[dict]:
    """Per setting (in `settings` order; those without rows are left out):
    keep_ratio / spatial_keep_ratio / tokens_after: means over videos (each video's own mean);
    accuracy, agreement: % of graded / compared questions; acc_drop: all-token accuracy minus
    this one, in points; kl: mean first-token KL(all || this), nats; ttft_s: mean TTFT of every
    question; ttft_cold_s: mean TTFT of the replies that prefilled the video (each video's
    first question; every question for query-aware FastV)."""
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in KEY[:4])].append(row)
    summary = [_summary_row(s, groups[s.key]) for s in settings if groups.get(s.key)]
    reference = next((r["accuracy"] for r in summary if r["method"] == "all"), None)
    for row in summary:
        row["acc_drop"] = (reference - row["accuracy"]
                           if reference is not None and row["accuracy"] is not None else None)
    return summary


def _summary_row(setting: Setting, rows: list[dict]) -> dict:
    per_video = defaultdict(list)
    for row in rows:
        per_video[row["video"]].append(row)

    def video_mean(column):
        return _mean([_mean(_floats(r[column] for r in v)) for v in per_video.values()])

    graded = _floats(r.get("correct", "") for r in rows)
    agree = _floats(r.get("agree", "") for r in rows)
    cold = [r for r in rows if r.get("cache_reused") == "0"]
    return dict(zip(SUMMARY_COLUMNS[:4], setting.key), label=setting.label,
                videos=len(per_video), questions=sum(1 for r in rows if r["question_id"]),
                keep_ratio=video_mean("keep_ratio"),
                spatial_keep_ratio=video_mean("spatial_keep_ratio"),
                tokens_after=video_mean("tokens_after"),
                accuracy=_percent(graded), acc_drop=None, agreement=_percent(agree),
                kl=_mean(_floats(r.get("kl", "") for r in rows)),
                ttft_s=_mean(_floats(r.get("ttft_s", "") for r in rows)),
                ttft_cold_s=_mean(_floats(r.get("ttft_s", "") for r in cold)))


def _floats(values) -> list[float]:
    return [float(v) for v in values if v not in ("", None, "nan")]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _percent(values: list[float]) -> float | None:
    return 100 * sum(values) / len(values) if values else None


def write_summary(path: Path, summary: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows({k: _fmt(v) for k, v in row.items()} for row in summary)


def recommend(summary: list[dict], max_drop: float) -> tuple[dict | None, str]:
    """The STTM setting with the lowest keep ratio whose accuracy is at least the all-token
    accuracy minus `max_drop` points (agreement >= 100 - max_drop % when no question has an
    answer); (None, why) when none qualifies or there is nothing to judge by."""
    sttm = [r for r in summary if r["method"] == "sttm" and r["keep_ratio"] is not None]
    reference = next((r for r in summary if r["method"] == "all"), None)
    if reference and reference["accuracy"] is not None:
        floor, metric = reference["accuracy"] - max_drop, "accuracy"
        rule = (f"accuracy >= {floor:.1f}% (all tokens {reference['accuracy']:.1f}% "
                f"- {max_drop:g} points)")
    elif sttm and sttm[0]["agreement"] is not None:
        floor, metric = 100 - max_drop, "agreement"
        rule = f"agreement with all tokens >= {floor:.1f}% (no answers: fidelity)"
    else:
        return None, "no recommendation: no answers to score (pixel features merge only)"
    ok = [r for r in sttm if r[metric] is not None and r[metric] >= floor - 1e-9]
    if not ok:
        return None, f"no STTM setting meets {rule}"
    best = min(ok, key=lambda r: (r["keep_ratio"], -r[metric]))
    return best, (f"recommended: {best['label']} keeps {best['keep_ratio']:.1%} of the video "
                  f"tokens with {metric} {best[metric]:.1f}%, the fewest of those with {rule}")


TABLE = (("keep", "keep_ratio", ".3f"), ("spatial", "spatial_keep_ratio", ".3f"),
         ("acc %", "accuracy", ".1f"), ("drop", "acc_drop", ".1f"),
         ("agree %", "agreement", ".1f"), ("KL", "kl", ".4f"), ("TTFT s", "ttft_cold_s", ".3f"))


def format_table(summary: list[dict]) -> str:
    """The summary as a fixed-width text table (columns with no value at all left out)."""
    columns = [c for c in TABLE if any(r[c[1]] is not None for r in summary)]
    width = max([len(r["label"]) for r in summary] + [7])
    head = f"{'setting':<{width}}" + "".join(f" {title:>8}" for title, _, _ in columns)
    lines = [head, "-" * len(head)]
    for r in summary:
        lines.append(f"{r['label']:<{width}}" + "".join(
            f" {'-' if r[key] is None else format(r[key], spec):>8}" for _, key, spec in columns))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots

COLORS = {"all": "#222222", "sttm": "#1f5fbf", "uniform": "#e08a1e", "spatial_only": "#2e9e4f",
          "temporal_only": "#c8323c", "fastv": "#8b54b8"}
MARKERS = {"all": "*", "sttm": "o", "uniform": "s", "spatial_only": "^", "temporal_only": "v",
           "fastv": "D"}
DPI = 110


def make_plots(out: Path, rows, summary, recommended, args, pixel: bool) -> list[Path]:
    """Write the sweep's PNGs into `out`; returns their paths."""
    if not summary:
        return []
    if pixel:
        plots = [plot_keep_by_category(out / "keep_by_category.png", rows, summary)]
    else:
        plots = [plot_pareto(out / "pareto.png", summary, recommended, args.max_drop),
                 plot_by_category(out / "by_category.png", rows, summary),
                 plot_ttft(out / "ttft.png", summary)]
    if any(r["method"] == "sttm" and r["tau_s"] for r in summary):
        plots.append(plot_keep_vs_tau(out / "keep_vs_tau.png", summary))
    return [p for p in plots if p is not None]


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def plot_pareto(path: Path, summary, recommended, max_drop: float) -> Path | None:
    """Keep ratio vs accuracy (agreement when there are no answers), one colour and marker
    per method, the all-token level as a line, STTM's Pareto front connected."""
    metric = "accuracy" if any(r["accuracy"] is not None for r in summary) else "agreement"
    points = [r for r in summary if r[metric] is not None and r["method"] != "all"]
    if not points:
        return None
    fig, ax = _figure(7.5, 5)
    for method in METHOD_ORDER[1:]:
        mine = [r for r in points if r["method"] == method]
        if mine:
            ax.scatter([r["keep_ratio"] for r in mine], [r[metric] for r in mine], s=46,
                       color=COLORS[method], marker=MARKERS[method], label=method, zorder=3,
                       alpha=0.85, edgecolor="white", linewidth=0.6)
    _pareto_front(ax, [r for r in points if r["method"] == "sttm"], metric)
    _reference_lines(ax, summary, metric, max_drop)
    if recommended is not None:
        ax.scatter([recommended["keep_ratio"]], [recommended[metric]], s=190, facecolor="none",
                   edgecolor="#111111", linewidth=1.6, zorder=4, label="recommended")
    levels = [r[metric] for r in summary if r[metric] is not None]
    ax.set(xlabel="video tokens kept (keep ratio)", ylabel=f"{metric} (%)",
           title=f"{metric.capitalize()} vs tokens kept", xlim=(0, 1.04),
           ylim=(max(0, min(levels) - max_drop - 5), min(100, max(levels) + 5) + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _pareto_front(ax, sttm: list[dict], metric: str) -> None:
    """Connect the STTM points no other STTM point beats (fewer tokens and at least as good)."""
    front, best = [], -math.inf
    for r in sorted(sttm, key=lambda r: (r["keep_ratio"], -r[metric])):
        if r[metric] > best + 1e-9:
            front.append(r)
            best = r[metric]
    if not front:
        return
    ax.plot([r["keep_ratio"] for r in front], [r[metric] for r in front], color=COLORS["sttm"],
            lw=1.4, zorder=2, label="STTM Pareto front")
    for r in front:
        ax.annotate(_short(r), (r["keep_ratio"], r[metric]), textcoords="offset points",
                    xytext=(4, 5), fontsize=7, color=COLORS["sttm"])


def _short(r: dict) -> str:
    """'0.8/0.6' for a grid point (tauS/tauT), '30%' for a budget."""
    if r["tau_s"]:
        return f"{r['tau_s']}/{r['tau_t'] if r['tau_t'] != 'none' else 'off'}"
    return f"{float(r['budget']):.0%}"


def _reference_lines(ax, summary, metric: str, max_drop: float) -> None:
    reference = next((r for r in summary if r["method"] == "all"), None)
    level = reference[metric] if reference and metric == "accuracy" else 100.0
    if level is None:
        return
    name = "all tokens" if metric == "accuracy" else "full agreement"
    ax.axhline(level, color=COLORS["all"], lw=1.2, label=f"{name} ({level:.1f}%)")
    ax.axhline(level - max_drop, color=COLORS["all"], lw=0.9, ls="--",
               label=f"- {max_drop:g} points allowed")


def plot_by_category(path: Path, rows, summary) -> Path | None:
    """Heat maps: accuracy (or agreement) and keep ratio per content type, for all tokens and
    every STTM setting (rows sorted by keep ratio)."""
    chosen = [r for r in summary if r["method"] in ("all", "sttm")]
    metric = "correct" if any(r.get("correct") not in ("", None) for r in rows) else "agree"
    categories = _categories(rows)
    if not chosen or not categories:
        return None
    chosen.sort(key=lambda r: -(r["keep_ratio"] or 0))
    score = _category_table(rows, chosen, categories, metric, scale=100)
    keep = _category_table(rows, chosen, categories, "keep_ratio", scale=1)
    fig, (left, right) = _figure(3 + 1.6 * len(categories), 1.4 + 0.32 * len(chosen), ncols=2)
    name = "accuracy (%)" if metric == "correct" else "agreement with all tokens (%)"
    _heatmap(left, score, [r["label"] for r in chosen], categories, name, "RdYlGn", (0, 100), ".0f")
    _heatmap(right, keep, [""] * len(chosen), categories, "keep ratio", "viridis", (0, 1), ".2f")
    return _save(fig, path)


def plot_keep_by_category(path: Path, rows, summary) -> Path | None:
    """Heat map of the keep ratio per content type (columns) and setting (rows, fewest tokens
    last), plus the mean over videos."""
    categories = _categories(rows)
    if not categories:
        return None
    chosen = sorted(summary, key=lambda r: -(r["keep_ratio"] or 0))
    table = _category_table(rows, chosen, categories, "keep_ratio", scale=1)
    table = [line + [r["keep_ratio"]] for line, r in zip(table, chosen)]
    fig, ax = _figure(2.6 + 0.95 * (len(categories) + 1), 1.2 + 0.3 * len(chosen))
    _heatmap(ax, table, [r["label"] for r in chosen], [*categories, "mean"],
             "video tokens kept per content type (pixel features)", "viridis", (0, 1), ".2f")
    return _save(fig, path)


def _categories(rows) -> list[str]:
    return sorted({r["category"] or "(none)" for r in rows})


def _category_table(rows, chosen, categories, column: str, scale: float) -> list[list]:
    """[setting][category] mean of `column` (None where no row has a value)."""
    cells = defaultdict(list)
    for r in rows:
        value = r.get(column, "")
        if value not in ("", None):
            cells[(tuple(r[k] for k in KEY[:4]), r["category"] or "(none)")].append(float(value))
    table = []
    for s in chosen:
        key = tuple(s[k] for k in KEY[:4])
        table.append([None if not cells[(key, c)] else scale * _mean(cells[(key, c)])
                      for c in categories])
    return table


def _heatmap(ax, table, row_labels, col_labels, title, cmap, limits, spec) -> None:
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in line] for line in table], float)
    ax.imshow(data, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    for (i, j), value in np.ndenumerate(data):
        if not np.isnan(value):
            light = (value - limits[0]) / (limits[1] - limits[0]) < 0.45
            ax.text(j, i, format(value, spec), ha="center", va="center", fontsize=7,
                    color="white" if light and cmap == "viridis" else "black")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_title(title, fontsize=9)


def plot_ttft(path: Path, summary) -> Path | None:
    """TTFT of a video's first question (the prefill that merging shortens) vs keep ratio."""
    points = [r for r in summary if r["ttft_cold_s"] is not None]
    if not points:
        return None
    fig, ax = _figure(7, 4.5)
    for method in METHOD_ORDER:
        mine = sorted((r for r in points if r["method"] == method), key=lambda r: r["keep_ratio"])
        if mine:
            ax.plot([r["keep_ratio"] for r in mine], [r["ttft_cold_s"] for r in mine],
                    marker=MARKERS[method], color=COLORS[method], label=method,
                    ls="none" if method == "sttm" else "-", ms=8 if method == "all" else 6)
    ax.set(xlabel="video tokens kept (keep ratio)", ylabel="TTFT (s)", xlim=(0, 1.04),
           title="Time to first token of a video's first question (vision encoder excluded)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_keep_vs_tau(path: Path, summary) -> Path | None:
    """Mean keep ratio vs tauS, one line per tauT (the grid points of STTM)."""
    grid = [r for r in summary if r["method"] == "sttm" and r["tau_s"]]
    fig, ax = _figure(6.5, 4.2)
    for tau_t in sorted({r["tau_t"] for r in grid}, key=lambda t: (t == "none", t)):
        line = sorted((r for r in grid if r["tau_t"] == tau_t), key=lambda r: float(r["tau_s"]))
        ax.plot([float(r["tau_s"]) for r in line], [r["keep_ratio"] for r in line], marker="o",
                label=f"τT {'off' if tau_t == 'none' else tau_t}")
    ax.set(xlabel="τS (spatial threshold)", ylabel="video tokens kept (mean over videos)",
           title="STTM keep ratio vs thresholds", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------- CLI

def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")


def _tau_t_list(text: str) -> list[float | None]:
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    try:
        return [None if v in ("none", "off") else float(v) for v in values]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers or 'none' separated by commas, got {text!r}")


def _method_list(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_ORDER[1:]]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_ORDER[1:])}")
    return methods


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sttm_core.sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sweep STTM thresholds / token budgets (and baselines) over a QA set: "
                    "keep ratio, accuracy, agreement and first-token KL vs all tokens, TTFT. "
                    "Resumable; shard videos over processes with accelerate launch.",
        epilog="Without --tau-s/--tau-t/--budgets the sweep uses --tau-s 0.7,0.8,0.9 --tau-t "
               "0.5,0.6 --budgets 0.5,0.3. Given only one of --tau-s / --tau-t, the other is "
               "the paper's 0.8 / 0.6. Rows go to OUT/results.csv (OUT/results.part<rank>.csv "
               "while several processes run); a rerun does only the missing cells.")
    p.add_argument("qa", help="QA file (.jsonl/.json/.csv) or a folder of them")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="hub id or local checkpoint of a supported video LLM")
    src.add_argument("--features", choices=["pixel"],
                     help="no model: merge per-patch pixel features, keep ratios only")
    p.add_argument("--tau-s", type=_float_list, help="tauS values, e.g. 0.7,0.8,0.9")
    p.add_argument("--tau-t", type=_tau_t_list, help="tauT values, 'none' = temporal off")
    p.add_argument("--budgets", type=_float_list, help="keep ratios, e.g. 0.5,0.3,0.15")
    p.add_argument("--methods", type=_method_list,
                   help="comma list of sttm,uniform,spatial_only,temporal_only,fastv (default: "
                        "all; fastv needs a model). Baselines run at the budgets only.")
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video (16)")
    p.add_argument("--merge-layer", type=int, default=2, help="decoder layer k (2)")
    p.add_argument("--root-level", type=int, default=1, help="quadtree root level (1)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="tokens generated per answer")
    p.add_argument("--max-pixels", type=int, help="Qwen-VL frame size cap in pixels")
    p.add_argument("--limit", type=int, help="only the first N questions (quick tries)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip questions whose video file is missing (default: error)")
    p.add_argument("--out", default="sweep_out", help="output folder (sweep_out)")
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="accuracy points below all tokens allowed for the recommendation (1.0)")
    p.add_argument("--device", help="cuda / cpu / cuda:1 (default: CUDA when present; one GPU "
                                    "per process under accelerate launch)")
    p.add_argument("--device-map", help="'auto' spreads a big model over the visible GPUs")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tau_s is None and args.tau_t is None and args.budgets is None:
        args.tau_s, args.tau_t, args.budgets = [0.7, 0.8, 0.9], [0.5, 0.6], [0.5, 0.3]
    elif args.tau_s is not None or args.tau_t is not None:
        args.tau_s, args.tau_t = args.tau_s or [0.8], args.tau_t or [0.6]
    args.tau_s, args.tau_t, args.budgets = args.tau_s or [], args.tau_t or [], args.budgets or []
    args.methods_given = args.methods is not None
    # by default the baselines run only when there are budgets to run them at
    args.methods = args.methods or ["sttm", *(BASELINES if args.budgets else ())]
    _check_args(parser, args)
    return args


def _check_args(parser, args) -> None:
    if any(not 0 < b <= 1 for b in args.budgets):
        parser.error(f"--budgets must be in (0, 1], got {args.budgets}")
    if args.frames < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--frames and --limit must be >= 1")
    baselines = [m for m in args.methods if m != "sttm"]
    if baselines and not args.budgets:
        parser.error(f"{', '.join(baselines)} run at token budgets: give --budgets")
    try:  # thresholds out of range fail here, not after the model has loaded
        for s, t in product(args.tau_s, args.tau_t):
            STTMConfig(s, t, args.root_level, args.merge_layer)
    except ValueError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    outcome = run(args)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(format_table(outcome.summary))
        print(outcome.reason)
        out = Path(args.out)
        print(f"wrote {out / 'results.csv'} ({len(outcome.rows)} rows), {out / 'summary.csv'}"
              + "".join(f", {p}" for p in outcome.plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
