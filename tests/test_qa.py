"""QA sets: our three file formats and folders, every malformed input, the prompt, reading the
model's choice, and the VideoMME / VNBench / NExT-QA loaders on tiny hand-written files.

Videos are empty placeholder files: loading a QA set only checks that they exist."""
import json
import sys
import logging
import re

import pytest

from sttm_core.qa import (MAX_OPTION_CHARS, MAX_QA_FILE_BYTES, MAX_QUESTION_CHARS, PROMPT_SUFFIX,
                          QAError, QAItem, format_question, load_nextqa, load_qa, load_videomme,
                          load_vnbench, parse_choice)

pytestmark = pytest.mark.core

RECORDS = [
    {"video": "a.mp4", "question": "What colour is the ball?",
     "options": ["red", "blue", "green", "pink"], "answer": "A", "category": "fast_motion",
     "task": "attribute"},
    {"video": "clips/b.mp4", "question": "How many cuts?", "options": ["1", "2", "3"],
     "answer": "c"},
    {"video": "a.mp4", "question": "Which way?", "options": ["left", "right"]},
]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("a.mp4", "clips/b.mp4"):
        (tmp_path / name).touch()
    return tmp_path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def check_records(items, folder):
    """items are RECORDS, loaded from a file in `folder`."""
    assert [i.video for i in items] == [folder / "a.mp4", folder / "clips/b.mp4", folder / "a.mp4"]
    assert [i.question for i in items] == [r["question"] for r in RECORDS]
    assert [i.options for i in items] == [r["options"] for r in RECORDS]
    assert [i.answer for i in items] == ["A", "C", None]
    assert (items[0].category, items[0].task) == ("fast_motion", "attribute")
    assert (items[1].category, items[1].task) == (None, None)
    assert items[0].answer_text == "red" and items[1].answer_index == 2
    assert items[2].answer_text is None


# ----------------------------------------------------------------------------- formats

def test_jsonl_round_trip(folder):
    path = write_jsonl(folder / "qa.jsonl", RECORDS)
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line is skipped
    items = load_qa(path)
    check_records(items, folder)
    assert [i.id for i in items] == ["qa.jsonl:1", "qa.jsonl:3", "qa.jsonl:4"]  # file:line


def test_json_list_round_trip(folder):
    (folder / "qa.json").write_text(json.dumps(RECORDS, indent=2))
    check_records(load_qa(folder / "qa.json"), folder)


def test_csv_option_columns_round_trip(folder):
    (folder / "qa.csv").write_text(
        "video,question,option_a,option_b,option_c,option_d,answer,category,task\n"
        "a.mp4,What colour is the ball?,red,blue,green,pink,A,fast_motion,attribute\n"
        "clips/b.mp4,How many cuts?,1,2,3,,c,,\n"
        'a.mp4,"Which way?",left,right,,,,,\n')
    check_records(load_qa(folder / "qa.csv"), folder)


def test_csv_pipe_options_round_trip(folder):
    (folder / "qa.csv").write_text(
        "video,question,options,answer,category,task\n"
        "a.mp4,What colour is the ball?,red|blue|green|pink,A,fast_motion,attribute\n"
        "clips/b.mp4,How many cuts?,1 | 2 | 3,c,,\n"
        "a.mp4,Which way?,left|right,,,\n")
    check_records(load_qa(folder / "qa.csv"), folder)


def test_absolute_video_path_and_extra_fields(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    record = {**RECORDS[0], "video": str(folder / "a.mp4"), "id": "q7", "duration": "short"}
    (item,) = load_qa(write_jsonl(other / "qa.jsonl", [record]))
    assert item.video == folder / "a.mp4"
    assert item.id == "q7" and item.meta == {"duration": "short"}


def test_answer_given_as_option_text(folder):
    (item,) = load_qa(write_jsonl(folder / "qa.jsonl", [{**RECORDS[0], "answer": "green"}]))
    assert item.answer == "C"


def test_folder_loads_every_file_and_keeps_repeats_once(folder):
    write_jsonl(folder / "b.jsonl", RECORDS[:2])
    write_jsonl(folder / "all.jsonl", RECORDS)                       # repeats b.jsonl's two
    (folder / "c.json").write_text(json.dumps([{**RECORDS[0], "question": "Ball colour?"}]))
    (folder / "notes.txt").write_text("not a QA file")               # ignored in a folder
    items = load_qa(folder)
    assert [i.question for i in items] == [r["question"] for r in RECORDS] + ["Ball colour?"]
    assert items[0].id == "all.jsonl:1"                              # files in name order


def test_missing_video_skip_policy(folder, caplog):
    path = write_jsonl(folder / "qa.jsonl", [RECORDS[0], {**RECORDS[1], "video": "gone.mp4"}])
    with caplog.at_level(logging.WARNING):
        items = load_qa(path, missing="skip")
    assert [i.video.name for i in items] == ["a.mp4"]
    assert "gone.mp4" in caplog.text
    with pytest.raises(ValueError, match="missing must be"):
        load_qa(path, missing="ignore")


def test_missing_video_keep_policy(tmp_path):
    """"keep": every question as written, videos resolved against the file's folder but not
    required to exist (an app matching uploaded QA files to its video by name)."""
    path = write_jsonl(tmp_path / "qa.jsonl", RECORDS)
    items = load_qa(path, missing="keep")
    assert [i.video for i in items] == [tmp_path / "a.mp4", tmp_path / "clips/b.mp4",
                                        tmp_path / "a.mp4"]
    assert not any(i.video.exists() for i in items)
    with pytest.raises(QAError, match="missing required field 'options'"):  # still checked
        load_qa(write_jsonl(tmp_path / "bad.jsonl", [{"video": "a.mp4", "question": "q"}]),
                missing="keep")


# ----------------------------------------------------------------------------- malformed input

GOOD = json.dumps(RECORDS[0])


def line2(record) -> str:
    return GOOD + "\n" + (record if isinstance(record, str) else json.dumps(record)) + "\n"


MALFORMED = {  # name: (file name, content, regex the message must match after "<file>:<line>")
    "no question": ("q.jsonl", line2({"video": "a.mp4", "options": ["x", "y"]}),
                    r":2: .*'question'"),
    "no video": ("q.jsonl", line2({"question": "?", "options": ["x", "y"]}), r":2: .*'video'"),
    "no options": ("q.jsonl", line2({"video": "a.mp4", "question": "?"}), r":2: .*'options'"),
    "one option": ("q.jsonl", line2({**RECORDS[0], "options": ["x"], "answer": "A"}),
                   r":2: needs at least 2 options, got 1"),
    "options string": ("q.jsonl", line2({**RECORDS[0], "options": "x|y"}),
                       r":2: .*list of strings"),
    "duplicate options": ("q.jsonl", line2({**RECORDS[0], "options": ["x", "X"], "answer": "A"}),
                          r":2: options must be distinct"),
    "empty option": ("q.jsonl", line2({**RECORDS[0], "options": ["x", " "], "answer": "A"}),
                     r":2: option B is empty"),
    "answer out of range": ("q.jsonl", line2({**RECORDS[0], "answer": "E"}),
                            r":2: answer 'E' is out of range for 4 options \(A-D\)"),
    "answer unknown": ("q.jsonl", line2({**RECORDS[0], "answer": "purple"}),
                       r":2: answer 'purple' is neither"),
    "answer number": ("q.jsonl", line2({**RECORDS[0], "answer": 1}), r":2: 'answer' must be"),
    "bad json": ("q.jsonl", line2('{"video": "a.mp4", '), r":2: not valid JSON"),
    "not an object": ("q.jsonl", line2("[1, 2]"), r":2: expected a JSON object"),
    "video missing": ("q.jsonl", line2({**RECORDS[0], "video": "nowhere.mp4"}),
                      r":2: video file not found: .*nowhere\.mp4"),
    "json not a list": ("q.json", GOOD, r":1: expected a list"),
    "json bad item": ("q.json",
                      f"[\n{GOOD},\n\n  {json.dumps({**RECORDS[0], 'options': ['x']})}\n]",
                      r":4: needs at least 2 options"),
    "json syntax": ("q.json", "[\n" + GOOD + ",\n]", r":3: not valid JSON"),
    "csv header": ("q.csv", "video,question,answer\na.mp4,?,A\n",
                   r":1: CSV header lacks column\(s\) option_a"),
    "csv row": ("q.csv", "video,question,option_a,option_b,answer\na.mp4,?,x,y,A\n"
                         "a.mp4,?,x,y,C\n", r":3: answer 'C' is out of range for 2 options"),
    "csv one option": ("q.csv", "video,question,options,answer\na.mp4,?,x|y,A\na.mp4,?,x,A\n",
                       r":3: needs at least 2 options"),
    "unknown type": ("q.txt", GOOD, r": unknown QA file type '\.txt'"),
    "empty file": ("q.jsonl", "\n\n", r": contains no questions"),
    # hostile but well-formed files: each is a QAError too, never a crash of another kind
    "deep jsonl": ("q.jsonl", line2("[" * 100_000 + "]" * 100_000), r":2: JSON nested too deeply"),
    "deep json": ("q.json", "[" * 100_000 + "]" * 100_000, r": JSON nested too deeply"),
    "huge integer": ("q.jsonl", line2('{"video": "a.mp4", "answer": ' + "7" * 5000 + "}"),
                     r":2: JSON value cannot be read \(Exceeds the limit"),
    "csv field over 128 KiB": ("q.csv", "video,question,options\na.mp4,?,x|y\na.mp4,"
                               + "?" * 200_000 + ",x|y\n",
                               r":3: not valid CSV \(field larger than field limit \(131072\)\); "
                               r"a question may have at most 2,000 characters"),
    "long question": ("q.jsonl", line2({**RECORDS[0], "question": "?" * (MAX_QUESTION_CHARS + 1)}),
                      r":2: question is 2,001 characters long; at most 2,000 are allowed"),
    "5 MB question": ("q.csv", "video,question,options\na.mp4," + "why " * 1_250_000 + ",x|y\n",
                      r":2: not valid CSV \(field larger than field limit"),
    "csv field over 128 KiB on a multi-line row": (
        "q.csv", 'video,question,options\na.mp4,"a\nb\n' + "?" * 200_000 + '",x|y\n',
        r":4: not valid CSV \(field larger than field limit"),
    "5 MB json question": ("q.jsonl", line2({**RECORDS[0], "question": "why " * 1_250_000}),
                           r":2: question is 4,999,999 characters long; at most 2,000"),
    "long option": ("q.jsonl",
                    line2({**RECORDS[0], "options": ["x", "y" * (MAX_OPTION_CHARS + 1)]}),
                    r":2: option B is 1,001 characters long; at most 1,000 are allowed"),
    "long answer is cut in the message": (
        "q.jsonl", line2({**RECORDS[0], "answer": "z" * 100_000}),
        r":2: answer 'z{59}\.\.\. \(100,002 characters\) is neither"),
    "video name too long": ("q.jsonl", line2({**RECORDS[0], "video": "v" * 5000 + ".mp4"}),
                            r":2: video file not found"),
    "unknown user's home": ("q.jsonl", line2({**RECORDS[0], "video": "~no_such_user_x/a.mp4"}),
                            r":2: video file not found: .*~no_such_user_x/a\.mp4"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_names_file_and_line(folder, case):
    name, content, pattern = MALFORMED[case]
    path = folder / name
    path.write_text(content)
    with pytest.raises(QAError, match=re.escape(str(path)) + pattern) as info:
        load_qa(path)
    assert isinstance(info.value, ValueError)


def test_non_utf8_file_is_a_qa_error(folder):
    for name in ("q.csv", "q.jsonl", "q.json"):
        (folder / name).write_bytes("video,question,options\na.mp4,café?,x|y\n".encode("latin-1"))
        with pytest.raises(QAError, match=re.escape(str(folder / name)) +
                           r": not UTF-8 text \(invalid continuation byte at byte 32\); save it"):
            load_qa(folder / name)


@pytest.mark.parametrize("name", ["q.jsonl", "q.csv", "q.json"])
def test_qa_file_over_the_size_limit(folder, name):
    path = folder / name
    with path.open("wb") as f:
        f.truncate(MAX_QA_FILE_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(QAError, match=re.escape(str(path)) +
                       r": 20\.0 MiB is more than a QA file may hold \(20 MiB\); split it"):
        load_qa(path)


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.jsonl: no such QA file"):
        load_qa(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="folder holds no QA files"):
        load_qa(tmp_path)


def test_folder_error_names_the_bad_file(folder):
    write_jsonl(folder / "a.jsonl", RECORDS)
    (folder / "b.jsonl").write_text(line2({**RECORDS[0], "answer": "Z"}))
    with pytest.raises(QAError, match=r"b\.jsonl:2: answer 'Z' is out of range"):
        load_qa(folder)


# ----------------------------------------------------------------------------- prompt

def test_format_question():
    item = QAItem(video=None, question="What colour is the ball?", options=["red", "blue", "green"])
    assert format_question(item) == (
        "What colour is the ball?\nA. red\nB. blue\nC. green\n"
        "Answer with the option's letter from the given choices directly.")
    assert format_question(item).endswith(PROMPT_SUFFIX)


# ----------------------------------------------------------------------------- parse_choice

OPTIONS = ["red", "blue", "green", "yellow"]
REPLIES = [  # (model output, expected letter with 4 options)
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("[C]", "C"), ("B.", "B"), ("B)", "B"), ("B: blue", "B"),
    ("C. green", "C"), ("b) blue", "B"), ("D, because the word is yellow", "D"),
    (" A\n\nThe ball is red throughout.", "A"), ("**C**", "C"), ("<answer>D</answer>", "D"),
    ("The answer is B", "B"), ("Answer: b) cat", "B"), ("The correct answer is: (C).", "C"),
    ("answer:C", "C"), ("I choose option D.", "D"), ("Option (A)", "A"), ("Answer: A", "A"),
    ("The answer is (A) red", "A"), ("I think it's C", "C"), ("C is correct", "C"),
    ("A is correct", "A"), ("I'm fairly sure it is D", "D"),
    # must stay unclear
    ("", None), ("   ", None), ("E", None), ("The answer is E", None), ("A or B", None),
    ("Both A and B are plausible", None), ("I don't know", None), ("A cat is sitting", None),
    ("The options are unclear", None), ("My choice is between A and B", None),
    ("The answer is a cat", None), ("Yes.", None), ("Answer: B. No wait, answer: C", None),
]


@pytest.mark.parametrize("reply, expected", REPLIES)
def test_parse_choice(reply, expected):
    assert parse_choice(reply, 4) == expected


@pytest.mark.parametrize("reply, expected", [
    ("red", "A"), ("Yellow.", "D"), ("The ball is green.", "C"), ("It is blue", "B"),
    ("blue or green", None), ("purple", None), ("B", "B"), ("The answer is D", "D")])
def test_parse_choice_by_option_text(reply, expected):
    assert parse_choice(reply, 4, OPTIONS) == expected


def test_parse_choice_option_text_prefers_longest_match():
    options = ["star", "red star", "blue square", "none"]
    assert parse_choice("I saw the red star", 4, options) == "B"
    assert parse_choice("3", 4, ["1", "2", "3", "13"]) == "C"
    assert parse_choice("13 times", 4, ["1", "2", "3", "13"]) == "D"


def test_parse_choice_respects_n_options():
    assert parse_choice("C", 2) is None
    assert parse_choice("E", 5) == "E"
    with pytest.raises(ValueError, match="n_options"):
        parse_choice("A", 0)


# ----------------------------------------------------------------------------- public benchmarks

def touch(*paths):
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()


VIDEOMME_ROWS = [
    {"video_id": "001", "duration": "short", "domain": "Knowledge",
     "sub_category": "Humanity & History",
     "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8",
     "question_id": "001-1", "task_type": "Counting Problem",
     "question": "When demonstrating the Germany modern Christmas tree is initially decorated "
                 "with apples, candles and berries, which kind of the decoration has the "
                 "largest number?",
     "options": ["A. Apples.", "B. Candles.", "C. Berries.",
                 "D. The three kinds are of the same number."],
     "answer": "C"},
    {"video_id": "001", "duration": "short", "domain": "Knowledge",
     "sub_category": "Humanity & History",
     "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8",
     "question_id": "001-2", "task_type": "Information Synopsis",
     "question": "What is the genre of this video?",
     "options": ["A. It is a news report.", "B. It is a documentary.", "C. It is a vlog.",
                 "D. It is a game."], "answer": "B"},
]


def check_videomme(items, video_dir):
    assert len(items) == 2
    first = items[0]
    assert first.video == video_dir / "fFjv93ACGo8.mp4"
    assert first.options == ["Apples.", "Candles.", "Berries.",
                             "The three kinds are of the same number."]
    assert (first.answer, first.answer_text) == ("C", "Berries.")
    assert (first.category, first.task, first.id) == ("Knowledge", "Counting Problem", "001-1")
    assert first.meta["duration"] == "short"
    assert items[1].answer == "B" and items[1].id == "001-2"


def test_load_videomme_json(tmp_path):
    touch(tmp_path / "data/fFjv93ACGo8.mp4")
    (tmp_path / "videomme.json").write_text(json.dumps(VIDEOMME_ROWS))
    check_videomme(load_videomme(tmp_path / "videomme.json", tmp_path / "data"), tmp_path / "data")


def test_load_videomme_nested_official_json(tmp_path):
    touch(tmp_path / "data/fFjv93ACGo8.mp4")
    keys = ("question_id", "task_type", "question", "options", "answer")
    video = {k: v for k, v in VIDEOMME_ROWS[0].items() if k not in keys}
    video["questions"] = [{k: row[k] for k in keys} for row in VIDEOMME_ROWS]
    (tmp_path / "videomme.json").write_text(json.dumps([video]))
    check_videomme(load_videomme(tmp_path / "videomme.json", tmp_path / "data"), tmp_path / "data")


def test_load_videomme_parquet(tmp_path):
    import pandas as pd  # pandas and pyarrow come with requirements.txt
    touch(tmp_path / "data/fFjv93ACGo8.mp4")
    pd.DataFrame(VIDEOMME_ROWS).to_parquet(tmp_path / "test-00000-of-00001.parquet")
    check_videomme(load_videomme(tmp_path / "test-00000-of-00001.parquet", tmp_path / "data"),
                   tmp_path / "data")


def test_load_videomme_parquet_without_engine_says_what_to_install(tmp_path, monkeypatch):
    for engine in ("pyarrow", "fastparquet"):  # as if neither parquet engine were installed
        monkeypatch.setitem(sys.modules, engine, None)
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_videomme(tmp_path / "test.parquet", tmp_path)


def test_load_videomme_missing_video_and_bad_answer(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "v.json").write_text(json.dumps(VIDEOMME_ROWS))
    with pytest.raises(QAError, match=r"v\.json:\d+: video file not found: .*fFjv93ACGo8\.mp4 "
                                      r"\(and 1 more"):
        load_videomme(tmp_path / "v.json", tmp_path / "data")
    assert load_videomme(tmp_path / "v.json", tmp_path / "data", missing="skip") == []
    touch(tmp_path / "data/fFjv93ACGo8.mp4")
    (tmp_path / "v.json").write_text(json.dumps([{**VIDEOMME_ROWS[0], "answer": "F"}]))
    with pytest.raises(QAError, match=r"v\.json:1: answer 'F' is out of range"):
        load_videomme(tmp_path / "v.json", tmp_path / "data")


VNBENCH = [  # as in VNBench's annotation: gt is the right option's text
    {"video": "VNBench/video/3261112327_ret_insert1.mp4",
     "question": "What is the word in the video?", "options": ["apple", "river", "piano", "tiger"],
     "gt": "piano", "type": "ret_insert1", "try": 0},
    {"video": "3261112327_ord_edit1.mp4", "question": "In what order do the objects appear?",
     "candidates": ["cat, dog", "dog, cat"], "gt": 1, "type": "ord_edit1", "try": 1,
     "question_id": "3261112327_ord_edit1_1"},
    {"video": "3261112327_cnt_insert1.mp4", "question": "How many times does the star appear?",
     "options": ["1", "2", "3", "4"], "answer": "B", "type": "cnt_insert1", "try": 2},
]


def test_load_vnbench(tmp_path):
    video_dir = tmp_path / "video"
    touch(*(video_dir / n for n in ("3261112327_ret_insert1.mp4", "3261112327_ord_edit1.mp4",
                                    "3261112327_cnt_insert1.mp4")))
    (tmp_path / "VNBench.json").write_text(json.dumps(VNBENCH, indent=1))
    items = load_vnbench(tmp_path / "VNBench.json", video_dir)
    assert [i.video for i in items] == [video_dir / "3261112327_ret_insert1.mp4",
                                        video_dir / "3261112327_ord_edit1.mp4",
                                        video_dir / "3261112327_cnt_insert1.mp4"]
    assert [i.answer for i in items] == ["C", "B", "B"]  # text, 0-based index, letter
    assert [i.task for i in items] == ["retrieval", "ordering", "counting"]
    assert [i.category for i in items] == ["ret_insert1", "ord_edit1", "cnt_insert1"]
    assert [i.id for i in items] == ["3261112327_ret_insert1_0", "3261112327_ord_edit1_1",
                                     "3261112327_cnt_insert1_2"]
    assert items[1].options == ["cat, dog", "dog, cat"] and items[0].meta == {"try": 0}


def test_load_vnbench_errors(tmp_path):
    touch(tmp_path / "v/3261112327_ret_insert1.mp4")
    bad = [VNBENCH[0], {**VNBENCH[0], "gt": "banana"}]
    (tmp_path / "vn.json").write_text(json.dumps(bad, indent=1))
    with pytest.raises(QAError, match=r"vn\.json:15: answer 'banana' is neither"):
        load_vnbench(tmp_path / "vn.json", tmp_path / "v")
    (tmp_path / "vn.json").write_text(json.dumps([{**VNBENCH[0], "video": "other.mp4"}]))
    with pytest.raises(QAError, match=r"vn\.json:1: video file not found: .*other\.mp4"):
        load_vnbench(tmp_path / "vn.json", tmp_path / "v")


NEXTQA_CSV = (
    "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    "6233408665,1587,640,480,what did the people on the sofa do after the lady in pink finished "
    "singing,3,8,TN,sitting,give it to the girl,take music sheet,clap,walk in circles\n"
    "4882821564,2097,640,480,why is the baby crying,0,2,CW,fell down,hungry,sleepy,wet,tired\n")


def test_load_nextqa_with_map_file(tmp_path):
    video_dir = tmp_path / "NExTVideo"
    touch(video_dir / "1150/6233408665.mp4", video_dir / "0000/4882821564.mp4")
    (tmp_path / "map_vid_vidorID.json").write_text(
        json.dumps({"6233408665": "1150/6233408665", "4882821564": "0000/4882821564"}))
    (tmp_path / "val.csv").write_text(NEXTQA_CSV)
    first, second = load_nextqa(tmp_path / "val.csv", video_dir)
    assert first.video == video_dir / "1150/6233408665.mp4"
    assert first.options == ["sitting", "give it to the girl", "take music sheet", "clap",
                             "walk in circles"]
    assert (first.answer, first.answer_text) == ("D", "clap")
    assert (first.category, first.task, first.id) == ("TN", "temporal", "6233408665_8")
    assert (second.answer, second.task) == ("A", "causal")


def test_load_nextqa_without_map_file(tmp_path):
    touch(tmp_path / "videos/6233408665.mp4", tmp_path / "videos/sub/4882821564.mp4")
    (tmp_path / "val.csv").write_text(NEXTQA_CSV)
    items = load_nextqa(tmp_path / "val.csv", tmp_path / "videos")
    assert [i.video for i in items] == [tmp_path / "videos/6233408665.mp4",
                                        tmp_path / "videos/sub/4882821564.mp4"]


def test_benchmark_loaders_turn_hostile_files_into_qa_errors(tmp_path):
    touch(tmp_path / "v/3261112327_ret_insert1.mp4")
    (tmp_path / "vn.json").write_text(json.dumps([{**VNBENCH[0], "question": "?" * 5000}]))
    with pytest.raises(QAError, match=r"vn\.json:1: question is 5,000 characters long"):
        load_vnbench(tmp_path / "vn.json", tmp_path / "v")
    (tmp_path / "mme.json").write_text(json.dumps([{"videoID": "x", "questions": [1]}]))
    with pytest.raises(QAError, match=r"mme\.json:1 question 1: expected a JSON object, got int"):
        load_videomme(tmp_path / "mme.json", tmp_path / "v")
    (tmp_path / "mme.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(QAError, match=r"mme\.parquet: not a readable parquet file"):
        load_videomme(tmp_path / "mme.parquet", tmp_path / "v")
    (tmp_path / "val.csv").write_text(NEXTQA_CSV.replace(",0,2,CW,", f",{'9' * 5000},2,CW,"))
    with pytest.raises(QAError, match=r"val\.csv:3: answer index 9{60}\.\.\. \(5,000 characters\)"
                                      r" is out of range for 5 options"):
        load_nextqa(tmp_path / "val.csv", tmp_path / "videos")
    (tmp_path / "val.csv").write_text(NEXTQA_CSV.replace("6233408665", "a**b"))
    with pytest.raises(QAError, match=r"val\.csv:2: video file not found"):
        load_nextqa(tmp_path / "val.csv", tmp_path / "videos")
    (tmp_path / "map_vid_vidorID.json").write_text("{not json")
    with pytest.raises(QAError, match=r"map_vid_vidorID\.json:1: not valid JSON"):
        load_nextqa(tmp_path / "val.csv", tmp_path / "videos")


def test_load_nextqa_errors(tmp_path):
    touch(tmp_path / "videos/6233408665.mp4", tmp_path / "videos/4882821564.mp4")
    (tmp_path / "val.csv").write_text(NEXTQA_CSV.replace(",0,2,CW,", ",7,2,CW,"))
    with pytest.raises(QAError, match=r"val\.csv:3: answer index 7 is out of range for 5 options"):
        load_nextqa(tmp_path / "val.csv", tmp_path / "videos")
    (tmp_path / "val.csv").write_text("video,question\n1,why\n")
    with pytest.raises(QAError,
                       match=r"val\.csv:1: NExT-QA CSV header lacks column\(s\) answer, a0, a1"):
        load_nextqa(tmp_path / "val.csv", tmp_path / "videos")


# ----------------------------------------------------------------------------- unique ids

def test_duplicate_ids_in_jsonl_are_refused_naming_the_id_and_lines(folder):
    # sweeps key the all-token answers by id: two questions sharing one would become one row
    records = [{**RECORDS[0], "id": "q1"}, {**RECORDS[1], "id": "q2"},
               {**RECORDS[2], "id": "q1"}, {**RECORDS[1], "question": "Cuts?", "id": "q2"}]
    path = write_jsonl(folder / "qa.jsonl", records)
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # question 2 is on line 3
    for missing in ("error", "skip", "keep"):
        with pytest.raises(QAError) as err:
            load_qa(path, missing=missing)
        message = str(err.value)
        assert message.startswith(f"{path}:4: duplicate question id(s): ")
        assert "id 'q1' is shared by questions 1 and 3 (lines 1 and 4)" in message
        assert "id 'q2' is shared by questions 2 and 4 (lines 3 and 5)" in message
        assert "its own id" in message


def test_duplicate_ids_in_json_and_csv_are_refused(folder):
    # a one-line JSON list: the question numbers tell the entries apart
    path = folder / "qa.json"
    path.write_text(json.dumps([{**r, "id": 7 if i != 1 else "x"} for i, r in enumerate(RECORDS)]))
    with pytest.raises(QAError, match=re.escape(
            f"{path}:1: duplicate question id(s): id '7' is shared by questions 1 and 3 "
            "(lines 1 and 1)")):
        load_qa(path)
    csv_path = folder / "qa.csv"
    csv_path.write_text("video,question,option_a,option_b,id\n"
                        "a.mp4,Which way?,left,right,dup\n"
                        "a.mp4,Which side?,left,right,dup\n")
    with pytest.raises(QAError, match=r"qa\.csv:3: .*'dup' is shared by questions 1 and 2 "
                                      r"\(lines 2 and 3\)"):
        load_qa(csv_path)


def test_duplicate_ids_across_a_folders_files_are_refused(folder):
    write_jsonl(folder / "a.jsonl", [{**RECORDS[0], "id": "same"}])
    write_jsonl(folder / "b.jsonl", [{**RECORDS[1], "id": "same"}])
    with pytest.raises(QAError, match=r"b\.jsonl:1: duplicate question id\(s\): id 'same' is "
                                      r"shared by a\.jsonl:1 and b\.jsonl:1"):
        load_qa(folder)
    # the same question repeated in a combined file is still kept once, id and all
    (folder / "b.jsonl").unlink()
    write_jsonl(folder / "all.jsonl", [{**RECORDS[0], "id": "same"}, {**RECORDS[1], "id": "b"}])
    assert [i.id for i in load_qa(folder)] == ["same", "b"]


def test_distinct_and_default_ids_load(folder):
    items = load_qa(write_jsonl(folder / "qa.jsonl", [RECORDS[0], RECORDS[0], RECORDS[1]]))
    assert [i.id for i in items] == ["qa.jsonl:1", "qa.jsonl:2", "qa.jsonl:3"]
