"""Score multiple-choice QA: accuracy with STTM and with all tokens, or fidelity between them.

Each video is prefilled once per setting; all its questions reuse the cached prefix. With
answers, accuracy is the share of parsed choices that are right (an unparseable reply counts
as wrong). Without answers, fidelity compares STTM with the all-token model: the share of
questions where both choose the same option, and the mean KL divergence of their first-token
distributions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

import torch

from .chat import VideoChat
from .config import STTMConfig
from .qa import QAItem, format_question, parse_choice


@dataclass
class Answer:
    item: QAItem
    text: str
    choice: str | None       # parsed letter, None when unclear
    ttft_s: float
    first_logits: torch.Tensor  # [V] fp32, for fidelity

    @property
    def correct(self) -> bool | None:
        return None if self.item.answer is None else self.choice == self.item.answer


@dataclass
class Score:
    """Scores of one setting (and of all tokens, when compared)."""

    answers: list[Answer]
    reference: list[Answer] = field(default_factory=list)  # the all-token model's answers

    @property
    def accuracy(self) -> float | None:
        return _accuracy(self.answers)

    @property
    def reference_accuracy(self) -> float | None:
        return _accuracy(self.reference)

    @property
    def agreement(self) -> float | None:
        """Share of questions where STTM picks the all-token model's option."""
        if not self.reference:
            return None
        same = [a.choice == r.choice for a, r in zip(self.answers, self.reference)]
        return sum(same) / len(same)

    @property
    def first_token_kl(self) -> float | None:
        """Mean KL(all tokens || STTM) of the first generated token's distribution."""
        if not self.reference:
            return None
        kls = [_kl(r.first_logits, a.first_logits) for a, r in zip(self.answers, self.reference)]
        return sum(kls) / len(kls)


def answer_questions(chat: VideoChat, items: list[QAItem], *, num_frames: int | None = None,
                     max_new_tokens: int = 8, progress=None) -> list[Answer]:
    """Ask every question with `chat`'s settings, loading each video once (items are grouped
    by video, order kept within a video)."""
    answers, done = [], 0
    for video, group in groupby(sorted(items, key=lambda i: str(i.video)), key=lambda i: i.video):
        chat.load_video(video, num_frames)
        for item in group:
            reply = chat.ask(format_question(item), max_new_tokens=max_new_tokens)
            answers.append(Answer(item, reply.text, parse_choice(reply.text, len(item.options),
                                                                 item.options),
                                  reply.ttft_s, chat.last_first_logits))
            done += 1
            if progress:
                progress(done, len(items))
    return answers


def score(chat: VideoChat, items: list[QAItem], *, compare: bool = True, **kwargs) -> Score:
    """Answers with the chat's STTM settings, and (compare=True) with all tokens."""
    answers = answer_questions(chat, items, **kwargs)
    reference = []
    if compare:
        everything = VideoChat(chat.loaded, STTMConfig.disabled(chat.config.merge_layer),
                               num_frames=chat.num_frames, max_pixels=chat.settings.get("max_pixels"))
        reference = answer_questions(everything, items, **kwargs)
    return Score(answers, reference)


def _accuracy(answers: list[Answer]) -> float | None:
    graded = [a.correct for a in answers if a.correct is not None]
    return sum(graded) / len(graded) if graded else None


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    p, q = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return float((p.exp() * (p - q)).sum())
