"""Visual question answering on the builtin scenes: generated questions, the manifest column, answers.json."""

import hashlib
import json
import math
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from taskcodec.data import builtin
from taskcodec.data.builtin import PALETTE, SceneSpec, draw_scene, render_image, render_scene
from taskcodec.data.manifest import (ANSWER_TYPES, MANIFEST_COLUMNS, OBJECTS_COLUMN, QUESTIONS_COLUMN,
                                     answer_vocabulary, parse_questions, questions_json, read_manifest,
                                     write_manifest)
from taskcodec.data.questions import FAMILIES, MARGIN, generate_questions, plural
from taskcodec.data.registry import build_dataset
from taskcodec.errors import UserError
from taskcodec.stages.prepare import main
from taskcodec.tasks.labels import class_names

CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")


def _spec(questions=8, objects=(1, 4), seed=0):
    return SceneSpec(canvas_size=48, classes=CLASSES, object_scale=(0.2, 0.5), seed=seed, objects=objects,
                     questions=questions)


def _questions(spec, index):
    return generate_questions(spec, index, draw_scene(spec, index)[1])


def _params(**builtin_keys):
    return {"dataset": "builtin", "root": None, "image_size": 32, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
            "seed": 0, "on_bad_image": "stop",
            "builtin": {"num_images": 16, "canvas_size": 48, "classes": list(CLASSES), "object_scale": [0.2, 0.5],
                        **builtin_keys}}


def _one_sentence(message):
    return "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message)


def test_questions_are_deterministic_and_differ_between_images():
    first = [_questions(_spec(), index) for index in range(6)]
    draw_scene.cache_clear()
    assert [_questions(_spec(), index) for index in range(6)] == first
    assert all(len(questions) == 8 for questions in first)
    assert first[0] != first[1]
    assert _questions(_spec(seed=1), 0) != first[0]


def test_the_number_of_questions_changes_neither_the_image_nor_the_first_questions():
    np.testing.assert_array_equal(render_image(_spec(questions=3), 4), render_image(_spec(questions=9), 4))
    assert _questions(_spec(questions=9), 4)[:3] == _questions(_spec(questions=3), 4)


def _check(question, objects, spec):
    """Whether ``question`` (a generated dict) is true of ``objects``, recomputed here from the scene."""
    size = spec.canvas_size
    names = [spec.classes[item.label] for item in objects]
    colours = [item.colour for item in objects]
    centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in (item.box for item in objects)]

    def the(shape):
        assert names.count(shape) == 1, f"{question}: the {shape} is not unique"
        return names.index(shape)

    text, (answer,) = question["question"], question["answers"]
    if match := re.fullmatch(r"what shape is the (\w+) object\?", text):
        assert colours.count(match[1]) == 1
        return answer == names[colours.index(match[1])]
    if match := re.fullmatch(r"what colour is the (\w+)\?", text):
        return answer == colours[the(match[1])]
    if match := re.fullmatch(r"is the (\w+) (on the left|on the right|at the top|at the bottom)\?", text):
        x, y = centres[the(match[1])]
        offset = {"on the left": size / 2 - x, "on the right": x - size / 2,
                  "at the top": size / 2 - y, "at the bottom": y - size / 2}[match[2]]
        assert abs(offset) >= MARGIN * size
        return answer == ("yes" if offset > 0 else "no")
    if match := re.fullmatch(r"is the (\w+) (large|small)\?", text):
        x0, y0, x1, y1 = objects[the(match[1])].box
        large = (x1 - x0) * (y1 - y0) >= math.pi * (sum(spec.object_scale) / 2 * size / 2) ** 2
        return answer == ("yes" if large == (match[2] == "large") else "no")
    if text == "how many objects are there?":
        return answer == str(len(objects))
    if match := re.fullmatch(r"how many (\w+) are there\?", text):
        return answer == str(sum(plural(name) == match[1] for name in names))
    if match := re.fullmatch(r"what (shape|colour) is (?:the object )?(left|right) of the (\w+)\?", text):
        reference = the(match[3])
        sign = -1 if match[2] == "left" else 1
        side = {math.dist(centres[reference], centres[k]): k for k in range(len(objects))
                if sign * (centres[k][0] - centres[reference][0]) >= MARGIN * size}
        nearest = side[min(side)]
        return answer == (names if match[1] == "shape" else colours)[nearest]
    raise AssertionError(f"unexpected question {text!r}")


def test_every_answer_is_true_of_the_scene():
    spec = _spec()
    families, types = Counter(), {}
    for index in range(80):
        _, objects = draw_scene(spec, index)
        assert [(item.box, item.label) for item in objects] == list(render_scene(spec, index)[1])
        assert all(item.colour in PALETTE for item in objects)
        for question in _questions(spec, index):
            assert _check(question, objects, spec), (index, question)
            assert question["type"] in ANSWER_TYPES
            families[question["family"]] += 1
            types.setdefault(question["family"], set()).add(question["type"])
    assert set(families) == set(FAMILIES)
    assert types["position"] == types["size"] == {"yes/no"} and types["count"] == {"number"}
    assert types["shape"] == types["colour"] == types["relation"] == {"other"}


def test_exactly_the_asked_number_and_repeats_only_when_nothing_new_is_left():
    spec = _spec(questions=40, objects=(1, 1))
    for index in range(5):
        questions = [question["question"] for question in _questions(spec, index)]
        distinct = len(set(questions))
        assert len(questions) == 40 and 5 < distinct < 40
        assert len(set(questions[:distinct])) == distinct  # every new question comes before any repeat


def test_answers_are_balanced_so_the_question_alone_says_little():
    """Per question template (names blanked out) no answer dominates; a blind model that always gives each
    template's most frequent answer (the best it can do without the image) is right far less than half the time."""
    spec = _spec()
    blank = {**{name: "<shape>" for name in CLASSES}, **{plural(name): "<shapes>" for name in CLASSES},
             **{colour: "<colour>" for colour in PALETTE}}
    answers, kinds = defaultdict(Counter), {}
    for index in range(1000):
        for question in _questions(spec, index):
            template = " ".join(blank.get(word, word) for word in question["question"][:-1].split())
            answers[template][question["answers"][0]] += 1
            kinds[template] = question["type"]
    share = {template: counts.most_common(1)[0][1] / counts.total() for template, counts in answers.items()}
    assert min(counts.total() for counts in answers.values()) > 150
    for template, value in share.items():
        assert value <= {"yes/no": 0.6, "number": 0.6, "other": 0.35}[kinds[template]], (template, value)
    blind = sum(counts.most_common(1)[0][1] for counts in answers.values()) / sum(
        counts.total() for counts in answers.values())
    assert blind < 0.45


def test_without_questions_the_images_are_those_of_before():
    """SHA-256 of scenes 0–5 (pixels and objects) as rendered before questions existed, for classification and
    detection params: questions null must leave every draw as it was."""
    expected = {None: "e8381e5391d4c586c15fcf744ec4c0425a88187f51ab33e4ff200cf69ec85b08",
                (1, 4): "864f1851315d5b39573f2e64e786c9591918b2042add659f306d3f9892292f08"}
    builtin.draw_scene.cache_clear()
    for objects, digest in expected.items():
        spec = SceneSpec(canvas_size=48, classes=CLASSES, object_scale=(0.2, 0.5), seed=3, objects=objects)
        found = hashlib.sha256()
        for index in range(6):
            image, boxes = render_scene(spec, index)
            found.update(image.tobytes())
            found.update(repr(boxes).encode())
        assert found.hexdigest() == digest
        assert all(item.colour is None for index in range(6) for item in draw_scene(spec, index)[1])


def test_samples_carry_questions_only_when_asked():
    assert all(sample.questions is None for sample in build_dataset(_params(objects=[1, 4])).samples())
    samples = list(build_dataset(_params(objects=[1, 4], questions=3)).samples())
    assert samples[2].questions() == _questions(SceneSpec(48, CLASSES, (0.2, 0.5), 0, (1, 4), 3), 2)


@pytest.mark.parametrize("keys", [{"questions": 3}, {"questions": 3, "objects": None}])
def test_questions_need_objects(keys):
    with pytest.raises(UserError) as info:
        build_dataset(_params(**keys))
    message = str(info.value)
    assert "prepare.builtin.questions" in message and "prepare.builtin.objects" in message and _one_sentence(message)


@pytest.mark.parametrize("value", [0, -2, "3", 2.5, True])
def test_bad_question_counts(value):
    with pytest.raises(UserError, match=r"prepare\.builtin\.questions is .*integer >= 1") as info:
        build_dataset(_params(objects=[1, 4], questions=value))
    assert _one_sentence(str(info.value))


def test_prepare_writes_questions_and_the_train_answers(tmp_path):
    out = tmp_path / "prepared"
    main(["--params", json.dumps(_params(objects=[1, 4], questions=5)), "--out", str(out)])
    frame = read_manifest(out / "manifest.csv")
    assert list(frame.columns) == [*MANIFEST_COLUMNS, OBJECTS_COLUMN, QUESTIONS_COLUMN]
    spec = SceneSpec(48, CLASSES, (0.2, 0.5), 0, (1, 4), 5)
    train = []
    for image_id, split, cell in zip(frame["image_id"], frame["split"], frame[QUESTIONS_COLUMN]):
        questions = parse_questions(cell, image_id)
        assert questions == _questions(spec, int(image_id))
        train += questions if split == "train" else []
    counts = Counter(question["answers"][0] for question in train)
    answers = json.loads((out / "answers.json").read_text())
    assert sorted(answers) == sorted(counts)
    assert [(-counts[a], a) for a in answers] == sorted((-counts[a], a) for a in answers)
    assert class_names(out / "manifest.csv", "vqa") == answers
    assert class_names(out / "manifest.csv", "detection") == list(CLASSES)  # the same dataset's boxes
    summary = json.loads((out / "prepare.json").read_text())
    assert summary["question_counts"] == {"train": 40, "val": 20, "test": 20}
    assert summary["num_answers"] == len(answers)
    main(["--params", json.dumps(_params(objects=[1, 4])), "--out", str(tmp_path / "plain")])
    assert QUESTIONS_COLUMN not in read_manifest(tmp_path / "plain" / "manifest.csv").columns
    assert not (tmp_path / "plain" / "answers.json").exists()
    with pytest.raises(UserError, match="the vqa task needs questions, but the dataset of .* has none; set "
                                        "prepare.builtin.questions"):
        class_names(tmp_path / "plain" / "manifest.csv", "vqa")


def test_answer_vocabulary_is_by_frequency_then_alphabetical():
    questions = [{"answers": ["no"]}, {"answers": ["2", "two"]}, {"answers": ["yes"]}, {"answers": ["no", "yes"]},
                 {"answers": ["2"]}, {"answers": ["blue"]}]
    assert answer_vocabulary(questions) == ["2", "no", "yes", "blue", "two"]
    assert answer_vocabulary([]) == []


def _row(index, **cells):
    return {"image_id": f"{index:06d}", "path": f"images/train/{index:06d}.png", "label": -1, "class_name": "",
            "split": "train", "source": "test", "orig_width": 8, "orig_height": 8, **cells}


def test_the_questions_column_round_trips_through_the_manifest(tmp_path):
    questions = [[{"question": "is it, \"quoted\"?", "answers": ["yes"], "type": "yes/no", "family": "x"}],
                 [], [{"question": "how many?", "answers": ["2", "3"], "type": "number", "family": ""}]]
    write_manifest(tmp_path / "q.csv", [_row(k, questions=questions_json(q)) for k, q in enumerate(questions)])
    frame = read_manifest(tmp_path / "q.csv")
    assert list(frame.columns) == [*MANIFEST_COLUMNS, QUESTIONS_COLUMN]
    assert [parse_questions(cell, "q.csv") for cell in frame[QUESTIONS_COLUMN]] == questions
    write_manifest(tmp_path / "both.csv", [_row(0, questions="[]", objects='{"boxes":[],"labels":[]}')])
    assert list(read_manifest(tmp_path / "both.csv").columns)[-2:] == [OBJECTS_COLUMN, QUESTIONS_COLUMN]


@pytest.mark.parametrize("cell", ['{"question": "x"}', "[1]", '[{"question": "x", "answers": [], "type": "other", '
                                  '"family": ""}]', '[{"question": "x", "answers": ["a"], "type": "colour", '
                                  '"family": ""}]', "not json"])
def test_malformed_question_cells(cell):
    with pytest.raises(UserError, match="row 7 has malformed questions") as info:
        parse_questions(cell, "row 7")
    assert _one_sentence(str(info.value))


def test_a_question_dataset_without_train_answers_is_an_error(tmp_path):
    write_manifest(tmp_path / "manifest.csv", [_row(k, questions="[]") for k in range(3)])
    (tmp_path / "answers.json").write_text("[]\n")
    with pytest.raises(UserError) as info:
        class_names(tmp_path / "manifest.csv", "vqa")
    message = str(info.value)
    assert str(tmp_path / "manifest.csv") in message and "prepare.questions" in message and _one_sentence(message)
