"""What a token reduction is given: one typed record per kind of method, and the checks on
their values. The registry (sttm_core.methods) says which record each method takes and parses
user values into it (`methods.parse`); the reduce functions and the config read the record.

Only the reduction's own values live here. Where it acts (merge_layer, decode_positions,
position_rule) and how similarities are computed (head_dim, area_weighted) are STTMConfig's.

  Thresholds  STTM by hand: tauS, tauT, the root level, the temporal rule
  Budget      the share of the video's tokens to keep (target; MergeResult.keep_ratio is the
              share a merge achieved); STTM's variants also read root level and temporal rule
  RootGrid    the root level alone: its grid fixes the token count
  AllTokens   nothing: every patch stays a token
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from .temporal import TEMPORAL_MODES

OFF = None  # a threshold that turns its half of the merge off (for tauS any value > 1 does too)


class ReductionError(ValueError):
    """A reduction value out of its domain; the message names the value as it was spelled."""


@dataclass(frozen=True)
class Thresholds:
    spatial_threshold: float | None = 0.8   # tauS; OFF or > 1: no spatial merging
    temporal_threshold: float | None = 0.6  # tauT; OFF: no temporal merging
    root_level: int = 1                     # where the quadtree search starts (0 = coarsest)
    temporal_mode: str = "official"         # sttm_core.temporal.TEMPORAL_MODES


@dataclass(frozen=True)
class Budget:
    budget: float                    # share of the video's tokens to keep, in (0, 1]
    root_level: int = 1              # read by STTM at a budget; pooling baselines ignore it
    temporal_mode: str = "official"  # likewise


@dataclass(frozen=True)
class RootGrid:
    root_level: int = 1


@dataclass(frozen=True)
class AllTokens:
    pass


Reduction = Thresholds | Budget | RootGrid | AllTokens

# Method.takes -> its record, and what a method of that kind does (for "takes no X" messages)
RECORDS = {"thresholds": Thresholds, "budget": Budget, "root": RootGrid, "nothing": AllTokens}
DOES = {"thresholds": "merges at thresholds (tau_s, tau_t)", "budget": "keeps a token budget",
        "root": "pools every frame to its root grid", "nothing": "merges nothing"}

# the other spellings people use for a record's fields (lmms-eval model_args, the sweep's
# columns, the app's controls, STTMConfig(keep_ratio=)); messages quote the one a caller used
ALIASES = {"tau_s": "spatial_threshold", "tau_t": "temporal_threshold", "keep_ratio": "budget"}


def check_value(field: str, name: str, value) -> None:
    """Check one record field's value; `name` is how the caller spelled it (for the message)."""
    if field in ("spatial_threshold", "temporal_threshold"):
        check_threshold(name, value)
    elif field == "budget":
        if not (is_real(value) and 0 < value <= 1):  # NaN fails both comparisons
            raise ReductionError(f"{name} must be a number in (0, 1], got {value!r}")
    elif field == "root_level":
        if not is_int(value):
            raise ReductionError(f"{name} must be an integer, got {value!r}")
    elif field == "temporal_mode":
        check_temporal_mode(value, name)


def check_threshold(name: str, value) -> None:
    if value is OFF:
        return
    if not is_real(value):
        raise ReductionError(f"{name} must be a number or OFF (None), got {value!r}")
    if math.isnan(value):
        raise ReductionError(f"{name} is NaN, which is out of range: cosine similarity "
                             "thresholds lie in [-1, 1] (a value above 1 merges nothing)")
    if value < -1:
        raise ReductionError(f"{name}={value} is out of range: cosine similarity thresholds lie "
                             "in [-1, 1] (a value above 1 merges nothing)")


def check_temporal_mode(mode, name: str = "temporal_mode") -> None:
    if mode not in TEMPORAL_MODES:
        raise ReductionError(f"{name}={mode!r} is not one of {TEMPORAL_MODES}")


def is_int(value) -> bool:
    """An int or a numpy integer scalar (np.int64 ...), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """An int, a float or a numpy scalar of either (np.float32 ...), not a bool; NaN is one."""
    return isinstance(value, Real) and not isinstance(value, bool)
