"""The lmms-eval model behind `--model sttm`: a VideoChat answers generate_until requests, and
each video is prefilled once for all of its questions.

lmms-eval hands over all requests of a run in one call; each Instance.args is
(context, gen_kwargs, doc_to_visual, doc_id, task, split). Every request is checked first
(one video file, generation settings this model can follow), so a bad one stops the run
before any work is done. Then the requests are answered grouped by video, videos in the order
they first appear, questions in request order; the answers come back in request order.
STTM ignores the question, so a video's merged prefix is built by its first question and
reused by the rest; a query-aware method (FastV) prefills again for every question (VideoChat
decides that from the method).

Importing this module imports lmms-eval; only lmms-eval imports it (through the manifest).
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from tqdm import tqdm

from ..chat import Reply, VideoChat
from ..config import STTMConfig
from ..models.checkpoints import load_model
from .options import parse_model_args

log = logging.getLogger(__name__)

PLACEHOLDERS = ("<image>", "<video>")  # VideoChat puts the video into the prompt itself
NEUTRAL = {"top_p": 1.0, "num_beams": 1}  # generation kwargs tasks pass that change nothing
FOLLOWED = {"until", "max_new_tokens", "temperature", "do_sample"}


@dataclass(frozen=True)
class Question:
    """One generate_until request, checked."""

    index: int             # its place among the requests
    task: str
    doc_id: int
    video: str             # path of the video file
    text: str              # the context without image / video placeholders
    max_new_tokens: int
    temperature: float     # 0: greedy
    until: tuple[str, ...]  # the answer is cut at the first of these


class STTMLmms(lmms):
    """`--model sttm --model_args pretrained=<id or dir>[,tau_s=..,tau_t=..|,keep_ratio=..]...`
    (all model_args: sttm_core.lmms_plugin.options.KNOWN; the README explains them)."""

    is_simple = True  # requests carry the prompt text and doc_to_visual (not chat messages)

    def __init__(self, **model_args) -> None:
        super().__init__()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("the sttm model runs in one process: lmms-eval would deal each "
                             "video's questions to different processes, and none could reuse "
                             "a prefix; launch it without accelerate / torchrun")
        self.settings = parse_model_args(model_args)
        s = self.settings
        if s.log_file:  # a log that cannot be written fails now, before the model loads
            Path(s.log_file).parent.mkdir(parents=True, exist_ok=True)
            open(s.log_file, "a").close()
        loaded = load_model(s.pretrained, device=s.device,
                            dtype=None if s.dtype == "auto" else getattr(torch, s.dtype),
                            attn_implementation=s.attn_implementation, max_pixels=s.max_pixels)
        self.chat = VideoChat(loaded, s.config, num_frames=s.num_frames,
                              max_new_tokens=s.max_new_tokens)
        self._video: str | None = None  # the video the chat holds
        log.info("sttm model: %s, %s, %d frames per video", s.pretrained, s.config, s.num_frames)

    @property
    def config(self) -> STTMConfig:
        return self.settings.config

    def generate_until(self, requests) -> list[GenerationResult]:
        questions = [self._question(i, request) for i, request in enumerate(requests)]
        _warn_unused(requests)
        by_video: dict[str, list[Question]] = {}
        for question in questions:
            by_video.setdefault(question.video, []).append(question)
        results: list[GenerationResult | None] = [None] * len(questions)
        sink = open(self.settings.log_file, "a") if self.settings.log_file else nullcontext()
        with sink, tqdm(total=len(questions), desc="sttm", disable=self.rank != 0) as bar:
            for group in by_video.values():
                for question in group:
                    results[question.index] = self._answer(question, sink)
                    bar.update()
        return results

    def loglikelihood(self, requests):
        raise NotImplementedError("the sttm model only generates answers (generate_until "
                                  "tasks); loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the sttm model answers single-round questions only "
                                  "(generate_until); multi-round tasks are not supported")

    # --- one request -----------------------------------------------------------------------------
    def _question(self, index: int, request) -> Question:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        where = f"task {task}, doc {doc_id}"
        video = _one_video(doc_to_visual(self.task_dict[task][split][doc_id]), where)
        text = context
        for placeholder in PLACEHOLDERS:
            text = text.replace(placeholder, "")
        if not text.strip():
            raise ValueError(f"{where}: the question is empty")
        gen_kwargs = dict(gen_kwargs or {})
        if int(gen_kwargs.get("num_beams") or 1) > 1:
            raise ValueError(f"{where}: num_beams={gen_kwargs['num_beams']}: the sttm model "
                             "decodes greedily or samples; it has no beam search")
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        if gen_kwargs.get("do_sample") is False:
            temperature = 0.0
        until = gen_kwargs.get("until") or ()
        until = (until,) if isinstance(until, str) else tuple(s for s in until if s)
        return Question(index, task, doc_id, video, text.strip(),
                        int(gen_kwargs.get("max_new_tokens") or self.settings.max_new_tokens),
                        temperature, until)

    def _answer(self, question: Question, sink) -> GenerationResult:
        if question.video != self._video:
            self._video = None  # until the new one has loaded
            self.chat.load_video(question.video)  # decoded now; its first question prefills it
            self._video = question.video
        self.chat.temperature = question.temperature
        reply = self.chat.ask(question.text, max_new_tokens=question.max_new_tokens)
        self._record(question, reply, sink)
        return GenerationResult(cut_at_stop(reply.text, question.until),
                                TokenCounts(input_tokens=reply.tokens_after,
                                            output_tokens=reply.num_generated))

    def _record(self, question: Question, reply: Reply, sink) -> None:
        """The request's costs: the JSONL log (when log_file is set), logging, and lmms-eval's
        throughput metrics (their averages land in results.json, e.g. avg_ttft)."""
        row = dict(doc_id=_plain(question.doc_id), task=question.task, video=question.video,
                   method=self.config.method, tokens_before=reply.tokens_before,
                   tokens_after=reply.tokens_after, keep_ratio=float(reply.keep_ratio),
                   ttft_s=reply.ttft_s, cache_reused=reply.cache_reused,
                   num_generated=reply.num_generated, total_s=reply.total_s,
                   timings={k: v if v is None else float(v) for k, v in reply.timings.items()})
        if self.settings.log_file:
            sink.write(json.dumps(row) + "\n")
            sink.flush()  # a run that stops keeps every row written so far
        log.info("%s doc %s: %d -> %d prefill tokens (video keep %.3f), TTFT %.3f s%s",
                 question.task, question.doc_id, reply.tokens_before, reply.tokens_after,
                 reply.keep_ratio, reply.ttft_s, ", prefix reused" if reply.cache_reused else "")
        log_metrics(total_elapsed_time=reply.total_s, total_gen_tokens=reply.num_generated,
                    avg_speed=reply.num_generated / reply.total_s if reply.total_s > 0 else 0.0,
                    additional_metrics={"ttft": reply.ttft_s, "tokens_before": reply.tokens_before,
                                        "tokens_after": reply.tokens_after,
                                        "keep_ratio": float(reply.keep_ratio),
                                        "prefix_reused": int(reply.cache_reused)})


def cut_at_stop(text: str, until) -> str:
    """The text up to the first occurrence of any stop string (lmms-eval's `until`)."""
    cut = min((text.find(stop) for stop in until if stop and stop in text), default=len(text))
    return text[:cut]


def _one_video(visuals, where: str) -> str:
    """The single video file a doc shows (doc_to_visual gives a list of paths)."""
    if isinstance(visuals, (str, os.PathLike)):
        visuals = [visuals]
    paths = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
    if len(paths) != 1 or not isinstance(paths[0], (str, os.PathLike)):
        shown = ", ".join(type(v).__name__ for v in paths) or "nothing"
        raise ValueError(f"{where}: the sttm model answers about one video file per question; "
                         f"the task's doc_to_visual gives {shown}")
    path = Path(paths[0])
    if not path.is_file():
        raise ValueError(f"{where}: the video {path} does not exist")
    return str(path)


def _warn_unused(requests) -> None:
    """Say once which generation kwargs of the tasks this model does not follow."""
    unused = {f"{k}={v!r}" for r in requests for k, v in (r.args[1] or {}).items()
              if k not in FOLLOWED and v is not None and not (k in NEUTRAL and v == NEUTRAL[k])}
    if unused:
        log.warning("the sttm model does not use these generation kwargs: %s",
                    ", ".join(sorted(unused)))


def _plain(value):
    """A JSON-friendly doc id (numpy ints become ints)."""
    return value.item() if hasattr(value, "item") else value
