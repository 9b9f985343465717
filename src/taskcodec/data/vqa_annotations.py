"""Questions about an image folder's images from a VQA-style JSON file (``prepare.questions``).

The file holds the fields of VQA v1/v2's question and annotation entries (Antol et al., "VQA: Visual
Question Answering", ICCV 2015), merged into one entry per question, with the image named by its path
instead of an id::

    {"questions": [
        {"image": "kitchen/0001.jpg",          # path relative to prepare.root, or a file name found once below it
         "question": "What colour is the kettle?",
         "answers": ["red", "Red.", "dark red"],   # or VQA's [{"answer": "red"}, ...]; at least one
         "answer_type": "other",               # optional: yes/no | number | other (default other)
         "question_type": "what color is the"}, # optional: VQA's question type (default "")
        ...]}

Other keys (``question_id``, ``image_id``, ``multiple_choice_answer``, ...) are ignored. Answers are
normalised to lower case without surrounding spaces or trailing punctuation (``"Red."`` → ``"red"``), so
the same answer counts once in the answer vocabulary. Each question becomes the manifest's
``{"question", "answers", "type", "family"}`` (:data:`taskcodec.data.manifest.QUESTIONS_COLUMN`) with
``type`` the answer type and ``family`` the question type; an image the file does not name has none.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from taskcodec.data.manifest import ANSWER_TYPES
from taskcodec.errors import UserError, shown_path

_TRAILING_PUNCTUATION = ".,;:!?"


def read_vqa_questions(path: Path, root: Path, images: list[Path]) -> dict[Path, list[dict[str, Any]]]:
    """``{image path: its questions}`` for every one of ``images`` (files below ``root``), ``[]`` for an image the
    file does not name; a missing or malformed file, or an entry naming no image below ``root``, is a
    :class:`UserError` naming the file and the entry."""
    if not path.is_file():
        raise UserError(f"prepare.questions file {shown_path(path)} does not exist; fix the path or set it to null")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["questions"]
        if not isinstance(entries, list):
            raise TypeError(f"questions is a {type(entries).__name__}, not a list")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise UserError(f"prepare.questions file {shown_path(path)} is not JSON with a 'questions' list "
                        f"({type(err).__name__}: {err}); fix or re-export it") from None
    find = _image_finder(root, images)
    found: dict[Path, list[dict[str, Any]]] = {image: [] for image in images}
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise ValueError("is not an object; make it one with image, question and answers")
            found[find(entry.get("image"))].append(_question(entry))
        except ValueError as err:
            raise UserError(f"entry questions[{index}] of prepare.questions file {shown_path(path)} {err}") from None
    return found


def normalise_answer(answer: str) -> str:
    """``answer`` in lower case without surrounding spaces or trailing punctuation."""
    return answer.strip().lower().rstrip(_TRAILING_PUNCTUATION).strip()


def _image_finder(root: Path, images: list[Path]) -> Callable[[Any], Path]:
    """A function from an entry's ``image`` to the image it names: a path relative to ``root``, or a file name
    that exactly one image below ``root`` has; anything else raises ValueError."""
    by_path = {image.relative_to(root).as_posix(): image for image in images}
    by_name: dict[str, list[Path]] = defaultdict(list)
    for image in images:
        by_name[image.name].append(image)

    def find(name: Any) -> Path:
        if not isinstance(name, str) or not name:
            raise ValueError("has no 'image'; add the image's path relative to prepare.root (or its file name)")
        if name in by_path:
            return by_path[name]
        if len(by_name.get(name, ())) > 1:
            raise ValueError(f"names image '{name}', a file name {len(by_name[name])} images below prepare.root "
                             f"{shown_path(root)} have; give its path relative to prepare.root instead")
        if name in by_name:
            return by_name[name][0]
        raise ValueError(f"names image '{name}', which is not below prepare.root {shown_path(root)}; fix its image "
                         "(a path relative to prepare.root, or a file name) or add the image")

    return find


def _question(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as a manifest question; a missing or wrong field raises ValueError saying which and what to do."""
    question = entry.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("has no 'question'; add the question as a non-empty string")
    answers = entry.get("answers")
    if not isinstance(answers, list) or not answers:
        raise ValueError("has no 'answers'; give a non-empty list of answers (strings or {\"answer\": string})")
    texts = [answer.get("answer") if isinstance(answer, dict) else answer for answer in answers]
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("has an answer that is neither a string nor {\"answer\": string}; fix its answers")
    normalised = [normalise_answer(text) for text in texts]
    if not all(normalised):
        raise ValueError("has an empty answer; remove it or fill it in")
    answer_type = entry.get("answer_type", "other")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"has answer_type {answer_type!r}; use one of {', '.join(ANSWER_TYPES)} or leave it out")
    question_type = entry.get("question_type", "")
    if not isinstance(question_type, str):
        raise ValueError(f"has question_type {question_type!r}; make it a string or leave it out")
    return {"question": question.strip(), "answers": normalised, "type": answer_type, "family": question_type}
