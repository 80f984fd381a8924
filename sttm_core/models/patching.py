"""patch / unpatch: STTM inside a transformers video LLM, with forward pre-hooks only.

During a prefill, the hidden states entering decoder layer k (`merge_layer`) are merged:
each video's tokens [T*H*W, C] become STTM tokens, text tokens stay. Layers >= k then see the
shorter sequence with matching positions and mask; layers < k are untouched, so their KV cache
keeps the full length L while layers >= k hold L' (the official implementation's layout).

Hooks (no upstream forward is copied):
  model           remembers the call's video spans (found by token id; a video given only as
                  inputs_embeds is refused: its tokens cannot be found)
  language model  remembers the 2D mask and positions; prefill or decode?
  layer k - 1     FastV only: the last prompt token's attention row (mean over heads)
  layer k         prefill: merge and build the merged sequence's positions and mask;
                  decode: the mask and positions of new tokens after the merged prefix
  layers > k      take what layer k built
  after layer j   DeepStack families only (Qwen3-VL, j < 3): the language model's DeepStack
                  features, taken out of its call, are added here to the visual positions;
                  from layer k on they are merged with the hidden states' token assignment
                  and weights, at the merged sequence's visual positions
A video's grid tokens need not be one run (Qwen3-VL writes a timestamp before each token
frame): a VideoSpan lists their positions, and a merged token sits at its representative's.
Everything a hook builds lies on the device of the hidden states it receives (with
device_map="auto" layers sit on different GPUs).
Positions: 1D RoPE (LLaVA) re-indexes the merged sequence contiguously; M-RoPE (Qwen2-VL)
keeps each merged token's representative (t, h, w) ids; FastV keeps every kept token's
original ids. Where transformers' numbering differs from the family's reference rule (Qwen),
`patch` installs the adapter's. Shape legend: B batch, L / L' prefill length before / after
merging, q new tokens, D hidden size.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from transformers.masking_utils import create_causal_mask

from ..config import STTMConfig
from ..merge import MergeResult, merge_like
from ..methods import reduce_tokens
from .base import DeepStack, VideoLLMAdapter, VideoSpan
from .registry import adapter_for


@dataclass
class MergedPrefill:
    """How a prefill's sequence was shortened at layer k; kept for the decode steps after it."""

    length: int           # L, the prefill length layers < k saw
    slots: Tensor         # [B, L'] original index of each merged slot (representative; 0 on pads)
    valid: Tensor         # [B, L'] False on left-padding slots
    next_position: Tensor  # [B] position of the first token after the prefill (original numbering)
    spans: list[VideoSpan]  # the videos that were merged
    merges: list[MergeResult]  # one per span
    renumbered: bool = False  # layers >= k numbered the merged sequence 0..L'-1 (1D RoPE)

    @property
    def merged_length(self) -> int:
        return self.slots.shape[1]


@dataclass
class LayerInput:
    """What decoder layer k received in a prefill, before merging: enough to merge again."""

    hidden: Tensor         # [B, L, D]
    kwargs: dict           # the layer's other arguments (mask, RoPE, positions; no cache)
    mask_2d: Tensor | None  # [B, L] padding mask of the call (None: no padding)
    positions: Tensor | None  # the call's position ids
    deepstack: DeepStack | None = None  # the call's DeepStack inputs, unmerged


class MergeTimer:
    """Times one merge without stalling the device: CUDA events on the current stream (read,
    and waited for, only when `seconds` is asked), perf_counter elsewhere."""

    def __init__(self, device: torch.device):
        self.device, self.events = device, None
        if device.type == "cuda":
            self.events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
            self.events[0].record(torch.cuda.current_stream(device))
        else:
            self.start = time.perf_counter()

    def stop(self) -> None:
        if self.events:
            self.events[1].record(torch.cuda.current_stream(self.device))
        else:
            self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.events:
            self.events[1].synchronize()
            return self.events[0].elapsed_time(self.events[1]) / 1000
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    """What a patched model does in the calls it runs under `planned(model, plan)`: the
    reduction and where it acts (config: method and its settings, merge_layer,
    decode_positions), whether to keep layer k's prefill input (to merge it again, `remerge`)
    and whether to time the merge. Outside `planned`, a call follows `patch`'s config."""

    config: STTMConfig
    keep_layer_input: bool = False
    time_merge: bool = False


@dataclass
class Prefilled:
    """What a prefill left, for the caller that planned it (and as `model.sttm`'s read-out)."""

    prefill: MergedPrefill | None = None      # None: the call had no video
    layer_input: LayerInput | None = None     # with Plan.keep_layer_input
    merge_timer: MergeTimer | None = None     # with Plan.time_merge, when something merged

    @property
    def merge(self) -> MergeResult | None:
        """The MergeResult of the prefill's first video (None if nothing was merged)."""
        return self.prefill.merges[0] if self.prefill and self.prefill.merges else None

    @property
    def merge_seconds(self) -> float | None:
        return None if self.merge_timer is None else self.merge_timer.seconds


# the plan of the calls in this context (thread, task) and what their prefill left
_PLANNED: ContextVar[tuple[Plan, Prefilled] | None] = ContextVar("sttm_plan", default=None)


@contextmanager
def planned(model: nn.Module, plan: Plan):
    """Run the patched model's calls in this block with `plan`; yields the Prefilled its
    prefill fills in. Nothing is set on the model: another thread's calls are not affected."""
    model.sttm.adapter.check_merge_layer(plan.config.merge_layer)
    model.sttm.adapter.check_position_rule(plan.config.position_rule)
    outcome = Prefilled()
    token = _PLANNED.set((plan, outcome))
    try:
        yield outcome
    finally:
        _PLANNED.reset(token)


@dataclass
class STTMState:
    """What `patch` attaches as `model.sttm`: the config a bare call (`model.generate`)
    follows, the hooks' handles, and a read-out of the last prefill. Calls that need another
    setting run under `planned(model, plan)`."""

    config: STTMConfig
    adapter: VideoLLMAdapter
    handles: list = field(default_factory=list)
    last: Prefilled = field(default_factory=Prefilled)  # read-out only, never read by the hooks

    @property
    def last_merge(self) -> MergeResult | None:
        """MergeResult of the last prefill's first video (None if nothing was merged)."""
        return self.last.merge

    @property
    def prefill(self) -> MergedPrefill | None:
        return self.last.prefill

    @property
    def layer_input(self) -> LayerInput | None:
        return self.last.layer_input

    @property
    def merge_seconds(self) -> float | None:
        """Seconds the last prefill's merge took when it was timed (Plan.time_merge)."""
        return self.last.merge_seconds


def patch(model: nn.Module, config: STTMConfig | None = None) -> nn.Module:
    """Apply STTM to a supported transformers video LLM (in place); returns the model.

    Patching again replaces the config. `unpatch(model)` restores the original behaviour.
    The patched model numbers positions by its family's reference rule (Qwen: see the README),
    with merging or without."""
    config = config or STTMConfig()
    adapter = adapter_for(model)
    adapter.check_merge_layer(config.merge_layer)
    adapter.check_position_rule(config.position_rule)
    if hasattr(model, "sttm"):
        unpatch(model)
    state = STTMState(config, adapter)
    hooks = _Hooks(state)
    state.handles = [
        model.register_forward_pre_hook(hooks.on_model, with_kwargs=True),
        model.register_forward_hook(hooks.after_model, always_call=True),
        adapter.language_model.register_forward_pre_hook(hooks.on_language_model, with_kwargs=True),
    ] + [layer.register_forward_pre_hook(hooks.on_layer(i), with_kwargs=True)
         for i, layer in enumerate(adapter.decoder_layers)]
    state.handles += [layer.register_forward_hook(hooks.after_layer(j))
                      for j, layer in enumerate(adapter.decoder_layers[:adapter.deepstack_layers])]
    if (positions := adapter.use_reference_positions()) is not None:
        state.handles.append(positions)
    model.sttm = state
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Remove STTM: the model behaves exactly as before `patch`."""
    state = getattr(model, "sttm", None)
    if state is not None:
        for handle in state.handles:
            handle.remove()
        del model.sttm
    return model


@dataclass
class _Call:
    """One forward of the language model, as its hooks see it: the plan it follows, its cache,
    padding mask and positions, and what layer k built for the layers after it."""

    plan: Plan
    outcome: Prefilled
    spans: list[VideoSpan]                # the videos of the call (prefill only)
    cache: object = None
    mask_2d: Tensor | None = None
    positions: Tensor | None = None
    deepstack: DeepStack | None = None    # what the layers after which it is added add
    prefill: bool = False
    built: dict | None = None             # kwargs layer k built for the layers after it
    merged_hidden: Tensor | None = None   # layer k's input, merged
    attention: Tensor | None = None       # [B, L] FastV: layer k-1's last-token attention

    @property
    def config(self) -> STTMConfig:
        return self.plan.config

    @property
    def k(self) -> int:
        return self.plan.config.merge_layer

    def begin(self, cache, mask_2d: Tensor | None, positions: Tensor | None,
              deepstack: DeepStack | None = None) -> "_Call":
        """The language model starts: a prefill (its cache is empty at layer k) or tokens
        appended after one."""
        self.cache, self.mask_2d, self.positions, self.deepstack = cache, mask_2d, positions, deepstack
        self.prefill = cache is None or cache.get_seq_length(self.k) == 0
        return self


_CALL: ContextVar[_Call | None] = ContextVar("sttm_call", default=None)


def _merged_prefill_of(cache) -> MergedPrefill | None:
    """How a KV cache's prefill was merged: the cache carries it (`_attach`), so the tokens
    appended after a prefix, in this call or any later one, find their mask and positions."""
    return getattr(cache, "sttm_prefill", None)


def _attach(cache, prefill: MergedPrefill | None) -> None:
    if cache is not None:
        cache.sttm_prefill = prefill


class _Hooks:
    """The hooks of one patched model. They keep nothing between calls: a call's plan comes
    from `planned` (or the patch's config), its scratch lives in a _Call of its own, and what
    a prefill leaves goes to the planner's Prefilled and onto the KV cache."""

    def __init__(self, state: STTMState):
        self.state = state

    @property
    def call(self) -> _Call:
        return _CALL.get()

    def on_model(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        adapter = self.state.adapter
        if input_ids is None and adapter.carries_video(kwargs):
            raise ValueError("STTM finds a video's tokens by their ids: pass input_ids with the "
                             "video, not only inputs_embeds")
        spans = ([] if input_ids is None or input_ids.shape[1] == 1  # text only, or one step
                 else adapter.video_spans(input_ids, kwargs))
        plan, outcome = _PLANNED.get() or (Plan(self.state.config), Prefilled())
        _CALL.set(_Call(plan, outcome, spans))

    def after_model(self, module, args, output):
        _CALL.set(None)  # the call's scratch (hidden states, attention) is not kept

    def on_language_model(self, module, args, kwargs):
        mask_2d = kwargs.get("attention_mask")
        if isinstance(mask_2d, dict) or (mask_2d is not None and mask_2d.dim() != 2):
            mask_2d = None  # a prepared 4D mask: no padding information to carry
        deepstack = self.state.adapter.take_deepstack(kwargs)  # the hooks add it themselves
        call = self.call
        if call is None:  # the language model called on its own: the patch's config, no video
            call = _Call(Plan(self.state.config), Prefilled(), [])
            _CALL.set(call)
        call.begin(kwargs.get("past_key_values"), mask_2d, kwargs.get("position_ids"), deepstack)
        return None if deepstack is None else (args, kwargs)

    def after_layer(self, j: int):
        """Forward hook of decoder layer j: add the j-th DeepStack features to its output at
        the visual positions (as the language model would; merged ones after merging)."""
        def hook(module, args, output):
            deepstack = self.call.deepstack if self.call else None
            if deepstack is None or j >= len(deepstack.features):
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = _add_at(hidden, deepstack.mask, deepstack.features[j])
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook

    def on_layer(self, index: int):
        def hook(module, args, kwargs):
            call = self.call
            if call is None:
                return None
            if index == call.k - 1 and self.needs_attention():
                call.attention = self.last_token_attention(module, args[0], kwargs)
            if index < call.k:
                return None
            if index == call.k:
                call.built = self.at_merge_layer(args[0], kwargs)
            if call.built is None:
                return None
            if index == call.k and call.merged_hidden is not None:
                args = (call.merged_hidden,) + tuple(args[1:])
                call.merged_hidden = None
            return args, {**kwargs, **call.built}
        return hook

    # --- layer k - 1 (FastV) ------------------------------------------------------------------
    def needs_attention(self) -> bool:
        call = self.call
        return call.prefill and call.config.query_aware and bool(call.spans)

    def last_token_attention(self, layer: nn.Module, hidden: Tensor, kwargs: dict) -> Tensor:
        """[B, L] what each token receives from the last prompt token at this layer (FastV
        ranks by layer k-1's attention map: its last row, averaged over heads)."""
        B, L, _ = hidden.shape
        return self.state.adapter.last_token_attention(layer, hidden, kwargs["position_embeddings"],
                                                       self._valid(B, L, hidden.device))

    # --- layer k ------------------------------------------------------------------------------
    def at_merge_layer(self, hidden: Tensor, kwargs: dict) -> dict | None:
        call = self.call
        if not call.prefill:
            prefill = _merged_prefill_of(call.cache)
            if prefill is None or not prefill.merges:
                return None
            return self.continue_after_prefill(hidden, prefill)
        spans = [s for s in call.spans if s.row < hidden.shape[0]]
        self._record(None)
        if not spans:
            return None
        if call.plan.keep_layer_input:
            rest = {k: v for k, v in kwargs.items() if k != "past_key_values"}
            call.outcome.layer_input = LayerInput(hidden, rest, call.mask_2d, call.positions,
                                                  call.deepstack)
        if call.config.merges_nothing:  # record the prefill, change nothing
            self._record(self._unmerged_prefill(hidden, spans))
            return None
        return self.reduce_prefill(hidden, kwargs, spans)

    def _record(self, prefill: MergedPrefill | None, timer: MergeTimer | None = None) -> None:
        """What the prefill did: for its planner, on its cache (the tokens after it need it)
        and as the model's read-out."""
        call = self.call
        call.outcome.prefill, call.outcome.merge_timer = prefill, timer
        _attach(call.cache, prefill)
        self.state.last = call.outcome

    def reduce_prefill(self, hidden: Tensor, kwargs: dict, spans: list[VideoSpan]) -> dict:
        call = self.call
        timer = MergeTimer(hidden.device) if call.plan.time_merge else None
        B, L, _ = hidden.shape
        device = hidden.device
        valid = self._valid(B, L, device)
        config, adapter = call.config, self.state.adapter
        attention = None if call.attention is None else call.attention.to(device)
        merged, slots, slot_valid, merges, token_slots = reduce_sequence(
            hidden, valid, spans, config, attention, adapter.keeps_every_frame)
        if call.deepstack is not None and call.k < len(call.deepstack.features):
            call.deepstack = reduce_deepstack(call.deepstack, spans, merges, token_slots, slots,
                                              slot_valid, call.k, config.area_weighted)
        rule = position_rule(config, adapter)
        renumber = rule == "reassign"
        prefill = MergedPrefill(L, slots, slot_valid, self._next_position(B, L, device), spans,
                                merges, renumber)
        call.merged_hidden = merged
        plain = (slot_valid.long().cumsum(-1) - 1).clamp_min(0)  # [B, L'] 0.. (pads 0)
        built = {"attention_mask": self._mask(merged, slot_valid.long())}
        if renumber:  # 1D RoPE: the merged sequence is numbered 0.. as generate numbers it
            built["position_embeddings"] = adapter.language_model.rotary_emb(merged, plain)
            built["position_ids"] = plain
        else:  # each kept token keeps its (representative's) ids, or their mean
            cos, sin = (_gather(x, slots) for x in kwargs["position_embeddings"])
            if rule == "mean":
                cos, sin = (_mean_positions(x, full, spans, merges, token_slots, config.area_weighted)
                            for x, full in zip((cos, sin), kwargs["position_embeddings"]))
            built["position_embeddings"] = (cos, sin)
            if kwargs.get("position_ids") is not None:  # the plain token index: FlashAttention
                built["position_ids"] = plain           # reads gaps in it as packed sequences
        if timer is not None:
            timer.stop()
        self._record(prefill, timer)
        return built

    def continue_after_prefill(self, hidden: Tensor, prefill: MergedPrefill) -> dict:
        """q new tokens after the merged prefix: their mask over [merged prefix, new tokens]
        and their positions (after a renumbered prefix: from L' by default, from L with
        decode_positions="official"; otherwise the original numbering, max + 1 onwards)."""
        call = self.call
        B, q, _ = hidden.shape
        device = hidden.device
        done = call.cache.get_seq_length(call.k) - prefill.merged_length  # tokens since prefill
        if call.mask_2d is not None:
            new_columns = call.mask_2d[:, prefill.length:].to(device).long()
        else:
            new_columns = torch.ones(B, done + q, dtype=torch.long, device=device)
        mask_2d = torch.cat([prefill.valid.to(device).long(), new_columns], dim=1)
        adapter = self.state.adapter
        if prefill.renumbered and call.config.decode_positions == "merged":
            first = prefill.valid.sum(1)  # merged prefix renumbered 0..L'_b-1
        else:
            first = prefill.next_position
        positions = adapter.text_positions(first.to(device) + done, q)
        built = {"attention_mask": self._mask(hidden, mask_2d),
                 "position_embeddings": adapter.language_model.rotary_emb(hidden, positions)}
        if adapter.position_mode == "reindex":
            built["position_ids"] = positions
        return built

    def _unmerged_prefill(self, hidden: Tensor, spans: list[VideoSpan]) -> MergedPrefill:
        B, L, _ = hidden.shape
        slots = torch.arange(L, device=hidden.device).expand(B, L)
        return MergedPrefill(L, slots, self._valid(B, L, hidden.device),
                             self._next_position(B, L, hidden.device), spans, [])

    # --- helpers ------------------------------------------------------------------------------
    def _next_position(self, B: int, L: int, device) -> Tensor:
        """[B] position of the token after the prefill: one more than its largest id (what
        generate() and the rope deltas continue with)."""
        positions = self._positions(B, L, device)  # [B, L] or [3, B, L]
        valid = self._valid(B, L, device)
        largest = positions.masked_fill(~valid, -1)
        if largest.dim() == 3:
            largest = largest.amax(0)
        return largest.amax(-1) + 1

    def _valid(self, B: int, L: int, device) -> Tensor:
        mask_2d = self.call.mask_2d
        if mask_2d is None:
            return torch.ones(B, L, dtype=torch.bool, device=device)
        return mask_2d[:, -L:].to(device).bool()

    def _positions(self, B: int, L: int, device) -> Tensor:
        """The prefill's position ids as the model numbered them ([B, L] or [3, B, L])."""
        positions = self.call.positions
        if positions is None:
            return torch.arange(L, device=device).expand(B, L)
        positions = self.state.adapter.rope_positions(positions)
        return positions.to(device).expand(*positions.shape[:-2], B, L)

    def _mask(self, embeds: Tensor, mask_2d: Tensor):
        lm = self.state.adapter.language_model
        call = self.call
        return create_causal_mask(config=lm.config, inputs_embeds=embeds, attention_mask=mask_2d,
                                  past_key_values=call.cache, layer_idx=call.k)


def remerge(model: nn.Module, cache, layer_input: LayerInput, plan: Plan) -> Prefilled:
    """Merge a prefill again with `plan` and re-run decoder layers k.. only: layers < k and
    the vision encoder are not touched, nor their cache.

    cache: the prefill's DynamicCache (its layers < k hold just the prefill); layer_input:
    what layer k received in it (a prefill planned with keep_layer_input). The cache then
    carries the new merge; returns what the merge left (the same layer input)."""
    state: STTMState = model.sttm
    prefill = _merged_prefill_of(cache)
    if prefill is None:
        raise RuntimeError("nothing to re-merge: this cache holds no patched prefill")
    k = plan.config.merge_layer
    for layer in cache.layers[k:]:
        layer.reset()
    call = _Call(plan, Prefilled(layer_input=layer_input), prefill.spans).begin(
        cache, layer_input.mask_2d, layer_input.positions, layer_input.deepstack)
    token = _CALL.set(call)  # the layers' hooks merge at layer k as in a prefill
    try:
        hidden = layer_input.hidden
        for layer in state.adapter.decoder_layers[k:]:
            hidden = layer(hidden, past_key_values=cache, **layer_input.kwargs)
    finally:
        _CALL.reset(token)
    return call.outcome


def reduce_sequence(hidden: Tensor, valid: Tensor, spans: list[VideoSpan], config: STTMConfig,
                    attention: Tensor | None = None, keep_every_frame: bool = False):
    """Reduce each video span of a batch of sequences; text tokens stay as they are.

    hidden [B, L, D], valid [B, L], attention [B, L] (query-aware methods only);
    keep_every_frame: the family needs a token in every token frame (see merge_video_tokens)
    -> (merged [B, L', D] left-padded, slots [B, L'] original index of each slot's
    representative, slot_valid [B, L'], MergeResults per span, token_slots per span: [N] the
    slot of each merged token). A merged token sits at its representative's place: its first
    patch in raster order.
    """
    B, L, D = hidden.shape
    device = hidden.device
    keep = valid.clone()
    replaced, merges = [], []
    for span in spans:
        T, H, W = span.grid
        grid_positions = span.positions.to(device)  # [T*H*W] in raster order
        scores = None if attention is None else attention[span.row, grid_positions].view(T, H, W)
        result = reduce_tokens(hidden[span.row, grid_positions].view(T, H, W, D), config, scores,
                               keep_every_frame=keep_every_frame)
        first_patch = (result.boxes[:, 0] * H + result.boxes[:, 1]) * W + result.boxes[:, 2]
        representatives = grid_positions[first_patch]
        keep[span.row, grid_positions] = False
        keep[span.row, representatives] = True
        replaced.append((span.row, representatives, result.features))
        merges.append(result)
    counts = keep.sum(1)  # [B]
    merged_length = int(counts.max())
    pad = merged_length - counts  # left padding keeps each row's last token in the last slot
    slots = torch.zeros(B, merged_length, dtype=torch.long, device=device)
    slot_valid = torch.arange(merged_length, device=device)[None] >= pad[:, None]
    for row in range(B):  # rows differ in length; a batch is small
        slots[row, slot_valid[row]] = keep[row].nonzero().flatten()
    merged = _gather(hidden, slots) * slot_valid[..., None]
    token_slots = []
    for row, representatives, features in replaced:
        slot = pad[row] + keep[row].cumsum(0)[representatives] - 1
        merged[row, slot] = features.to(merged.dtype)
        token_slots.append(slot)
    return merged, slots, slot_valid, merges, token_slots


def reduce_deepstack(deepstack: DeepStack, spans: list[VideoSpan], merges: list[MergeResult],
                     token_slots: list[Tensor], slots: Tensor, slot_valid: Tensor,
                     first_layer: int, area_weighted: bool) -> DeepStack:
    """DeepStack inputs for the merged sequence: its visual positions (mask [B, L']) and, for
    layers first_layer.., each video's features merged as its hidden states were (the same
    tokens and weights: `merge_like`); other visual tokens (images) keep their rows."""
    device = slots.device
    mask = deepstack.mask.to(device)                                  # [B, L]
    row_of = mask.flatten().long().cumsum(0).view_as(mask) - 1       # [B, L] feature row
    merged_mask = mask.gather(1, slots) & slot_valid                   # [B, L']
    merged_row_of = merged_mask.flatten().long().cumsum(0).view_as(merged_mask) - 1
    carried = row_of.gather(1, slots)[merged_mask]                     # [n'] rows kept as they are
    features = list(deepstack.features)
    for j in range(first_layer, len(features)):
        source = features[j].to(device)                               # [n, D]
        out = source[carried]                                          # [n', D]
        for span, result, token_slot in zip(spans, merges, token_slots):
            video = source[row_of[span.row, span.positions.to(device)]].view(*span.grid, -1)
            out[merged_row_of[span.row, token_slot]] = merge_like(
                result, video, area_weighted=area_weighted)
        features[j] = out
    return DeepStack(merged_mask, features)


def position_rule(config: STTMConfig, adapter: VideoLLMAdapter) -> str:
    """The config's position rule, or the family's and method's own: 1D RoPE renumbers
    ("reassign") unless the method keeps positions; M-RoPE keeps the representative's ids."""
    if config.position_rule is not None:
        return config.position_rule
    keeps = config.keeps_positions or adapter.position_mode != "reindex"
    return "survivor" if keeps else "reassign"


def _mean_positions(merged: Tensor, full: Tensor, spans: list[VideoSpan],
                    merges: list[MergeResult], token_slots: list[Tensor],
                    area_weighted: bool) -> Tensor:
    """RoPE cos (or sin) of the merged sequence [B, L', D] with each merged video token's
    replaced by the mean of its patches' (`merge_like`: the weights of its features).
    full: the prefill's [B or 1, L, D]."""
    merged = merged.clone()
    for span, result, slot in zip(spans, merges, token_slots):
        row = span.row if full.shape[0] > 1 else 0
        video = full[row, span.positions.to(full.device)].view(*span.grid, -1)  # [T, H, W, D]
        merged[span.row, slot] = merge_like(result, video, area_weighted=area_weighted).to(
            merged.device, merged.dtype)
    return merged


def _add_at(hidden: Tensor, mask: Tensor, features: Tensor) -> Tensor:
    """hidden [B, L, D] + features [n, D] at the n positions where mask [B, L] is True, as the
    DeepStack models compute it (a new tensor; features in hidden's dtype)."""
    mask = mask.to(hidden.device)
    hidden = hidden.clone()
    hidden[mask, :] = hidden[mask, :] + features.to(hidden.device, hidden.dtype)
    return hidden


def _gather(x: Tensor, slots: Tensor) -> Tensor:
    """x [B or 1, L, ...] gathered along the sequence with slots [B, L'] -> [B, L', ...] (on
    the slots' device)."""
    x = x.to(slots.device).expand(slots.shape[0], *x.shape[1:])
    index = slots.view(*slots.shape, *([1] * (x.dim() - 2))).expand(*slots.shape, *x.shape[2:])
    return torch.gather(x, 1, index)
