"""Questions for an image folder from a VQA-style JSON file (prepare.questions), through prepare."""

import json
import re
from collections import Counter

import pytest
from PIL import Image

from taskcodec.data.manifest import MANIFEST_COLUMNS, OBJECTS_COLUMN, QUESTIONS_COLUMN, parse_questions, read_manifest
from taskcodec.data.vqa_annotations import normalise_answer
from taskcodec.errors import UserError
from taskcodec.stages.prepare import main, prepare
from taskcodec.tasks.labels import class_names

SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def _folder(tmp_path):
    root = tmp_path / "photos"
    for relative in ("cat/a.png", "cat/b.png", "dog/c.png", "dog/sub/d.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (30, 60, 90)).save(root / relative)
    return root


def _entries():
    return [
        {"image": "cat/a.png", "question": " What colour is the cat? ", "answers": ["Red.", " red ", "dark red!"],
         "answer_type": "other", "question_type": "what color is the", "question_id": 17},
        {"image": "c.png", "question": "Is it a dog?", "answers": [{"answer": "YES"}, {"answer": "yes"}],
         "answer_type": "yes/no"},
        {"image": "cat/b.png", "question": "How many cats?", "answers": ["1"], "answer_type": "number"},
        {"image": "cat/a.png", "question": "Is it a dog?", "answers": ["no"], "answer_type": "yes/no"},
    ]


def _write(tmp_path, entries=None, text=None):
    path = tmp_path / "vqa.json"
    path.write_text(text if text is not None else json.dumps({"questions": _entries() if entries is None else entries}))
    return path


def _params(root, questions, **extra):
    return {"dataset": "imagefolder", "root": str(root), "questions": None if questions is None else str(questions),
            "image_size": 20, "split": SPLIT, "seed": 0, "on_bad_image": "stop",
            "builtin": {"num_images": 3, "canvas_size": 48, "classes": ["circle", "ring"], "object_scale": [0.2, 0.5]},
            **extra}


def _one_sentence(message):
    return "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message)


def test_questions_from_a_file_round_trip_through_prepare(tmp_path):
    root = _folder(tmp_path)
    out = tmp_path / "prepared"
    main(["--params", json.dumps(_params(root, _write(tmp_path))), "--out", str(out)])
    frame = read_manifest(out / "manifest.csv")
    assert list(frame.columns) == [*MANIFEST_COLUMNS, QUESTIONS_COLUMN]
    assert sorted(frame["class_name"]) == ["cat", "cat", "dog", "dog"]  # the class folders still label the images
    questions = {source.split("photos/")[-1]: parse_questions(cell, source)
                 for source, cell in zip(frame["source"], frame[QUESTIONS_COLUMN])}
    assert questions == {
        "cat/a.png": [{"question": "What colour is the cat?", "answers": ["red", "red", "dark red"], "type": "other",
                       "family": "what color is the"},
                      {"question": "Is it a dog?", "answers": ["no"], "type": "yes/no", "family": ""}],
        "cat/b.png": [{"question": "How many cats?", "answers": ["1"], "type": "number", "family": ""}],
        "dog/c.png": [{"question": "Is it a dog?", "answers": ["yes", "yes"], "type": "yes/no", "family": ""}],
        "dog/sub/d.png": [],
    }
    train = Counter(answer for source, split in zip(frame["source"], frame["split"]) if split == "train"
                    for question in questions[source.split("photos/")[-1]] for answer in question["answers"])
    expected = sorted(train, key=lambda answer: (-train[answer], answer))
    assert json.loads((out / "answers.json").read_text()) == expected == class_names(out / "manifest.csv", "vqa")


def test_questions_and_boxes_together(tmp_path):
    root = _folder(tmp_path)
    coco = {"images": [{"id": k, "file_name": name} for k, name in
                       enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/sub/d.png"])],
            "categories": [{"id": 1, "name": "cat"}], "annotations": []}
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    out = prepare(_params(root, _write(tmp_path), annotations=str(tmp_path / "boxes.json")), tmp_path / "prepared")
    frame = read_manifest(out / "manifest.csv")
    assert list(frame.columns) == [*MANIFEST_COLUMNS, OBJECTS_COLUMN, QUESTIONS_COLUMN]
    assert (frame["label"] == -1).all()


@pytest.mark.parametrize("answer, expected", [("Red.", "red"), ("  YES  ", "yes"), ("2", "2"),
                                              ("St. Louis?!", "st. louis"), ("dark red", "dark red")])
def test_answers_are_normalised(answer, expected):
    assert normalise_answer(answer) == expected


def _broken(**changes):
    entries = _entries()
    entries[1] = {key: value for key, value in {**entries[1], **changes}.items() if value is not None}
    return entries


@pytest.mark.parametrize("entries, expected", [
    (_broken(question=None), "has no 'question'"),
    (_broken(question="  "), "has no 'question'"),
    (_broken(image=None), "has no 'image'"),
    (_broken(image="fish.png"), "names image 'fish.png', which is not below prepare.root"),
    (_broken(image="dog/c.jpg"), "names image 'dog/c.jpg', which is not below prepare.root"),
    (_broken(answers=[]), "has no 'answers'"),
    (_broken(answers="yes"), "has no 'answers'"),
    (_broken(answers=[3]), "has an answer that is neither a string"),
    (_broken(answers=[{"text": "yes"}]), "has an answer that is neither a string"),
    (_broken(answers=["yes", " ?"]), "has an empty answer"),
    (_broken(answer_type="colour"), "has answer_type 'colour'; use one of yes/no, number, other"),
    (_broken(question_type=7), "has question_type 7"),
    ([*_entries()[:1], "is it?"], "is not an object"),
])
def test_malformed_entries_name_the_file_and_the_entry(tmp_path, entries, expected):
    path = _write(tmp_path, entries)
    with pytest.raises(UserError) as info:
        prepare(_params(_folder(tmp_path), path), tmp_path / "prepared")
    message = str(info.value)
    assert message.startswith(f"entry questions[1] of prepare.questions file {path} ")
    assert expected in message and _one_sentence(message)
    assert not (tmp_path / "prepared").exists()


def test_a_file_name_shared_by_two_images_needs_a_path(tmp_path):
    root = _folder(tmp_path)
    Image.new("RGB", (40, 30)).save(root / "dog" / "a.png")
    path = _write(tmp_path, _broken(image="a.png"))
    with pytest.raises(UserError, match=r"questions\[1\] .* names image 'a.png', a file name 2 images below "
                                        r"prepare.root .* have; give its path relative to prepare.root") as info:
        prepare(_params(root, path), tmp_path / "prepared")
    assert _one_sentence(str(info.value))


@pytest.mark.parametrize("text, expected", [
    (None, "does not exist; fix the path or set it to null"),
    ("{not json", "is not JSON with a 'questions' list"),
    ('{"annotations": []}', "is not JSON with a 'questions' list"),
    ('{"questions": {"image": "a.png"}}', "is not JSON with a 'questions' list"),
    ('[]', "is not JSON with a 'questions' list"),
])
def test_an_unreadable_file_is_named(tmp_path, text, expected):
    path = tmp_path / "vqa.json" if text is None else _write(tmp_path, text=text)
    with pytest.raises(UserError) as info:
        prepare(_params(_folder(tmp_path), path), tmp_path / "prepared")
    message = str(info.value)
    assert message.startswith(f"prepare.questions file {path} ") and expected in message and _one_sentence(message)


@pytest.mark.parametrize("value", [5, "", ["vqa.json"]])
def test_the_questions_key_must_be_a_path(tmp_path, value):
    with pytest.raises(UserError, match=r"prepare\.questions is .*; set it to the path of a VQA-style JSON file or "
                                        r"null") as info:
        prepare({**_params(_folder(tmp_path), None), "questions": value}, tmp_path / "prepared")
    assert _one_sentence(str(info.value))
