"""Multiple-choice video QA sets: load them, render the prompt, read the model's choice.

Imports the standard library only (pandas lazily, for VideoMME parquet files).

QA file format
--------------
JSON Lines, one question per line (blank lines are skipped):

    {"video": "static.mp4", "question": "Where is the small blinking light?",
     "options": ["top-left corner", "top-right corner", "bottom-left corner",
                 "bottom-right corner"],
     "answer": "B", "category": "static", "task": "retrieval", "id": "static/3"}

    video     path of the video, relative to the QA file's folder (or absolute). Required.
    question  text. Required.
    options   list of >= 2 distinct plain strings; their letters A, B, ... are implied by order
              (do not write "A. " in front). Required.
    answer    letter of the right option (case-insensitive; the exact text of one option is
              accepted too). Optional: without it, scoring falls back to agreement (fidelity)
              with the all-token model.
    category  content type, e.g. static / fast_motion / scene_cuts. Optional.
    task      question kind, e.g. retrieval / ordering / counting. Optional.
    id        unique name of the question. Optional; defaults to "<file name>:<line>". Two
              questions with the same id are a QAError naming the id and both lines.
    Any other key is kept in `QAItem.meta`.

Also accepted, with the same keys:
  * .json: a list of such objects.
  * .csv:  a header row, then one question per row; columns video, question, answer,
           category, task, id and either option_a, option_b, ... (trailing empty ones are
           ignored) or one `options` column with the options separated by '|'.
  * a folder: every *.jsonl / *.json / *.csv in it (sorted by name). A question that is
    repeated exactly (same video, question, options, answer), e.g. in a per-video file and
    in a combined file, is kept once; the ids of the questions kept must be unique.

Every problem is a `QAError` (a ValueError) whose message starts with "<file>:<line>:" ("<file>:"
for whole-file problems) and says what is wrong: a missing field, fewer than 2 options, an
answer letter out of range, an unknown file type, a video that does not exist, text that is not
UTF-8, a CSV field over the csv module's 128 KiB limit, JSON nested too deeply, ...

Limits, so that a hostile file cannot make the model allocate a prompt of millions of tokens:
a QA file holds at most MAX_QA_FILE_BYTES (20 MiB; split bigger sets into files in one folder),
a question at most MAX_QUESTION_CHARS (2000) characters, an option at most MAX_OPTION_CHARS
(1000).

Public benchmarks
-----------------
`load_videomme`, `load_vnbench`, `load_nextqa` read the annotation files of VideoMME, VNBench
and NExT-QA (multiple choice) as published; their docstrings give the fields they expect.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_uppercase

log = logging.getLogger(__name__)

QA_SUFFIXES = (".jsonl", ".json", ".csv")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
PROMPT_SUFFIX = "Answer with the option's letter from the given choices directly."
_FIELDS = ("video", "question", "options", "answer", "category", "task", "id")
MAX_QA_FILE_BYTES = 20 * 2**20  # the largest public sets (VNBench, VideoMME) are a few MB
MAX_QUESTION_CHARS = 2000       # ~500 tokens; benchmark questions are a few hundred characters
MAX_OPTION_CHARS = 1000


class QAError(ValueError):
    """A QA file is malformed or names a missing video; the message says where and why."""


@dataclass
class QAItem:
    """One multiple-choice question about one video."""

    video: Path                 # resolved path of the video file
    question: str
    options: list[str]          # option i has letter ascii_uppercase[i]
    answer: str | None = None   # "A".., or None when the set has no ground truth
    category: str | None = None
    task: str | None = None
    id: str = ""
    meta: dict = field(default_factory=dict)  # extra fields of the source annotation

    @property
    def letters(self) -> str:
        return ascii_uppercase[:len(self.options)]

    @property
    def answer_index(self) -> int | None:
        return None if self.answer is None else self.letters.index(self.answer)

    @property
    def answer_text(self) -> str | None:
        return None if self.answer is None else self.options[self.answer_index]


# ----------------------------------------------------------------------------- our format

def load_qa(path, *, missing: str = "error") -> list[QAItem]:
    """Questions from a .jsonl / .json / .csv file, or from every such file in a folder.

    missing: "error" raises a QAError naming a question whose video does not exist;
             "skip" drops such questions with a warning; "keep" keeps every question as
             written (for callers that match videos themselves, e.g. by file name).
    """
    path = Path(path)
    _check_missing_arg(missing)
    return [item for _, item in _qa_pairs(path, missing)]


def _qa_pairs(path: Path, missing: str) -> list[tuple[str, QAItem]]:
    """(where, item) per question of load_qa(path): ids checked unique, `missing` applied."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in QA_SUFFIXES)
        if not files:
            raise QAError(f"{path}: folder holds no QA files ({', '.join(QA_SUFFIXES)})")
        pairs, seen = [], set()
        for file in files:
            for where, item in _qa_pairs(file, missing):
                key = (item.video.resolve(), item.question, tuple(item.options), item.answer)
                if key not in seen:
                    seen.add(key)
                    pairs.append((where, item))
        _check_unique_ids(pairs, path)
        return pairs
    if not path.exists():
        raise QAError(f"{path}: no such QA file")
    suffix = path.suffix.lower()
    if suffix not in QA_SUFFIXES:
        raise QAError(f"{path}: unknown QA file type {suffix or '(no extension)'!r}; "
                      f"use one of {', '.join(QA_SUFFIXES)} or a folder of them")
    records = {".jsonl": _jsonl_records, ".json": _json_records, ".csv": _csv_records}[suffix](path)
    pairs = [(f"{path}:{line}", _item(rec, path.parent, f"{path}:{line}", f"{path.name}:{line}"))
             for line, rec in records]
    _check_unique_ids(pairs, path)
    return _kept(pairs, missing, path)


def _check_unique_ids(pairs: list[tuple[str, QAItem]], source: Path) -> None:
    """A QAError naming every id that more than one question carries, and where: sweeps and
    scores match answers to questions by id, so a shared id would merge two questions.
    `source`: the file the pairs come from ("question 3 (line 5)"), or a folder ("a.jsonl:5")."""
    places: dict[str, list[tuple[int, str]]] = {}
    for number, (where, item) in enumerate(pairs, 1):
        places.setdefault(item.id, []).append((number, where))
    repeated = {qid: at for qid, at in places.items() if len(at) > 1}
    if not repeated:
        return

    def where_(at: list[tuple[int, str]]) -> str:
        if source.is_dir():  # files directly in the folder: their names are enough
            return " and ".join(Path(where).name for _, where in at)
        lines = " and ".join(where.rsplit(":", 1)[1] for _, where in at)
        return f"questions {' and '.join(str(n) for n, _ in at)} (lines {lines})"

    shown = "; ".join(f"id {_short(qid)} is shared by {where_(at)}"
                      for qid, at in list(repeated.items())[:5])
    more = f"; and {len(repeated) - 5} more shared id(s)" if len(repeated) > 5 else ""
    first_repeat = min((at[1] for at in repeated.values()), key=lambda nw: nw[0])[1]
    raise QAError(f"{first_repeat}: duplicate question id(s): {shown}{more}. Every question "
                  "needs its own id (sweeps and scores match answers to questions by it)")


def _jsonl_records(path: Path):
    """(line, dict) per non-blank line."""
    for line, text in enumerate(_read_text(path).splitlines(), 1):
        if not text.strip():
            continue
        with _json_errors(path, line):
            record = json.loads(text)
        yield line, record


def _json_records(path: Path):
    """(line where the object starts, dict) per element of the top-level list."""
    text = _read_text(path)
    with _json_errors(path):
        data = json.loads(text)
    if not isinstance(data, list):
        raise QAError(f"{path}:1: expected a list of question objects, got {type(data).__name__}")
    return zip(_element_lines(text), data)


@contextmanager
def _json_errors(path: Path, line: int | None = None):
    """Any failure of json.loads inside as a QAError naming the file and, if known, the line
    (`line`: the JSON Lines line being parsed; else the decoder's)."""
    where = str(path) if line is None else f"{path}:{line}"
    try:
        yield
    except json.JSONDecodeError as err:
        raise QAError(f"{path}:{line or err.lineno}: not valid JSON "
                      f"({err.msg} at column {err.colno})") from None
    except RecursionError:  # the decoder recurses once per nesting level
        raise QAError(f"{where}: JSON nested too deeply to be a question record") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise QAError(f"{where}: JSON value cannot be read ({err})") from None


def _element_lines(text: str):
    """Line numbers where the elements of the (valid) top-level JSON list start."""
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    while True:
        pos = _skip(text, pos, " \t\r\n,")
        if text[pos] == "]":
            return
        yield text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)


def _skip(text: str, pos: int, chars: str) -> int:
    while text[pos] in chars:
        pos += 1
    return pos


def _csv_records(path: Path):
    """(line, dict) per data row; options from option_a.. columns or an `options` column."""
    reader = _csv_reader(path)
    with _csv_errors(path, reader):
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        option_cols = [c for c in columns if re.fullmatch(r"option_[a-z]", c)]
        absent = [c for c in ("video", "question") if c not in columns]
        if not option_cols and "options" not in columns:
            absent.append("option_a, option_b, ... or options")
        if absent:
            raise QAError(f"{path}:1: CSV header lacks column(s) {', '.join(absent)} "
                          f"(has {', '.join(columns) or 'none'})")
        reader.fieldnames = columns
        for row in reader:
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            if option_cols:
                options = [row.pop(c) for c in sorted(option_cols)]
                while options and not options[-1]:
                    options.pop()
            else:
                options = [o.strip() for o in row.pop("options").split("|")]
            yield reader.line_num, {**{k: v for k, v in row.items() if v}, "options": options}


def _csv_reader(path: Path) -> csv.DictReader:
    # read whole (the file is under MAX_QA_FILE_BYTES) so a bad encoding is found up front
    return csv.DictReader(io.StringIO(_read_text(path), newline=""))


@contextmanager
def _csv_errors(path: Path, reader: csv.DictReader):
    """A csv.Error inside (a field over csv.field_size_limit(), a NUL byte, ...) as a QAError
    naming the line the reader stopped at."""
    try:
        yield
    except csv.Error as err:
        hint = (f"; a question may have at most {MAX_QUESTION_CHARS:,} characters"
                if "field limit" in str(err) else "")
        line = reader.reader.line_num  # DictReader's own line_num lags a row behind errors
        raise QAError(f"{path}:{line}: not valid CSV ({err}){hint}") from None


def _item(rec, base: Path, where: str, default_id: str) -> QAItem:
    """Validate one record of our format; `where` ("file:line") prefixes every error."""
    if not isinstance(rec, dict):
        raise QAError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for key in ("video", "question", "options"):
        if rec.get(key) in (None, "", []):
            raise QAError(f"{where}: missing required field {key!r}")
    video, question = rec["video"], rec["question"]
    if not isinstance(video, str) or not isinstance(question, str) or not question.strip():
        raise QAError(f"{where}: 'video' and 'question' must be non-empty strings")
    _check_length(question.strip(), MAX_QUESTION_CHARS, "question", where)
    options = _options(rec["options"], where)
    optional = {}
    for key in ("category", "task", "id"):
        value = rec.get(key)
        if value is not None and not isinstance(value, (str, int)):
            raise QAError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        optional[key] = None if value in (None, "") else str(value)
    return QAItem(video=_resolve(video, base), question=question.strip(), options=options,
                  answer=_answer(rec.get("answer"), options, where, text_first=False),
                  category=optional["category"], task=optional["task"],
                  id=optional["id"] or default_id,
                  meta={k: v for k, v in rec.items() if k not in _FIELDS})


def _options(raw, where: str) -> list[str]:
    if isinstance(raw, str):
        raise QAError(f"{where}: 'options' must be a list of strings, got one string")
    if not isinstance(raw, list) or not all(isinstance(o, (str, int, float)) for o in raw):
        raise QAError(f"{where}: 'options' must be a list of strings")
    options = [str(o).strip() for o in raw]
    if len(options) < 2:
        raise QAError(f"{where}: needs at least 2 options, got {len(options)}")
    if len(options) > len(ascii_uppercase):
        raise QAError(f"{where}: at most {len(ascii_uppercase)} options, got {len(options)}")
    if not all(options):
        raise QAError(f"{where}: option {ascii_uppercase[options.index('')]} is empty")
    for letter, option in zip(ascii_uppercase, options):
        _check_length(option, MAX_OPTION_CHARS, f"option {letter}", where)
    if len({o.casefold() for o in options}) < len(options):
        raise QAError(f"{where}: options must be distinct, got {options}")
    return options


def _check_length(text: str, limit: int, what: str, where: str) -> None:
    if len(text) > limit:
        raise QAError(f"{where}: {what} is {len(text):,} characters long; at most {limit:,} "
                      f"are allowed")


def _short(value, limit: int = 60) -> str:
    """repr of a value for a message, cut to `limit` characters (a field may be megabytes)."""
    return _clip(repr(value), limit)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _answer(raw, options: list[str], where: str, text_first: bool) -> str | None:
    """Letter of the answer: a letter in range, or the exact text of one option (tried first
    when `text_first`, for benchmarks whose ground truth is the option text)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    letters = ascii_uppercase[:len(options)]
    if not isinstance(raw, str):
        raise QAError(f"{where}: 'answer' must be an option letter ({letters[0]}-{letters[-1]}), "
                      f"got {_short(raw)}")
    text = raw.strip()
    if text_first and text in options:
        return letters[options.index(text)]
    if len(text) == 1 and text.upper() in letters:
        return text.upper()
    if text in options:
        return letters[options.index(text)]
    if len(text) == 1 and text.isalpha():
        raise QAError(f"{where}: answer {_short(text)} is out of range for {len(options)} options "
                      f"({letters[0]}-{letters[-1]})")
    raise QAError(f"{where}: answer {_short(text)} is neither an option letter "
                  f"({letters[0]}-{letters[-1]}) nor the text of an option")


def _resolve(video: str, base: Path) -> Path:
    path = _expand(video)
    return path if path.is_absolute() else base / path


def _expand(video: str) -> Path:
    try:
        return Path(video).expanduser()
    except RuntimeError:  # "~someone/..." for a user this machine does not have
        return Path(video)


def _finish(pairs: list[tuple[str, QAItem]], missing: str, source: Path) -> list[QAItem]:
    """The items of (where, item) pairs, after the `missing` policy for absent videos."""
    return [item for _, item in _kept(pairs, missing, source)]


def _kept(pairs: list[tuple[str, QAItem]], missing: str,
          source: Path) -> list[tuple[str, QAItem]]:
    """The (where, item) pairs left after the `missing` policy for absent videos."""
    if not pairs:
        raise QAError(f"{source}: contains no questions")
    if missing == "keep":
        return pairs
    absent = [(where, item) for where, item in pairs if not _is_file(item.video)]
    if absent and missing == "error":
        where, item = absent[0]
        more = (f" (and {len(absent) - 1} more question(s) whose video is missing)"
                if len(absent) > 1 else "")
        raise QAError(f"{where}: video file not found: {item.video}{more}")
    if absent:
        log.warning("%s: skipping %d of %d questions whose video is missing, e.g. %s",
                    source, len(absent), len(pairs), absent[0][1].video)
    return [(where, item) for where, item in pairs if _is_file(item.video)]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def _check_missing_arg(missing: str) -> None:
    if missing not in ("error", "skip", "keep"):
        raise ValueError(f"missing must be 'error', 'skip' or 'keep', got {missing!r}")


def _read_text(path: Path) -> str:
    try:
        _check_size(path)
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise QAError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                      "save it as UTF-8") from None
    except OSError as err:
        raise QAError(f"{path}: cannot be read ({err.strerror or err})") from None


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_QA_FILE_BYTES:
        raise QAError(f"{path}: {size / 2**20:.1f} MiB is more than a QA file may hold "
                      f"({MAX_QA_FILE_BYTES / 2**20:.0f} MiB); split it into several files "
                      "in one folder")


# ----------------------------------------------------------------------------- prompt / parse

def format_question(item: QAItem) -> str:
    """The prompt used by VNBench / LLaVA-Video / VideoMME evaluations:

        <question>
        A. <option>
        B. <option>
        Answer with the option's letter from the given choices directly.
    """
    lines = [item.question] + [f"{letter}. {option}"
                               for letter, option in zip(ascii_uppercase, item.options)]
    return "\n".join(lines + [PROMPT_SUFFIX])


def options_in(question: str) -> list[str]:
    """The options a question lists as `format_question` writes them ("A. cat" lines, from
    A on, in order); [] when it lists none."""
    options = []
    for line in question.splitlines():
        m = re.match(r"\s*([A-Z])[.)]\s+(.+)", line)
        if m and len(options) < len(ascii_uppercase) and m.group(1) == ascii_uppercase[len(options)]:
            options.append(m.group(2).strip())
    return options


# "answer is B", "Answer: (b)", "the correct option is C", "choice D"
_KEYWORD = re.compile(r"\b(?:answer|option|choice)\b(?:\s+(?:is|would be|should be))?\s*[:=\-]?"
                      r"\s*[(\[]?([A-Za-z])(?![A-Za-z'])", re.IGNORECASE)
# "B", "(B)", "[b]", "B.", "B)", "b) cat", "B: cat", "B, because", "B\nExplanation"
_LEADING = re.compile(r"[(\[]?([A-Za-z])(?:[)\]]|[.:,]|\s*$|\s*\n)")
# a capital letter standing alone
_LONE = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])")
# after the letter: the article "a cat" / "A cat" or the pronoun "I think", not "A is"/"A or"
_WORD_AFTER = re.compile(r"\s+(?!(?:is|or|and|nor)\b)[a-z]")


def parse_choice(text: str, n_options: int, options: list[str] | None = None) -> str | None:
    """Letter ("A"..) of the option a model's reply picks, or None when it is unclear.

    Tried in order; the first rule that finds something decides:
    1. the reply starts with a letter: "B", "(B)", "B.", "b) cat", "B: cat", "B, because ..."
    2. an explicit phrase: "The answer is B", "Answer: (c)", "I choose option D"
    3. with `options`: the reply is, or contains (as whole words), the text of exactly one option
    4. exactly one distinct capital letter in range stands alone in the reply ("I think C")
    A letter out of range, or two different letters at the same rule, gives None.
    """
    if not 1 <= n_options <= len(ascii_uppercase):
        raise ValueError(f"n_options must be in 1..{len(ascii_uppercase)}, got {n_options}")
    letters = ascii_uppercase[:n_options]
    text = re.sub(r"<[^>]*>|[*_`#]", " ", text or "").strip()  # chat/markdown decoration
    if not text:
        return None

    leading = _LEADING.match(text)
    if leading:
        return _one({leading.group(1).upper()}, letters)
    keyword = {m.group(1).upper() for m in _KEYWORD.finditer(text) if not _article(text, m)}
    if keyword:
        return _one(keyword, letters)
    if options:
        picked = _option_match(text, options[:n_options])
        if picked is not None:
            return letters[picked]
    return _one({m.group(1) for m in _LONE.finditer(text) if not _article(text, m)}, letters)


def _article(text: str, m: re.Match) -> bool:
    """The matched letter is the word "a"/"A"/"I" starting a phrase, not a choice."""
    return m.group(1) in "aAI" and bool(_WORD_AFTER.match(text, m.end(1)))


def _one(found: set[str], letters: str) -> str | None:
    if len(found) != 1:
        return None
    (letter,) = found
    return letter if letter in letters else None


def _option_match(text: str, options: list[str]) -> int | None:
    """Index of the one option whose text is the reply or appears in it as whole words."""
    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", s.casefold()).split())

    reply = norm(text)
    exact = [i for i, o in enumerate(options) if norm(o) == reply]
    if exact:
        return exact[0] if len(exact) == 1 else None
    inside = [i for i, o in enumerate(options)
              if norm(o) and re.search(rf"(?<!\w){re.escape(norm(o))}(?!\w)", reply)]
    # "red star" contains "star": keep only options not contained in another match
    inside = [i for i in inside
              if not any(j != i and norm(options[i]) in norm(options[j]) for j in inside)]
    return inside[0] if len(inside) == 1 else None


# ----------------------------------------------------------------------------- public benchmarks

def load_videomme(path, video_dir, *, missing: str = "error") -> list[QAItem]:
    """VideoMME (lmms-lab/Video-MME) questions.

    path: `videomme/test-00000-of-00001.parquet` from the Hugging Face dataset (needs pandas
    with pyarrow or fastparquet), or a .json/.jsonl export of it. Flat records have the fields
    of that parquet: video_id ("001"), duration (short/medium/long), domain, sub_category,
    url, videoID (YouTube id = file name), question_id, task_type, question, options
    (["A. ...", "B. ...", ...]) and answer (a letter). Records of the official evaluation JSON,
    one per video with the questions in a "questions" list, are accepted too.
    video_dir: the folder holding <videoID>.mp4 (the dataset's `data/`).
    QAItem: category = domain, task = task_type, id = question_id; meta keeps duration,
    sub_category, video_id.
    """
    path, video_dir = Path(path), Path(video_dir)
    _check_missing_arg(missing)
    if path.suffix.lower() == ".parquet":
        records = _parquet_records(path)
    else:
        records = _benchmark_json(path)
    pairs = []
    for where, rec in records:
        nested = isinstance(rec.get("questions"), list)
        for k, sub in enumerate(rec["questions"] if nested else [{}]):
            here = f"{where} question {k + 1}" if nested else where
            if not isinstance(sub, dict):
                raise QAError(f"{here}: expected a JSON object, got {type(sub).__name__}")
            merged = {**rec, **sub}
            stem = str(merged.get("videoID") or merged.get("video_id") or "")
            options = [_strip_letter(o) for o in _list_field(merged, ("options",), here)]
            pairs.append(_bench_item(
                here, _find_video(video_dir, stem, here), merged, options,
                answer=merged.get("answer"), text_first=False,
                category=merged.get("domain"), task=merged.get("task_type"),
                id=merged.get("question_id"),
                meta={k: merged[k] for k in ("duration", "sub_category", "video_id")
                      if k in merged}))
    return _finish(pairs, missing, path)


def load_vnbench(path, video_dir, *, missing: str = "error") -> list[QAItem]:
    """VNBench (Joez1717/VNBench, VideoNIAH) questions.

    path: the annotation .json (a list; .jsonl works too) with per question: video (a path;
    its file name is looked up in video_dir), question, options (or candidates: four option
    texts), gt (the right option's *text*, as the official evaluation compares it; a letter
    or a 0-based index is accepted too; `answer` is read when gt is absent), type
    (e.g. ret_insert1, ord_edit2, cnt_insert1) and try (0-3: the four rotations of the
    options each question is asked with).
    QAItem: category = type, task = retrieval / ordering / counting from the type's prefix,
    id = question_id if present else "<video stem>_<try>" (with "_<type>" added to the stem
    unless it ends with it); meta keeps try.
    """
    path, video_dir = Path(path), Path(video_dir)
    _check_missing_arg(missing)
    tasks = {"ret": "retrieval", "ord": "ordering", "cnt": "counting"}
    pairs = []
    for where, rec in _benchmark_json(path):
        options = [str(o).strip() for o in _list_field(rec, ("options", "candidates"), where)]
        video = _text_field(rec, "video", where)
        found = _expand(video)
        if not (found.is_absolute() and _is_file(found)):
            found = video_dir / video
            if not _is_file(found):
                found = video_dir / Path(video).name
        gt = rec.get("gt", rec.get("answer"))
        if isinstance(gt, int) and not isinstance(gt, bool) and 0 <= gt < len(options):
            gt = ascii_uppercase[gt]
        kind = str(rec.get("type") or "")
        prefix = re.match(r"[a-z]+", kind.lower())
        stem = Path(video).stem if Path(video).stem.endswith(kind) else f"{Path(video).stem}_{kind}"
        item_id = rec.get("question_id") or f"{stem}_{rec.get('try', 0)}"
        pairs.append(_bench_item(
            where, found, rec, options, answer=gt, text_first=True, category=kind or None,
            task=tasks.get(prefix.group(0), kind) if prefix else None, id=item_id,
            meta={"try": rec["try"]} if "try" in rec else {}))
    return _finish(pairs, missing, path)


def load_nextqa(path, video_dir, *, missing: str = "error") -> list[QAItem]:
    """NExT-QA multiple-choice questions (doc-doc/NExT-QA, `nextqa/val.csv` / `test.csv`).

    path: the CSV with columns video (numeric id), frame_count, width, height, question,
    answer (0-based index of the right option; the right option's text is accepted too, as
    NExT-GQA writes it), qid, type (CW/CH causal, TN/TC/TP temporal, DC/DL/DO descriptive)
    and a0..a4 (the five options).
    video_dir: the NExTVideo folder. Videos are found through `map_vid_vidorID.json`
    ({"<video>": "<folder>/<name>"}) if it is in video_dir, its parent or the CSV's folder;
    otherwise as video_dir/<video>.mp4 or video_dir/*/<video>.mp4.
    QAItem: category = type, task = causal / temporal / descriptive, id = "<video>_<qid>".
    """
    path, video_dir = Path(path), Path(video_dir)
    _check_missing_arg(missing)
    if not path.is_file():
        raise QAError(f"{path}: no such file")
    mapping = {}
    for folder in (video_dir, video_dir.parent, path.parent):
        if (folder / "map_vid_vidorID.json").is_file():
            with _json_errors(folder / "map_vid_vidorID.json"):
                mapping = json.loads(_read_text(folder / "map_vid_vidorID.json"))
            break
    groups = {"C": "causal", "T": "temporal", "D": "descriptive"}
    pairs = []
    reader = _csv_reader(path)
    with _csv_errors(path, reader):
        columns = set(reader.fieldnames or [])
        absent = [c for c in ("video", "question", "answer", "a0", "a1") if c not in columns]
        if absent:
            raise QAError(f"{path}:1: NExT-QA CSV header lacks column(s) {', '.join(absent)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            options = [row[f"a{i}"].strip() for i in range(26) if (row.get(f"a{i}") or "").strip()]
            answer = (row.get("answer") or "").strip()
            if answer.isdecimal():  # int() of a 5000-digit string would raise
                if len(answer) > 2 or int(answer) >= len(options):
                    raise QAError(f"{where}: answer index {_clip(answer)} is out of range "
                                  f"for {len(options)} options (0-{len(options) - 1})")
                answer = ascii_uppercase[int(answer)]
            vid = row["video"].strip()
            if vid in mapping:
                video = video_dir / f"{mapping[vid]}.mp4"
            else:
                video = _find_video(video_dir, vid, where, nested=True)
            kind = (row.get("type") or "").strip()
            pairs.append(_bench_item(
                where, video, row, options, answer=answer, text_first=True,
                category=kind or None, task=groups.get(kind[:1]),
                id=f"{vid}_{(row.get('qid') or '').strip()}"))
    return _finish(pairs, missing, path)


def _parquet_records(path: Path):
    if not path.is_file():
        raise QAError(f"{path}: no such file")
    _check_size(path)
    import pandas as pd  # noqa: PLC0415  (heavy, and only needed for parquet)
    try:
        frame = pd.read_parquet(path)
    except ImportError as err:
        raise ImportError(f"reading {path.name} needs a parquet engine: pip install pyarrow "
                          f"(or pass a .json export of it) ({err})") from err
    except Exception as err:  # noqa: BLE001  (each engine raises its own kinds)
        raise QAError(f"{path}: not a readable parquet file ({type(err).__name__}: "
                      f"{_clip(str(err), 200)})") from None
    for i, rec in enumerate(frame.to_dict(orient="records")):
        rec["options"] = [str(o) for o in rec.get("options", [])]
        yield f"{path} row {i + 1}", rec


def _benchmark_json(path: Path):
    """(where, dict) per record of a .json list or a .jsonl file."""
    if not path.is_file():
        raise QAError(f"{path}: no such file")
    if path.suffix.lower() == ".jsonl":
        pairs = _jsonl_records(path)
    elif path.suffix.lower() == ".json":
        pairs = _json_records(path)
    else:
        raise QAError(f"{path}: unknown annotation file type {path.suffix!r}")
    for line, rec in pairs:
        if not isinstance(rec, dict):
            raise QAError(f"{path}:{line}: expected a JSON object, got {type(rec).__name__}")
        yield f"{path}:{line}", rec


def _bench_item(where, video: Path, rec: dict, options, *, answer, text_first, category, task,
                id, meta=None) -> tuple[str, QAItem]:
    """(where, QAItem) from already-mapped fields, validated like our own format."""
    question = _text_field(rec, "question", where)
    _check_length(question, MAX_QUESTION_CHARS, "question", where)
    options = _options(options, where)
    answer = None if answer is None else str(answer)
    return where, QAItem(video=video, question=question, options=options,
                         answer=_answer(answer, options, where, text_first),
                         category=None if category is None else str(category),
                         task=None if task is None else str(task),
                         id=str(id) if id not in (None, "") else where, meta=meta or {})


def _text_field(rec: dict, key: str, where: str) -> str:
    value = rec.get(key)
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        raise QAError(f"{where}: missing required field {key!r}")
    return str(value).strip()


def _list_field(rec: dict, keys, where: str) -> list:
    for key in keys:
        value = rec.get(key)
        if value is not None:
            if not isinstance(value, (list, tuple)):
                raise QAError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
            return list(value)
    raise QAError(f"{where}: missing required field {' or '.join(map(repr, keys))}")


def _strip_letter(option) -> str:
    """"A. Apple" -> "Apple" (VideoMME writes the letter into each option)."""
    return re.sub(r"^\s*\(?[A-Z][.):]\s*", "", str(option)).strip()


def _find_video(video_dir: Path, stem: str, where: str, nested: bool = False) -> Path:
    """video_dir/<stem> with a known video extension (or nested one folder deep); when none
    exists, video_dir/<stem>.mp4 (reported as missing later)."""
    if not stem:
        raise QAError(f"{where}: no video id")
    if Path(stem).suffix.lower() in VIDEO_SUFFIXES:
        return video_dir / stem
    for suffix in VIDEO_SUFFIXES:
        if _is_file(video_dir / f"{stem}{suffix}"):
            return video_dir / f"{stem}{suffix}"
    if nested:
        for hit in sorted(video_dir.glob(f"*/{glob.escape(stem)}.*")):
            if hit.suffix.lower() in VIDEO_SUFFIXES:
                return hit
    return video_dir / f"{stem}.mp4"
