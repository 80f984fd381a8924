"""The sweep's CSV files: rows appended as cells finish (flushed at once), read back for
resuming (a line an interruption cut off is dropped), per-process part files merged by key."""
from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

from ..methods import METHODS

KEY = ("method", "tau_s", "tau_t", "budget", "video", "question_id")
MODEL_COLUMNS = KEY + ("category", "task", "keep_ratio", "spatial_keep_ratio", "tokens_before",
                       "tokens_after", "tau_s_used", "tau_t_used", "ttft_s", "cache_reused",
                       "choice", "answer", "correct", "agree", "kl")
PIXEL_COLUMNS = KEY + ("category", "frames", "keep_ratio", "spatial_keep_ratio", "tokens_before",
                       "tokens_after", "tau_s_used", "tau_t_used", "merge_s")


def fmt(x) -> str:
    """A number as written in the CSV files ('' for None): short and stable across runs."""
    if x is None or x == "":
        return ""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.6g}" if isinstance(x, float) else str(x)


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
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # the last line was cut off: even a full field count may
        text = text[:text.rfind("\n") + 1]  # end in a truncated number
    reader = csv.DictReader(text.splitlines(keepends=True))
    if tuple(reader.fieldnames or ()) != columns:
        raise ValueError(f"{path} has columns {reader.fieldnames}, not those of this kind of "
                         f"sweep ({', '.join(columns)}); use another --out folder")
    return [row for row in reader if None not in row.values() and None not in row]


def drop_cut_line(path: Path) -> None:
    """Truncate a last line an interruption cut off (no final newline), so that appended rows
    start on a line of their own."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


def append_rows(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Append rows (header first when the file is new), flushed to disk at once."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows({c: fmt(row.get(c)) for c in columns} for row in rows)
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
    order = list(METHODS)  # the registry's order: all tokens, STTM, then the baselines
    rank = order.index(row["method"]) if row["method"] in order else len(order)
    return row["video"], rank, row["budget"], row["tau_s"], row["tau_t"], row["question_id"]


def done_cells(rows: list[dict]) -> dict[tuple, set[str]]:
    """(method, tau_s, tau_t, budget, video) -> question ids that have a row."""
    done = defaultdict(set)
    for row in rows:
        done[tuple(row[k] for k in KEY[:5])].add(row["question_id"])
    return done
