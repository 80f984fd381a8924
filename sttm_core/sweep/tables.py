"""The paper's comparison and ablation tables as sweeps: `sttm-sweep QA --model M --paper-table N`.

A table is rows x columns; each cell is one setting's summary (accuracy, agreement, KL and
keep ratio; keep ratio only with --features pixel). The rows that share their sweep options
(root level, merge layer, temporal mode, position rule) run as one ordinary sweep in
OUT/table<N>/<options>/ (resumable like any sweep); the cells are read from those summaries and
written to OUT/table<N>.csv and OUT/table<N>.png. The layouts are our reading of the paper:
  1  methods (rows) x budgets: every reduction at the same budget (Tables 1-2)
  5  root grid (rows) x single-granularity pooling to it / STTM's quadtree from it at τS,
     temporal merging off (Table 5)
  6  decomposed (STTM: quadtree per frame, then time) vs joint octree over (t, y, x) (rows)
     x budgets, each choosing its thresholds per video (Table 6)
  7  temporal matching (rows: nested pairs as the official code, most similar only) x budgets
  8  position rule after merging (rows: reassign, mean, survivor) x budgets (needs a model)
  9  merge layer k (rows) x budgets (needs a model)
"""
from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..config import POSITION_RULES
from ..methods import METHODS
from .results import fmt

log = logging.getLogger(__name__)

TABLES = ("1", "5", "6", "7", "8", "9")
NEEDS_MODEL = {"8": "positions act only inside a model's layers",
               "9": "the merge layer picks a model's hidden states"}
CELL_COLUMNS = ("table", "row", "column", "method", "tau_s", "tau_t", "budget", "keep_ratio",
                "accuracy", "agreement", "kl", "note")


@dataclass(frozen=True)
class Cell:
    row: str
    column: str
    options: tuple          # ((sweep arg, value), ...): the sub-sweep it comes from
    method: str
    budget: float | None = None
    tau: tuple | None = None  # (tauS, tauT) of a threshold setting


@dataclass
class Layout:
    number: str
    title: str
    rows: list[str]
    columns: list[str]
    cells: list[Cell] = field(default_factory=list)


def layout(number: str, args, pixel: bool) -> Layout:
    """The cells of table `number` for these arguments (budgets, τS/τT, root levels, layers)."""
    budgets = args.budgets or [0.5, 0.3]
    cols = [f"{b:.0%}" for b in budgets]

    def by_budget(title, rows, method="sttm_budget"):
        cells = [Cell(label, col, opts, method, b) for label, opts in rows
                 for col, b in zip(cols, budgets)]
        return Layout(number, title, [r for r, _ in rows], cols, cells)

    if number == "1":
        methods = [m for m in METHODS.values() if m.takes == "budget"
                   and not (pixel and m.query_aware)]
        cells = [Cell(m.label, col, (), m.name, b) for m in methods
                 for col, b in zip(cols, budgets)]
        return Layout(number, "Every reduction at the same budget", [m.label for m in methods],
                      cols, cells)
    if number == "5":
        tau_s = (args.tau_s or [0.8])[0]
        columns = ["single granularity (pooled to the root grid)", f"quadtree from it (τS {tau_s:g})"]
        cells, rows = [], []
        for level in args.root_levels:
            rows.append(f"root level {level}")
            opts = (("root_level", level),)
            cells += [Cell(rows[-1], columns[0], opts, "root_pool"),
                      Cell(rows[-1], columns[1], opts, "sttm", tau=(tau_s, None))]
        return Layout(number, "Single vs multiple granularity at a root grid", rows, columns, cells)
    if number == "6":
        rows = [("decomposed: quadtree, then time (STTM)", "sttm_budget"),
                ("joint octree over (t, y, x)", "octree")]
        cells = [Cell(label, col, (), method, b) for label, method in rows
                 for col, b in zip(cols, budgets)]
        return Layout(number, "Decomposed vs joint spatio-temporal merging",
                      [r for r, _ in rows], cols, cells)
    if number == "7":
        return by_budget("Temporal matching", [
            ("nested pairs (official)", (("temporal_mode", "official"),)),
            ("most similar only", (("temporal_mode", "best_match"),))])
    if number == "8":
        return by_budget("Positions after merging",
                         [(rule, (("position_rule", rule),)) for rule in POSITION_RULES])
    if number == "9":
        return by_budget("Merge layer", [(f"layer {k}", (("merge_layer", k),))
                                         for k in args.merge_layers])
    raise ValueError(f"no paper table {number}; choose from {TABLES}")


def run_table(args, run) -> tuple[Layout, list[dict]]:
    """Run the sub-sweeps of args.paper_table (with `run`, the sweep's runner) and write
    OUT/table<N>.csv and .png. Returns the layout and its cell rows."""
    pixel = args.features == "pixel"
    table = layout(args.paper_table, args, pixel)
    out = Path(args.out)
    summaries, notes = {}, {}
    for options in dict.fromkeys(c.options for c in table.cells):
        mine = [c for c in table.cells if c.options == options]
        sub = _sub_args(args, options, mine, out / f"table{table.number}" / _folder(options))
        try:
            summaries[options] = run(sub).summary
        except ValueError as err:  # e.g. position_rule=reassign on an M-RoPE model
            log.warning("table %s, %s: %s", table.number, _folder(options), err)
            notes[options] = str(err)
    from accelerate import PartialState
    if not PartialState().is_main_process:  # the main process writes the table
        return table, []
    rows = [_cell_row(table, c, summaries.get(c.options, []), notes.get(c.options, ""))
            for c in table.cells]
    path = out / f"table{table.number}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CELL_COLUMNS)
        writer.writeheader()
        writer.writerows({k: fmt(v) for k, v in r.items()} for r in rows)
    if not args.no_plots:
        from .plots import plot_paper_table
        plot_paper_table(out / f"table{table.number}.png", table, rows, pixel)
    return table, rows


def _folder(options: tuple) -> str:
    return "_".join(f"{k}-{v}" for k, v in options) or "all_methods"


def _sub_args(args, options: tuple, cells: list[Cell], out: Path) -> argparse.Namespace:
    sub = argparse.Namespace(**vars(args))
    for key, value in options:
        setattr(sub, key, value)
    sub.methods = list(dict.fromkeys(c.method for c in cells))
    sub.budgets = sorted({c.budget for c in cells if c.budget is not None}, reverse=True)
    taus = [c.tau for c in cells if c.tau]
    sub.tau_s, sub.tau_t = [t[0] for t in taus[:1]], [t[1] for t in taus[:1]]
    sub.methods_given, sub.paper_table, sub.out = False, None, str(out)
    sub.no_plots = True
    return sub


def _cell_row(table: Layout, cell: Cell, summary: list[dict], note: str) -> dict:
    tau_s, tau_t = cell.tau or (None, None)
    match = next((s for s in summary if s["method"] == cell.method
                  and s["budget"] == fmt(cell.budget) and s["tau_s"] == fmt(tau_s)), None)
    row = dict(table=table.number, row=cell.row, column=cell.column, method=cell.method,
               tau_s=tau_s, tau_t="none" if cell.tau and tau_t is None else tau_t,
               budget=cell.budget, note=note)
    for key in ("keep_ratio", "accuracy", "agreement", "kl"):
        row[key] = None if match is None else match[key]
    return row


def format_paper_table(table: Layout, rows: list[dict]) -> str:
    """Rows x columns, each cell 'accuracy (keep)' (agreement when nothing is graded, keep
    ratio alone without a model)."""
    metric = next((m for m in ("accuracy", "agreement") if any(r[m] is not None for r in rows)),
                  None)
    value = {(r["row"], r["column"]): r for r in rows}

    def show(r):
        if r is None or r["keep_ratio"] is None:
            return "-"
        keep = f"{r['keep_ratio']:.3f}"
        return keep if metric is None or r[metric] is None else f"{r[metric]:.1f} ({keep})"
    width = max(len(r) for r in table.rows + ["row"])
    widths = [max(len(c), 14) for c in table.columns]
    head = f"{'':<{width}}" + "".join(f"  {c:>{w}}" for c, w in zip(table.columns, widths))
    lines = [f"Table {table.number}: {table.title}"
             + (f" — {metric} % (keep ratio)" if metric else " — keep ratio"), head]
    for name in table.rows:
        lines.append(f"{name:<{width}}" + "".join(
            f"  {show(value.get((name, c))):>{w}}" for c, w in zip(table.columns, widths)))
    notes = sorted({r["note"] for r in rows if r["note"]})
    return "\n".join(lines + [f"note: {n}" for n in notes])
