"""STTMConfig: every setting of one token reduction, as plain validated data.

The method (a key of sttm_core.methods.METHODS) says what kind of reduction it is and which
fields it reads: "sttm" reads the thresholds, the budget methods read keep_ratio, "all" reads
neither. Those are parsed once into the method's record (`config.reduction`, see
sttm_core.reduction); the rest says where the reduction acts and how similarities are taken.
`sttm_core.methods.reduce_tokens(features, config)` applies it.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from .methods import METHODS, Method, registered
from .reduction import DOES, OFF, Budget, Reduction, ReductionError, Thresholds, is_int

DECODE_POSITIONS = ("merged", "official")
POSITION_RULES = ("reassign", "mean", "survivor")
# the fields a method's record may read besides keep_ratio (its budget)
REDUCTION_FIELDS = ("spatial_threshold", "temporal_threshold", "root_level", "temporal_mode")
FIELD_OF = {"budget": "keep_ratio"}  # a record field -> the config field that mirrors it


@dataclass(frozen=True)
class STTMConfig:
    """STTM settings, checked once here.

    spatial_threshold (tauS), temporal_threshold (tauT), root_level: as in merge_video_tokens
    (OFF turns that half off). merge_layer: the decoder layer whose input hidden states are
    merged (paper: 2; 0 for 72B models). method: "sttm" (the thresholds), "sttm_budget" (tauS
    and tauT chosen per video to keep `keep_ratio` of the video tokens), a baseline at that
    budget (see sttm_core.methods.METHODS) or "all" (nothing merged).
    FastV and FrameFusion rank by layer merge_layer - 1's attention: merge_layer >= 1.

    decode_positions: where tokens after a renumbered prefill (1D RoPE models, STTM and the
    pooling baselines) continue in layers >= k. "merged" (default): at L' + i, right after the
    L' merged tokens, no gap. "official": at L + i as the official STTM code does (layers < k
    always use L + i), to reproduce its generations. M-RoPE models and FastV keep original
    position ids, so both settings give the same positions there.

    position_rule: where a merged token sits in layers >= k (the paper's Table 8). None: the
    family's and method's own (1D RoPE: "reassign"; M-RoPE, FastV, FrameFusion: "survivor").
    "reassign": the merged sequence renumbered 0..L'-1 (1D RoPE only); "survivor": each token
    keeps its representative's original ids; "mean": each merged token's RoPE cos/sin are the
    mean of its patches' (weighted as its features), text keeps its own.
    """

    spatial_threshold: float | None = 0.8
    temporal_threshold: float | None = 0.6
    root_level: int = 1
    merge_layer: int = 2
    method: str = "sttm"
    keep_ratio: float | None = None  # the budget of the methods that take one
    temporal_mode: str = "official"
    head_dim: int | None = None
    area_weighted: bool = False
    decode_positions: str = "merged"
    position_rule: str | None = None
    # the method's own values above as its record (thresholds, budget, root grid): what the
    # merge gets. Given by `of` (parsed already, held whole); else parsed from the fields
    reduction: Reduction | None = field(default=None, kw_only=True, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "reduction", self._record(registered(self.method)))
        if not is_int(self.merge_layer) or self.merge_layer < 0:
            raise ValueError(f"merge_layer must be a layer index >= 0, got {self.merge_layer!r}")
        if self.head_dim is not None and (not is_int(self.head_dim) or self.head_dim <= 0):
            raise ValueError(f"head_dim must be a positive integer or None, got {self.head_dim!r}")
        if self.decode_positions not in DECODE_POSITIONS:
            raise ValueError(f"decode_positions={self.decode_positions!r} is not one of "
                             f"{DECODE_POSITIONS}")
        if self.position_rule is not None and self.position_rule not in POSITION_RULES:
            raise ValueError(f"position_rule={self.position_rule!r} is not one of "
                             f"{POSITION_RULES} (or None: the model family's own)")
        if self.query_aware and self.merge_layer < 1:
            raise ValueError(f"method={self.method!r} ranks tokens by the attention of the layer "
                             "before merge_layer: merge_layer must be >= 1, got 0")

    def _record(self, method: Method) -> Reduction:
        """The method's record: the one given, when the fields mirror it (`of`: parsed
        already, so taken whole); else the fields, parsed once (a record the fields no longer
        mirror, e.g. after dataclasses.replace, is parsed anew from them)."""
        given = self.reduction
        if given is not None and type(given) is not method.record:
            raise ReductionError(f"method={self.method!r} takes a {method.record.__name__} "
                                 f"record, got {type(given).__name__}")
        if given is not None and _mirror(given) == {n: getattr(self, n) for n in _mirror(given)}:
            return given
        self._check_unread(method)
        values = method.reads(**{name: getattr(self, name) for name in REDUCTION_FIELDS})
        return method.parse(keep_ratio=self.keep_ratio, **values)

    def _check_unread(self, method: Method) -> None:
        """A field the method does not read may only keep its default: a value given there
        would be dropped without a word (e.g. a threshold with a budget method)."""
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        for name in REDUCTION_FIELDS:
            if name not in method.fields and getattr(self, name) != defaults[name]:
                raise ReductionError(f"method={self.method!r} {DOES[method.takes]}; it takes "
                                     f"no {name} (got {getattr(self, name)!r})")

    @classmethod
    def of(cls, method: str, reduction: Reduction, **where) -> "STTMConfig":
        """The config of `method` with a record from `methods.parse` and the other fields
        (merge_layer, position_rule, ...) as keywords: how every boundary builds one. The
        record is held as it is (config.reduction); the public fields mirror it."""
        return cls(method=method, reduction=reduction, **_mirror(reduction), **where)

    @property
    def budget(self) -> float | None:
        """The share of video tokens the method is asked to keep (None: it takes none);
        MergeResult.keep_ratio is the share a merge kept."""
        return self.reduction.budget if isinstance(self.reduction, Budget) else None

    @classmethod
    def all_tokens(cls, merge_layer: int = 2) -> "STTMConfig":
        """A config that merges nothing (the model behaves exactly as unpatched)."""
        return cls(method="all", merge_layer=merge_layer)

    @property
    def merges_nothing(self) -> bool:
        p = self.reduction
        return self.method == "all" or (isinstance(p, Thresholds) and p.temporal_threshold is OFF
                                        and (p.spatial_threshold is OFF or p.spatial_threshold > 1))

    @property
    def keeps_positions(self) -> bool:
        """Kept tokens keep their original position ids (nothing is renumbered)."""
        return METHODS[self.method].keeps_positions

    @property
    def query_aware(self) -> bool:
        """The reduction looks at the question, so a video prefix cannot be reused."""
        return METHODS[self.method].query_aware


def _mirror(record: Reduction) -> dict:
    """The config fields that mirror a record's, with its values ({"keep_ratio": 0.3, ...})."""
    return {FIELD_OF.get(f.name, f.name): getattr(record, f.name) for f in fields(record)}
