"""The sweep's plots (matplotlib, PNG): accuracy vs keep ratio (Pareto), per content type,
TTFT vs keep ratio, keep ratio vs tauS / tauT."""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path

from ..methods import METHODS
from .report import STTM, mean
from .results import KEY

COLORS = {"all": "#222222", "sttm": "#1f5fbf", "sttm_budget": "#4fa3e0", "uniform": "#e08a1e",
          "spatial_only": "#2e9e4f", "temporal_only": "#c8323c", "fastv": "#8b54b8",
          "root_pool": "#b08d57", "tome_frame": "#7f7f7f", "tome_snippet": "#5c5c5c",
          "tome_video": "#3d3d3d", "dycoke": "#d45f9a", "framefusion": "#17a2a8",
          "octree": "#6b8e23"}
MARKERS = {"all": "*", "sttm": "o", "sttm_budget": "P", "uniform": "s", "spatial_only": "^",
           "temporal_only": "v", "fastv": "D", "root_pool": "h", "tome_frame": "<",
           "tome_snippet": ">", "tome_video": "X", "dycoke": "p", "framefusion": "d",
           "octree": "8"}
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
    for method in list(METHODS)[1:]:
        mine = [r for r in points if r["method"] == method]
        if mine:
            ax.scatter([r["keep_ratio"] for r in mine], [r[metric] for r in mine], s=46,
                       color=COLORS[method], marker=MARKERS[method],
                       label=METHODS[method].label, zorder=3,
                       alpha=0.85, edgecolor="white", linewidth=0.6)
    _pareto_front(ax, [r for r in points if r["method"] in STTM], metric)
    _reference_lines(ax, summary, metric, max_drop)
    if recommended is not None:
        ax.scatter([recommended["keep_ratio"]], [recommended[metric]], s=190, facecolor="none",
                   edgecolor="#111111", linewidth=1.6, zorder=4, label="recommended")
    levels = [r[metric] for r in summary if r[metric] is not None]
    ax.set(xlabel="video tokens kept (keep ratio)", ylabel=f"{metric} (%)",
           title=f"{metric.capitalize()} vs tokens kept", xlim=(0, 1.04),
           ylim=(max(-3, min(levels) - max_drop - 5), min(103, max(levels) + 5)))
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
    """Heat maps: accuracy (agreement when no question has an answer) and keep ratio per
    content type, for all tokens and every STTM setting."""
    metric = "correct" if any(r.get("correct") not in ("", None) for r in rows) else "agree"
    blocks = _blocks([r for r in summary if r["method"] in ("all", *STTM)])
    categories = _categories(rows)
    if not blocks or not categories:
        return None
    chosen = [r for block in blocks for r in block]
    overall = "accuracy" if metric == "correct" else "agreement"
    score = [line + [r[overall]] for line, r in
             zip(_category_table(rows, chosen, categories, metric, scale=100), chosen)]
    keep = [line + [r["keep_ratio"]] for line, r in
            zip(_category_table(rows, chosen, categories, "keep_ratio", scale=1), chosen)]
    fig, (left, right) = _figure(3.2 + 1.5 * (len(categories) + 1), 1.5 + 0.3 * len(chosen),
                                 ncols=2)
    columns, starts = [*categories, "mean"], _starts(blocks)
    name = "accuracy (%)" if metric == "correct" else "agreement with all tokens (%)"
    _heatmap(left, score, [r["label"] for r in chosen], columns, name, "RdYlGn", (0, 100), ".0f",
             starts)
    _heatmap(right, keep, [""] * len(chosen), columns, "video tokens kept", "viridis", (0, 1),
             ".2f", starts)
    return _save(fig, path)


def plot_keep_by_category(path: Path, rows, summary) -> Path | None:
    """Heat map of the keep ratio per content type (columns, plus the mean over videos) and
    setting (rows: STTM grid points, then one block per budget)."""
    blocks, categories = _blocks(summary), _categories(rows)
    if not blocks or not categories:
        return None
    chosen = [r for block in blocks for r in block]
    table = [line + [r["keep_ratio"]] for line, r in
             zip(_category_table(rows, chosen, categories, "keep_ratio", scale=1), chosen)]
    frames = sorted({r.get("frames", "") for r in rows} - {""})
    fig, ax = _figure(2.6 + 0.9 * (len(categories) + 1), 1.3 + 0.3 * len(chosen))
    _heatmap(ax, table, [r["label"] for r in chosen], [*categories, "mean"],
             f"Video tokens kept per content type (per-patch pixel features, "
             f"{'/'.join(frames) or '?'} frames)", "viridis", (0, 1), ".2f", _starts(blocks))
    return _save(fig, path)


def _blocks(summary) -> list[list[dict]]:
    """Heat-map rows in blocks: all tokens; STTM grid points, most tokens first; then one
    block per budget (largest first) holding its methods in summary order."""
    blocks = [[r for r in summary if r["method"] == "all"],
              sorted((r for r in summary if r["tau_s"]), key=lambda r: -(r["keep_ratio"] or 0))]
    for budget in sorted({r["budget"] for r in summary if r["budget"]}, key=float, reverse=True):
        blocks.append([r for r in summary if r["budget"] == budget])
    return [b for b in blocks if b]


def _starts(blocks) -> list[int]:
    """Row index where each block after the first begins."""
    starts, n = [], 0
    for block in blocks[:-1]:
        n += len(block)
        starts.append(n)
    return starts


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
        table.append([None if not cells[(key, c)] else scale * mean(cells[(key, c)])
                      for c in categories])
    return table


def _heatmap(ax, table, row_labels, col_labels, title, cmap, limits, spec, starts=()) -> None:
    """Annotated heat map; white lines before the rows in `starts` and before the last
    column (the mean)."""
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in line] for line in table], float)
    ax.imshow(data, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    for (i, j), value in np.ndenumerate(data):
        if not np.isnan(value):
            dark = (value - limits[0]) / (limits[1] - limits[0]) < 0.45 and cmap == "viridis"
            ax.text(j, i, format(value, spec), ha="center", va="center", fontsize=7.5,
                    color="white" if dark else "black")
    for i in starts:
        ax.axhline(i - 0.5, color="white", lw=3)
    ax.axvline(len(col_labels) - 1.5, color="white", lw=3)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8.5)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)


def plot_ttft(path: Path, summary) -> Path | None:
    """TTFT of a video's first question (the prefill that merging shortens) vs keep ratio."""
    points = [r for r in summary if r["ttft_cold_s"] is not None]
    if not points:
        return None
    fig, ax = _figure(7, 4.5)
    for method in METHODS:
        mine = sorted((r for r in points if r["method"] == method), key=lambda r: r["keep_ratio"])
        if mine:
            ax.plot([r["keep_ratio"] for r in mine], [r["ttft_cold_s"] for r in mine],
                    marker=MARKERS[method], color=COLORS[method], label=METHODS[method].label,
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


def plot_paper_table(path: Path, table, rows, pixel: bool) -> Path | None:
    """A paper table as grouped bars: one group per column, one bar per row; accuracy
    (agreement when nothing is graded; keep ratio without a model), keep ratio on each bar."""
    import numpy as np

    metric = next((m for m in ("accuracy", "agreement") if any(r[m] is not None for r in rows)),
                  "keep_ratio")
    value = {(r["row"], r["column"]): r for r in rows}
    fig, ax = _figure(max(5.5, 1.6 * len(table.columns) * max(1, len(table.rows)) / 2), 4.2)
    width = 0.8 / max(1, len(table.rows))
    x = np.arange(len(table.columns))
    for i, name in enumerate(table.rows):
        cells = [value.get((name, c)) for c in table.columns]
        heights = [np.nan if c is None or c[metric] is None else c[metric] for c in cells]
        bars = ax.bar(x + (i - (len(table.rows) - 1) / 2) * width, heights, width, label=name)
        for bar, cell in zip(bars, cells):
            if cell is not None and cell["keep_ratio"] is not None and metric != "keep_ratio":
                ax.annotate(f"{cell['keep_ratio']:.2f}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=7)
    label = {"keep_ratio": "video tokens kept (keep ratio)"}.get(metric, f"{metric} (%)")
    ax.set_xticks(x, table.columns, fontsize=8.5)
    title = f"Table {table.number}: {table.title}" + (
        " (pixel features: keep ratio only)" if pixel else "")
    # wrapped to the figure's width (about 11 characters an inch at 10 pt): a long title on a
    # table of few columns was cut at both edges
    ax.set_title(textwrap.fill(title, int(fig.get_figwidth() * 11)), fontsize=10)
    ax.set(ylabel=label)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)
