"""Visual question answering, the task of seed 000 (Uselis, Ghosh and Inuganti, "Where's Waldo?: Visual
Question Answering on Extreme Lossy Compressed Images using a Variational Approach with Scale Hyperprior").

A sample is an image and its questions (the manifest's :data:`~taskcodec.data.manifest.QUESTIONS_COLUMN`:
generated from the builtin scenes, or read from a VQA-style file); the task's classes are the answers
vocabulary (``answers.json``, every answer of the training split). The model is Kazemi and Elqursh's
"Show, Ask, Attend, and Answer" (:mod:`taskcodec.tasks.vqa_model`), which reads each image's questions
beside the image: :meth:`VQATask.apply` gives it the batch's questions from the targets.

- Questions are lower-cased words, each hashed into one of :data:`WORD_BUCKETS` learned embeddings (the
  hashing trick, Weinberger et al., "Feature Hashing for Large Scale Multitask Learning", ICML 2009), so
  no word vocabulary has to travel with the model and a word unseen in training still has an embedding.
- Outputs: ``N × MAX_QUESTIONS × answers`` logits, one row per question of the image in its order; the
  rows past an image's questions are NaN.
- Loss: cross-entropy of the answer logits against each question's answer scores, normalised to sum to 1
  (soft targets, as in Kazemi and Elqursh's training on VQA's ten human answers); a question whose
  answers are all outside the vocabulary has no target and no loss.
- Accuracy: the score of the predicted answer, VQA's ``min(#humans who gave it / 3, 1)``
  (Antol et al., "VQA: Visual Question Answering", ICCV 2015; without the official average over
  subsets of nine annotators); with fewer than three answers, ``#humans who gave it / #answers``, so a
  question with one answer (the generated ones) scores 1 or 0. ``accuracy`` is over all questions,
  ``accuracy_<type>`` over the questions of VQA's answer types (yes/no, number, other); per image, the
  mean over its questions (NaN without one of that type). :meth:`VQATask.breakdown` gives each question's
  accuracy with its question type (the generated families, or a VQA file's ``question_type``), for the
  report's accuracy per question type (VQA's ``perQuestionType``).
- Augmentation: a horizontally flipped image has "left" and "right" swapped in its questions and in its
  answers, so every answer about sides stays true (the trainings mirror half of their images; a question
  about text in the image would not survive that).
"""

from __future__ import annotations

import math
import re
import zlib

import torch
import torch.nn.functional as F

from taskcodec.data.manifest import ANSWER_TYPES, QUESTIONS_COLUMN, parse_questions
from taskcodec.errors import UserError
from taskcodec.tasks.registry import TRUNK_PROPERTIES, Task, most_probable, register_task
from taskcodec.tasks.vqa_model import SMALL_ARCH, build_vqa_model

WORD_BUCKETS = 2**14
MAX_QUESTIONS = 32  # per image
FULL_CREDIT_HUMANS = 3
_WORD = re.compile(r"[a-z0-9]+")

_SIZE = {"type": "integer", "minimum": 1}
#: what ``tasks.vqa.model`` of the VQA model may hold (:func:`build_vqa_model`); glimpses and dropout default to the paper's
VQA_MODEL_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["arch", "weights", "embedding", "hidden", "attention_hidden", "classifier_hidden"],
    "properties": {
        **{key: TRUNK_PROPERTIES[key] for key in ("arch", "widths", "blocks", "stem_stride", "weights")},
        "embedding": _SIZE, "hidden": _SIZE, "attention_hidden": _SIZE, "classifier_hidden": _SIZE,
        "glimpses": _SIZE,
        "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "blind": {"type": "boolean"},
    },
    "if": {"properties": {"arch": {"const": SMALL_ARCH}}},
    "then": {"required": ["widths", "blocks", "stem_stride"]},
}


def answer_score(answers: list[str], answer: str) -> float:
    """The accuracy of ``answer`` to a question with the human ``answers``: ``min(#humans who gave it / 3, 1)``,
    over ``#answers`` instead of 3 with fewer than three answers."""
    return min(answers.count(answer) / min(FULL_CREDIT_HUMANS, len(answers)), 1.0)


def word_ids(question: str) -> list[int]:
    """The question's words (lower-cased runs of letters and digits) as embedding rows 1..WORD_BUCKETS-1
    (0 is padding)."""
    return [zlib.crc32(word.encode()) % (WORD_BUCKETS - 1) + 1 for word in _WORD.findall(question.lower())]


#: the words, in questions and answers, that trade places when an image is mirrored left–right
MIRROR = {"left": "right", "right": "left"}


@register_task("vqa")
class VQATask(Task):
    """Visual question answering (see the module docstring); ``class_names`` are the answers."""

    sample_fields = (QUESTIONS_COLUMN,)
    target_reads_image = False
    metric_names = ("accuracy", *(f"accuracy_{kind.replace('/', '_')}" for kind in ANSWER_TYPES))
    primary_metric = "accuracy"
    group_name = "question type"
    model_schema = VQA_MODEL_SCHEMA
    splits = False  # the answer needs the question beside the image features

    def target(self, row, image):
        """The image's questions, their answers, answer ``types`` (VQA's yes/no, number, other: the
        ``accuracy_<type>`` metrics) and question types (``families``: what :meth:`breakdown` groups by), as plain
        lists (per_image.csv's label)."""
        image_id = row.get("image_id", "")
        if QUESTIONS_COLUMN not in row:
            raise UserError(f"image {image_id} has no questions, but the vqa task needs them; prepare a dataset with "
                            "questions (prepare.builtin.questions, or prepare.questions with an image folder)")
        questions = parse_questions(row[QUESTIONS_COLUMN], f"manifest row {image_id}")
        if len(questions) > MAX_QUESTIONS:
            raise UserError(f"image {image_id} has {len(questions)} questions; the vqa task takes at most "
                            f"{MAX_QUESTIONS} per image: split its questions over copies of the image")
        return {"questions": [q["question"] for q in questions], "answers": [q["answers"] for q in questions],
                "types": [q["type"] for q in questions], "families": [q["family"] for q in questions]}

    def collate(self, targets):
        """Per image: word rows ``tokens`` (Q×L, 0-padded), ``lengths`` (Q), answer ``scores`` (Q×answers,
        the accuracy each answer would get) and answer ``types`` (Q, indices of :data:`ANSWER_TYPES`)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        collated = []
        for target in targets:
            words = [word_ids(question) for question in target["questions"]]
            longest = max((len(w) for w in words), default=0)
            tokens = torch.zeros(len(words), max(longest, 1), dtype=torch.int64)
            scores = torch.zeros(len(words), len(self.class_names))
            for q, (ids, answers) in enumerate(zip(words, target["answers"])):
                tokens[q, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
                for answer in set(answers) & index.keys():
                    scores[q, index[answer]] = answer_score(answers, answer)
            collated.append({"tokens": tokens, "lengths": torch.tensor([len(w) for w in words], dtype=torch.int64),
                             "scores": scores,
                             "types": torch.tensor([ANSWER_TYPES.index(t) for t in target["types"]], dtype=torch.int64)})
        return collated

    def augment(self, targets, draws, padding, size):
        left, right = word_ids("left right")
        mirrored = self._mirrored_answers()
        moved = []
        for target, flip in zip(targets, draws.flips.tolist()):
            if flip:
                tokens = target["tokens"]
                tokens = torch.where(tokens == left, right, torch.where(tokens == right, left, tokens))
                scores = torch.cat([target["scores"], target["scores"].new_zeros(len(tokens), 1)], dim=1)
                target = {**target, "tokens": tokens, "scores": scores[:, mirrored]}
            moved.append(target)
        return moved

    def _mirrored_answers(self) -> torch.Tensor:
        """For each answer, the column of its mirror image's score: "left" ↔ "right" (a column of zeros for one
        outside the vocabulary), every other answer itself."""
        index = {name: i for i, name in enumerate(self.class_names)}
        zero = len(self.class_names)
        return torch.tensor([index.get(MIRROR[name], zero) if name in MIRROR else i
                             for i, name in enumerate(self.class_names)])

    def build_model(self, model_params):
        return build_vqa_model(model_params, len(self.class_names), WORD_BUCKETS)

    def apply(self, model, inputs, targets):
        images = inputs[0]
        count = max((len(t["lengths"]) for t in targets), default=0)
        longest = max((t["tokens"].shape[1] for t in targets), default=1)
        tokens = torch.zeros(len(targets), max(count, 1), longest, dtype=torch.int64)
        lengths = torch.zeros(len(targets), max(count, 1), dtype=torch.int64)
        for i, target in enumerate(targets):
            q, length = target["tokens"].shape
            tokens[i, :q, :length] = target["tokens"]
            lengths[i, :q] = target["lengths"]
        logits = model(images, tokens.to(images.device), lengths.to(images.device))
        asked = torch.zeros(lengths.shape, dtype=torch.bool)
        for i, target in enumerate(targets):
            asked[i, : len(target["lengths"])] = True
        logits = logits.masked_fill(~asked.to(images.device)[..., None], math.nan)
        return F.pad(logits[:, :count], (0, 0, 0, MAX_QUESTIONS - count), value=math.nan)

    @staticmethod
    def _asked(outputs: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits, answer scores, answer types and image index of every question of the set."""
        rows = [(outputs[i, : len(t["types"])], t["scores"].to(outputs.device), t["types"].to(outputs.device),
                 torch.full((len(t["types"]),), i, device=outputs.device)) for i, t in enumerate(targets)]
        if not rows:
            empty = outputs.new_zeros((0, outputs.shape[-1]))
            return empty, empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        return tuple(torch.cat(parts) for parts in zip(*rows))

    def loss(self, outputs, targets):
        logits, scores, _, _ = self._asked(outputs, targets)
        answered = scores.sum(dim=1) > 0
        if not answered.any():
            return outputs.nan_to_num().sum() * 0.0
        wanted = scores[answered] / scores[answered].sum(dim=1, keepdim=True)
        return -(wanted * F.log_softmax(logits[answered], dim=1)).sum(dim=1).mean()

    def _credit(self, outputs, targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each question's accuracy (the score of the predicted answer), answer type and image index."""
        logits, scores, types, image = self._asked(outputs.detach(), targets)
        credit = scores.gather(1, logits.argmax(dim=1, keepdim=True))[:, 0].double()
        return credit, types, image

    def _by_type(self, credit: torch.Tensor, types: torch.Tensor) -> dict[str, torch.Tensor]:
        """``metric_names`` → the credits they average over."""
        return {"accuracy": credit, **{name: credit[types == kind]
                                       for kind, name in enumerate(self.metric_names[1:])}}

    def scores(self, outputs, targets):
        credit, types, image = self._credit(outputs, targets)
        values = {name: torch.full((len(targets),), math.nan, dtype=torch.float64) for name in self.metric_names}
        for i in range(len(targets)):
            for name, chosen in self._by_type(credit[image == i], types[image == i]).items():
                if len(chosen):
                    values[name][i] = chosen.mean()
        return values

    def summarize(self, outputs, targets):
        credit, types, _ = self._credit(outputs, targets)
        return {name: chosen.mean().item() if len(chosen) else math.nan
                for name, chosen in self._by_type(credit, types).items()}

    def breakdown(self, target, prediction):
        """Each question of the image with a question type: (its type, the accuracy of its predicted answer)."""
        if "families" not in target:  # a label of per_image.csv written before targets carried question types
            raise UserError("an evaluation's per_image.csv predates the question types of its questions; rerun the "
                            "evaluations (snakemake --forcerun evaluate_codec evaluate_finetuned evaluate_classical)")
        return [(family, answer_score(answers, answer))
                for family, answers, answer in zip(target["families"], target["answers"], prediction) if family]

    def predictions(self, outputs):
        """Each image's answers, one per question, for per_image.csv."""
        return [[self.class_names[i] for i in rows[~rows.isnan().any(dim=1)].argmax(dim=1).tolist()]
                for rows in outputs]

    def describe(self, outputs, target, k=3):
        """The image's first question and the ``k`` most probable answers with their softmax confidences."""
        if not target["questions"]:
            return "no question"
        return f"{target['questions'][0]}\n{most_probable(outputs[0], self.class_names, k)}"
