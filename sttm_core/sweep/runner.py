"""Running a sweep: shard the videos over processes (accelerate), run each missing cell,
append its rows, and on the main process merge, summarise, plot and recommend."""
from __future__ import annotations

import datetime
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import STTMConfig
from ..methods import METHODS
from ..qa import load_qa
from .plan import Cell, Setting, Video, group_videos, pending_cells, plan_settings
from .plots import make_plots
from .report import recommend, summarize, write_summary
from .results import (KEY, MODEL_COLUMNS, PIXEL_COLUMNS, append_rows, done_cells,
                      drop_cut_line, merge_results, read_rows, results_path)

log = logging.getLogger(__name__)

# A process that finishes its shard early waits this long at the final barrier for the others
# (torch's default, 30 min, is shorter than one shard of a big model's sweep).
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


# ----------------------------------------------------------------------------- pixel cells

def run_pixel_video(video: Video, cells: list[Cell], args) -> list[list[dict]]:
    """Merge one video's per-patch pixel features at each cell's setting: one row per cell."""
    from ..merge import VideoTokenMerger
    from ..methods import reduce_tokens
    from ..pixels import pixel_patch_features
    from ..video import load_video

    clip = load_video(video.path, args.frames)
    merger = VideoTokenMerger(pixel_patch_features(clip.frames))  # pyramid built once
    out = []
    for cell in cells:
        start = time.perf_counter()
        res = reduce_tokens(merger, cell.setting.config(args.root_level, args.merge_layer,
                                                        **config_options(args)))
        out.append([dict(zip(KEY, (*cell.key, "")), category=video.category,
                         frames=clip.num_frames, merge_s=time.perf_counter() - start,
                         **_merge_columns(res))])
    return out


def _merge_columns(res) -> dict:
    """Keep ratios, token counts and the thresholds a MergeResult (or None: nothing merged)
    reports."""
    if res is None:
        return dict(keep_ratio=1.0, spatial_keep_ratio=1.0, tau_s_used="", tau_t_used="")
    return dict(keep_ratio=res.keep_ratio, spatial_keep_ratio=_spatial_keep(res),
                tokens_before=res.token_map.numel(), tokens_after=res.num_tokens,
                tau_s_used="none" if res.spatial_threshold is None else res.spatial_threshold,
                tau_t_used="none" if res.temporal_threshold is None else res.temporal_threshold)

def _spatial_keep(res) -> float:
    """Tokens per frame before any merging across frames, as a fraction of T*H*W. Without a
    quadtree (the patch-group baselines, whose spatial boxes are single patches) that is the
    number of distinct (frame, token) pairs."""
    if res.root_level is not None:
        return res.spatial_keep_ratio
    T = res.token_map.shape[0]
    pieces = res.token_map.flatten(1) + torch.arange(T, device=res.token_map.device)[:, None] \
        * (res.num_tokens + 1)                                     # [T, H*W] (frame, token) ids
    return int(torch.unique(pieces[res.token_map.flatten(1) >= 0]).numel()) / res.token_map.numel()


# ----------------------------------------------------------------------------- model cells

def run_model_video(loaded, video: Video, cells: list[Cell], reference_done: bool,
                    args) -> list[list[dict]]:
    """Answer one video's questions at each cell's setting: one row list per cell. The
    all-token answers come first (recomputed, not written, when `reference_done`)."""
    from ..chat import VideoChat

    chat = VideoChat(loaded, STTMConfig.all_tokens(args.merge_layer), num_frames=args.frames,
                     max_new_tokens=args.max_new_tokens)
    if reference_done:
        log.info("%s: re-running all tokens for agree / kl", video.key)
    reference = _answer_cell(chat, Setting("all"), video, args)
    by_id = {a.item.id: a for a in reference}
    out = []
    for cell in cells:
        answered = reference if cell.setting.method == "all" else \
            _answer_cell(chat, cell.setting, video, args)
        out.append([_model_row(cell, answer, by_id) for answer in answered])
    return out


def _answer_cell(chat, setting: Setting, video: Video, args) -> list:
    """The Answers to the video's questions at `setting` (the chat keeps the decoded and
    encoded video between cells: only the language model runs again)."""
    from ..scoring import answer_questions

    chat.reset_prefix()  # set_config would otherwise re-merge a prefix we are about to drop
    chat.set_config(setting.config(args.root_level, args.merge_layer, **config_options(args)))
    return answer_questions(chat, video.items, num_frames=args.frames,
                            max_new_tokens=args.max_new_tokens)


def config_options(args) -> dict:
    """The STTMConfig fields every setting of the sweep shares besides root level and layer."""
    return dict(temporal_mode=getattr(args, "temporal_mode", "official"),
                position_rule=getattr(args, "position_rule", None))


def _model_row(cell: Cell, answer, reference: dict) -> dict:
    reply, item = answer.reply, answer.item
    row = dict(zip(KEY, (*cell.key, item.id)), category=item.category or "",
               task=item.task or "", **_merge_columns(answer.merge))
    row.update(tokens_before=reply.tokens_before, tokens_after=reply.tokens_after,  # prefill
               # LLM time to first token: the vision encoder runs once per video (in the first
               # cell) and STTM does not change it, so it is left out
               ttft_s=reply.ttft_s - reply.timings.get("vision_encoder", 0.0),
               cache_reused=int(reply.cache_reused), choice=answer.choice or "",
               answer=item.answer or "",
               correct="" if answer.correct is None else int(answer.correct))
    if cell.setting.method != "all":
        from ..scoring import first_token_kl

        ref = reference[item.id]
        row.update(agree=int(answer.agrees_with(ref)),
                   kl=first_token_kl(ref.first_logits, answer.first_logits))
    return row


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
    rows = read_rows(out, columns)
    state.wait_for_everyone()  # every process has read before any appends to its part file
    shard = videos[state.process_index::state.num_processes]
    cells = pending_cells(shard, settings, rows, pixel)
    log.info("process %d/%d: %d videos, %d of %d cells to run", state.process_index,
             state.num_processes, len(shard), len(cells), len(shard) * len(settings))
    target = results_path(out, state.process_index if state.num_processes > 1 else None)
    drop_cut_line(target)  # only this process appends to `target`
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
    needs_model = [m for m in args.methods if pixel and METHODS[m].query_aware]
    methods = [m for m in args.methods if m not in needs_model]
    if needs_model:
        log.warning("%s rank tokens by a question's attention inside a model: skipped with "
                    "--features pixel", ", ".join(needs_model))
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
        results = _video_rows(loaded, video, video_cells, done, args, pixel)
        for cell, cell_rows in zip(video_cells, results, strict=True):
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
    from ..models.checkpoints import load_model

    device = args.device
    if device is None and state.num_processes > 1 and not args.device_map:
        device = "cpu" if state.device.type == "cpu" else str(state.device)  # one GPU per process
    if args.device_map and state.num_processes > 1:
        log.warning("--device-map %s with %d processes: each process spreads the model over "
                    "every visible GPU", args.device_map, state.num_processes)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_model(args.model, device=device, dtype=dtype, device_map=args.device_map,
                      max_pixels=args.max_pixels)


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
