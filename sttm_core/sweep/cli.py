"""`sttm-sweep` / `python -m sttm_core.sweep`: parse the command line, run the sweep, print what
it found."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import POSITION_RULES
from ..methods import METHODS
from ..qa import QAError
from ..temporal import TEMPORAL_MODES
from .plan import Setting, plan_settings
from .report import format_table
from .runner import run
from .tables import NEEDS_MODEL, TABLES, format_paper_table, run_table

CHOOSABLE = tuple(name for name in METHODS if name != "all")  # all tokens is the reference
BUDGET_METHODS = tuple(m.name for m in METHODS.values() if m.takes == "budget")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}") from None


def _tau_t_list(text: str) -> list[float | None]:
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    try:
        return [None if v in ("none", "off") else float(v) for v in values]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers or 'none' separated by commas, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}") from None


def _method_list(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in CHOOSABLE]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(CHOOSABLE)}")
    return methods


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sttm-sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
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
                   help=f"comma list of {','.join(CHOOSABLE)} (default: sttm, and every method "
                        "that takes a budget when there are budgets; fastv needs a model). "
                        "sttm runs at the tauS x tauT grid, the others at the budgets.")
    p.add_argument("--paper-table", choices=TABLES,
                   help="lay the run out as one of the paper's tables (see README): 1 every "
                        "method at each budget, 5 root-grid pooling vs quadtree, 6 decomposed vs "
                        "joint octree, 7 temporal matching, 8 position rule, 9 merge layer; "
                        "writes OUT/table<N>.csv and .png")
    p.add_argument("--root-levels", type=_int_list, default=[0, 1, 2],
                   help="root levels of --paper-table 5 (0,1,2)")
    p.add_argument("--merge-layers", type=_int_list, default=[0, 1, 2, 3],
                   help="merge layers of --paper-table 9 (0,1,2,3)")
    p.add_argument("--temporal-mode", default="official", choices=TEMPORAL_MODES,
                   help="STTM's temporal grouping (official; best_match: most similar only)")
    p.add_argument("--position-rule", choices=POSITION_RULES,
                   help="position of a merged token in layers >= k (default: the family's)")
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video (16)")
    p.add_argument("--merge-layer", type=int, default=2, help="decoder layer k (2)")
    p.add_argument("--root-level", type=int, default=1, help="quadtree root level (1)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="tokens per answer (8)")
    p.add_argument("--max-pixels", type=int,
                   help="Qwen-VL frame size cap in pixels (other families refuse it)")
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
    if args.paper_table:  # the table's own settings: budgets 50% / 30%, the paper's τS / τT
        args.budgets = args.budgets or [0.5, 0.3]
    if args.tau_s is None and args.tau_t is None and args.budgets is None:
        args.tau_s, args.tau_t, args.budgets = [0.7, 0.8, 0.9], [0.5, 0.6], [0.5, 0.3]
    elif args.tau_s is not None or args.tau_t is not None:
        args.tau_s, args.tau_t = args.tau_s or [0.8], args.tau_t or [0.6]
    args.tau_s, args.tau_t, args.budgets = args.tau_s or [], args.tau_t or [], args.budgets or []
    args.methods_given = args.methods is not None
    # by default the baselines run only when there are budgets to run them at
    args.methods = args.methods or ["sttm", *(BUDGET_METHODS if args.budgets else ())]
    _check_args(parser, args)
    return args


def _check_args(parser, args) -> None:
    if args.frames < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--frames and --limit must be >= 1")
    if args.paper_table in NEEDS_MODEL and args.features == "pixel":
        parser.error(f"--paper-table {args.paper_table} needs --model: "
                     f"{NEEDS_MODEL[args.paper_table]}")
    if args.position_rule and args.features == "pixel":
        parser.error("--position-rule needs --model: positions act only inside a model")
    at_budget = [m for m in args.methods if m in BUDGET_METHODS]
    if at_budget and not args.budgets:
        parser.error(f"{', '.join(at_budget)} run at token budgets: give --budgets")
    # the plan's settings (and each budget, which the paper tables use too) through the one
    # parse: a value out of range fails here, not after the model has loaded
    settings = plan_settings(args.methods, args.tau_s, args.tau_t, args.budgets, reference=False)
    settings += [Setting("sttm_budget", budget=b) for b in args.budgets]
    try:
        for setting in settings:
            setting.config(args.root_level, args.merge_layer, args.temporal_mode)
    except ValueError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:  # the sweep's own dependencies come with the `eval` extra
        from accelerate import PartialState
    except ImportError:
        sys.exit("sttm-sweep needs accelerate: pip install 'sttm-studio[eval]'")
    from ..models.base import FrameSizeError, UnsupportedModelError
    from ..models.checkpoints import ModelLoadError
    try:
        if args.paper_table:
            table, rows = run_table(args, run)
            if PartialState().is_main_process:
                print(format_paper_table(table, rows))
                print(f"wrote {Path(args.out) / f'table{table.number}.csv'}")
            return 0
        outcome = run(args)
    except (QAError, ModelLoadError, UnsupportedModelError, FrameSizeError) as err:
        sys.exit(f"sttm-sweep: {err}")  # a malformed QA file, a model that cannot run: says why
    if PartialState().is_main_process:
        print(format_table(outcome.summary))
        print(outcome.reason)
        out = Path(args.out)
        print(f"wrote {out / 'results.csv'} ({len(outcome.rows)} rows), {out / 'summary.csv'}"
              + "".join(f", {p}" for p in outcome.plots))
    return 0

