"""The VQA task: targets from the manifest's questions, VQA accuracy, the loss, the questions beside the image."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from taskcodec.augment import Draws
from taskcodec.data.manifest import QUESTIONS_COLUMN
from taskcodec.errors import UserError
from taskcodec.tasks.registry import build_task
from taskcodec.tasks.vqa import MAX_QUESTIONS, word_ids

ANSWERS = ["yes", "no", "2", "circle", "red"]
MODEL = {"arch": "san-resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 2, "weights": None,
         "embedding": 8, "hidden": 8, "attention_hidden": 8, "classifier_hidden": 8}


def question(text, answers, kind="other"):
    return {"question": text, "answers": answers, "type": kind, "family": "test"}


def row(image_id, *questions):
    return {"image_id": image_id, QUESTIONS_COLUMN: json.dumps(list(questions))}


@pytest.fixture
def task():
    return build_task("vqa", ANSWERS)


def test_answer_scores_follow_vqa_accuracy(task):
    target = task.target(row("a", question("is it red?", ["yes", "yes", "no", "yes", "yes"], "yes/no"),
                             question("what shape is it?", ["circle"]),
                             question("what is it?", ["teapot"])), None)
    scores = task.collate([target])[0]["scores"]
    assert scores[0, ANSWERS.index("yes")] == 1.0  # four of five humans: min(4 / 3, 1)
    assert scores[0, ANSWERS.index("no")] == pytest.approx(1 / 3)
    assert scores[1].tolist() == [0, 0, 0, 1, 0]  # one answer: right or wrong
    assert scores[2].sum() == 0  # outside the answers vocabulary: no credit for any prediction


def test_breakdown_scores_each_question_with_a_type_by_its_predicted_answer(task):
    target = task.target(row("a", question("is it red?", ["yes", "yes", "no", "yes"], "yes/no"),
                             {**question("what shape is it?", ["circle", "square"]), "family": "shape"},
                             {**question("what is it?", ["teapot"]), "family": ""}), None)
    assert target["families"] == ["test", "shape", ""]
    assert task.group_name == "question type"
    # "no": one human of four (of 3 for full credit); "square": one of two answers; no type: not broken down
    assert task.breakdown(target, ["no", "square", "circle"]) == [("test", pytest.approx(1 / 3)), ("shape", 0.5)]
    assert build_task("classification", ANSWERS).breakdown(0, 0) == []
    old_label = {key: value for key, value in target.items() if key != "families"}  # a per_image.csv before types
    with pytest.raises(UserError, match="per_image.csv predates the question types of its questions; rerun"):
        task.breakdown(old_label, ["no", "square", "circle"])


def test_outputs_have_one_row_per_question_and_nan_after_them(task):
    torch.manual_seed(0)
    model = task.build_model(MODEL).eval()
    targets = task.collate([task.target(row("a", question("what shape is it?", ["circle"])), None),
                            task.target(row("b", *[question(f"is it red {i}?", ["no"], "yes/no") for i in range(3)]),
                                        None)])
    outputs = task.apply(model, (torch.rand(2, 3, 32, 32),), targets)
    assert outputs.shape == (2, MAX_QUESTIONS, len(ANSWERS))
    assert outputs[0, :1].isfinite().all() and outputs[0, 1:].isnan().all()
    assert outputs[1, :3].isfinite().all() and outputs[1, 3:].isnan().all()
    assert task.predictions(outputs)[1] == [ANSWERS[i] for i in outputs[1, :3].argmax(dim=1).tolist()]
    assert model(torch.rand(2, 3, 32, 32)).shape[:2] == (2, MODEL["widths"][-1])  # no questions: the features


def test_loss_is_the_cross_entropy_of_the_asked_questions(task):
    targets = task.collate([task.target(row("a", question("what shape is it?", ["circle"]),
                                            question("how many?", ["2"], "number")), None)])
    logits = torch.randn(1, 2, len(ANSWERS), requires_grad=True)
    outputs = F.pad(logits, (0, 0, 0, MAX_QUESTIONS - 2), value=math.nan)
    loss = task.loss(outputs, targets)
    expected = F.cross_entropy(logits[0], torch.tensor([ANSWERS.index("circle"), ANSWERS.index("2")]))
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad.isfinite().all() and logits.grad.abs().sum() > 0


def test_accuracy_per_image_per_answer_type_and_over_the_set(task):
    targets = task.collate([
        task.target(row("a", question("is it red?", ["yes"], "yes/no"), question("what shape?", ["circle"])), None),
        task.target(row("b", question("how many?", ["2"], "number")), None)])
    outputs = torch.full((2, MAX_QUESTIONS, len(ANSWERS)), math.nan)
    outputs[0, :2] = F.one_hot(torch.tensor([ANSWERS.index("yes"), ANSWERS.index("red")]), len(ANSWERS)).float()
    outputs[1, :1] = F.one_hot(torch.tensor([ANSWERS.index("2")]), len(ANSWERS)).float()
    scores = task.scores(outputs, targets)
    assert scores["accuracy"].tolist() == [0.5, 1.0]
    assert scores["accuracy_yes_no"][0] == 1.0 and scores["accuracy_yes_no"][1].isnan()
    assert scores["accuracy_other"][0] == 0.0 and scores["accuracy_number"][1] == 1.0
    summary = task.summarize(outputs, targets)  # over the three questions, not the mean of the two images
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert (summary["accuracy_yes_no"], summary["accuracy_number"], summary["accuracy_other"]) == (1.0, 1.0, 0.0)


def test_a_mirrored_image_has_left_and_right_swapped_in_its_questions_and_answers():
    task = build_task("vqa", [*ANSWERS, "left", "right"])
    targets = task.collate([task.target(row(name, question("what shape is left of the circle?", ["red"]),
                                            question("where is the circle?", ["left", "left", "right"])), None)
                            for name in ("a", "b")])
    draws = Draws(index=torch.arange(2), tops=torch.zeros(2, dtype=torch.int64), lefts=torch.zeros(2, dtype=torch.int64),
                  flips=torch.tensor([True, False]))
    moved = task.augment(targets, draws, 0, (32, 32))
    assert moved[0]["tokens"][0].tolist() == word_ids("what shape is right of the circle")
    assert moved[1]["tokens"][0].tolist() == word_ids("what shape is left of the circle")
    assert torch.equal(moved[0]["scores"][0], targets[0]["scores"][0])  # red stays red
    assert moved[0]["scores"][1, -2:].tolist() == pytest.approx([1 / 3, 2 / 3])  # left 2/3, right 1/3, swapped
    assert torch.equal(moved[1]["scores"], targets[1]["scores"])
    only_left = build_task("vqa", ["left"])  # the mirror of an answer outside the vocabulary earns nothing
    flipped = only_left.augment(only_left.collate([only_left.target(row("a", question("where?", ["left"])), None)]),
                                Draws(*(torch.zeros(1, dtype=torch.int64),) * 3, torch.tensor([True])), 0, (8, 8))
    assert flipped[0]["scores"].tolist() == [[0.0]]


def test_describe_shows_the_first_question_and_its_top_answers(task):
    target = task.target(row("a", question("what shape is it?", ["circle"])), None)
    outputs = torch.full((MAX_QUESTIONS, len(ANSWERS)), math.nan)
    outputs[0] = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0])
    assert task.describe(outputs, target, 1) == "what shape is it?\ncircle 97%"


def test_bad_questions_stop_with_a_sentence(task):
    with pytest.raises(UserError, match="image a has no questions"):
        task.target({"image_id": "a"}, None)
    with pytest.raises(UserError, match=f"at most {MAX_QUESTIONS}"):
        task.target(row("a", *[question("why?", ["no"])] * (MAX_QUESTIONS + 1)), None)
    with pytest.raises(UserError, match="manifest row a has malformed questions .*answer type 'colour'"):
        task.target(row("a", question("why?", ["no"], "colour")), None)
