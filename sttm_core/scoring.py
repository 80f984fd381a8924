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

from .chat import Reply, VideoChat
from .config import STTMConfig
from .merge import MergeResult
from .qa import QAItem, format_question, options_in, parse_choice


@dataclass
class Answer:
    item: QAItem
    text: str
    choice: str | None       # parsed letter, None when unclear
    ttft_s: float
    first_logits: torch.Tensor  # [V] fp32, for fidelity
    reply: Reply             # tokens, timings, cache reuse
    merge: MergeResult | None  # the merge the answer was given on (None: all tokens)

    @property
    def correct(self) -> bool | None:
        return None if self.item.answer is None else self.choice == self.item.answer

    def agrees_with(self, other: "Answer") -> bool:
        """Same option chosen; when neither reply names one, the same text."""
        return _same(self.choice, other.choice, self.text, other.text)


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
        same = [a.agrees_with(r) for a, r in zip(self.answers, self.reference)]
        return sum(same) / len(same)

    @property
    def first_token_kl(self) -> float | None:
        """Mean KL(all tokens || STTM) of the first generated token's distribution."""
        if not self.reference:
            return None
        kls = [first_token_kl(r.first_logits, a.first_logits)
               for a, r in zip(self.answers, self.reference)]
        return sum(kls) / len(kls)


def answer_questions(chat: VideoChat, items: list[QAItem], *, num_frames: int | None = None,
                     max_new_tokens: int = 8, progress=None) -> list[Answer]:
    """Ask every question with `chat`'s settings, each video prefilled once (items are grouped
    by video, order kept within a video). A video the chat already holds is not decoded or
    encoded again, so sweeping settings re-runs only the language model."""
    answers, done = [], 0
    for video, group in groupby(sorted(items, key=lambda i: str(i.video)), key=lambda i: i.video):
        frames = num_frames or chat.num_frames
        clip = chat.clip
        if clip is not None and clip.path == str(video) and clip.num_frames == min(
                frames, clip.total_frames):
            chat.reset_prefix()
        else:
            chat.load_video(video, frames)
        for item in group:
            reply = chat.ask(format_question(item), max_new_tokens=max_new_tokens)
            choice = parse_choice(reply.text, len(item.options), item.options)
            answers.append(Answer(item, reply.text, choice, reply.ttft_s, chat.last_first_logits,
                                  reply, chat.merge_result))
            done += 1
            if progress:
                progress(done, len(items))
    return answers


def score(chat: VideoChat, items: list[QAItem], *, compare: bool = True, **kwargs) -> Score:
    """Answers with the chat's STTM settings, and (compare=True) with all tokens."""
    answers = answer_questions(chat, items, **kwargs)
    reference = []
    if compare:
        everything = chat.sibling(STTMConfig.all_tokens(chat.config.merge_layer))
        reference = answer_questions(everything, items, **kwargs)
    return Score(answers, reference)


def same_answer(question: str, text: str, other: str) -> bool:
    """Two replies to one question agree, by the rule scoring uses: the same option letter
    (parsed with the options the question lists, see qa.options_in), or, when neither names
    one (or the question lists none), the same text."""
    options = options_in(question)
    if not options:
        return text.strip() == other.strip()
    return _same(parse_choice(text, len(options), options),
                 parse_choice(other, len(options), options), text, other)


def _same(choice: str | None, other_choice: str | None, text: str, other: str) -> bool:
    if choice is None and other_choice is None:
        return text.strip() == other.strip()
    return choice == other_choice


def _accuracy(answers: list[Answer]) -> float | None:
    graded = [a.correct for a in answers if a.correct is not None]
    return sum(graded) / len(graded) if graded else None


def first_token_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """KL(p || q) of two first-token distributions given as logits [V] (nats, fp32)."""
    p, q = p_logits.float().cpu().log_softmax(-1), q_logits.float().cpu().log_softmax(-1)
    return float((p.exp() * (p - q)).sum())
