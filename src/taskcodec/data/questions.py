"""Questions with answers about the builtin scenes, for visual question answering (seed 000).

With ``prepare.builtin.questions: n`` (and ``prepare.builtin.objects``) each image gets ``n`` questions
about its *visible* objects (:class:`~taskcodec.data.builtin.SceneObject`: shape, palette colour, box),
drawn from ``np.random.default_rng([seed, index, QUESTION_STREAM])``, so they depend only on (seed,
index) and never shift the image's own draws. A question is a dict ``{"question": str, "answers": [str],
"type": "yes/no" | "number" | "other", "family": str}``, ``type`` being VQA v1's answer type. The families:

- ``shape``: "what shape is the <colour> object?" (no other object has that colour) → the shape.
- ``colour``: "what colour is the <shape>?" (no other object has that shape) → the colour.
- ``position``: "is the <shape> on the left?" / "on the right?" / "at the top?" / "at the bottom?" (shape
  unique) → yes/no by its box centre against the image centre; an object whose centre is within
  :data:`MARGIN` of the side from the middle line is not asked about along that axis.
- ``size``: "is the <shape> large?" / "is the <shape> small?" (shape unique) → yes/no: *large* when its
  visible box's area is at least that of the circle a shape at the middle of ``object_scale`` is drawn
  in, π·((lo + hi)/2 · canvas_size/2)² (about half the objects are), *small* otherwise.
- ``count``: "how many objects are there?" and "how many <shape>s are there?" (any class, shown or not)
  → the number as digits.
- ``relation``: "what shape is left of the <shape>?" / "right of", "what colour is the object left of the
  <shape>?" / "right of" (shape unique) → the shape or colour of the object nearest to it (box centres)
  among those at least :data:`MARGIN` of the side to that side of it; not asked when there is none or
  two are equally near.

Balance, which keeps a model that reads only the question far below one that sees the image: a question
is drawn by choosing a family, then a (question template, answer) pair among those the scene offers,
then a question of that pair, each uniformly. So a yes/no template is answered yes and no about equally
often, and "how many <shape>s" spreads its answers over the counts the scene has instead of mostly "0".
Within an image a (template, answer) pair already drawn is avoided while others remain, then a question
already asked; "how many objects are there?" is always askable, so every image gets exactly ``n``.
Measured on 1000 images of 1–4 objects, 8 questions each: no template's most frequent answer above 55 %
(yes/no and counts) or 22 % (shapes, colours); always giving each template's most frequent answer (the
best guess from the question with its names blanked out; a model reading the names can do somewhat better,
e.g. "what shape is left of the circle?" is never answered "circle") is right 38 % of the time (``tests/data/test_questions.py``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # builtin imports this module to give its samples their questions
    from taskcodec.data.builtin import SceneObject, SceneSpec

QUESTION_STREAM = 1  # the third seed key of the question draws (the image's draws use [seed, index])
FAMILIES = ("shape", "colour", "position", "size", "count", "relation")
MARGIN = 0.05  # fraction of the canvas side: closer than this to a dividing line is too close to call a side


@dataclass(frozen=True)
class _Candidate:
    family: str
    template: str  # the question with {shape}, {shapes} and {colour} unfilled
    question: str
    answer: str
    type: str


def generate_questions(spec: SceneSpec, index: int, objects: Sequence[SceneObject]) -> list[dict[str, Any]]:
    """The ``spec.questions`` questions about builtin image ``index``, whose visible objects are ``objects``."""
    rng = np.random.default_rng([spec.seed, index, QUESTION_STREAM])
    candidates = _candidates(spec, objects)
    chosen: list[_Candidate] = []
    while len(chosen) < spec.questions:
        pairs = {(candidate.template, candidate.answer) for candidate in chosen}
        asked = {candidate.question for candidate in chosen}
        for allowed in (lambda c: (c.template, c.answer) not in pairs, lambda c: c.question not in asked,
                        lambda c: True):  # a new (template, answer) pair, else a new question, else any
            pool = {family: kept for family, found in candidates.items() if (kept := [c for c in found if allowed(c)])}
            if pool:
                break
        chosen.append(_draw(rng, pool))
    return [{"question": c.question, "answers": [c.answer], "type": c.type, "family": c.family} for c in chosen]


def _draw(rng: np.random.Generator, pool: dict[str, list[_Candidate]]) -> _Candidate:
    """A family, then a (template, answer) pair of it, then a question of that pair, each uniformly."""
    family = list(pool)[rng.integers(len(pool))]
    pairs = sorted({(candidate.template, candidate.answer) for candidate in pool[family]})
    pair = pairs[rng.integers(len(pairs))]
    matching = [candidate for candidate in pool[family] if (candidate.template, candidate.answer) == pair]
    return matching[rng.integers(len(matching))]


def _candidates(spec: SceneSpec, objects: Sequence[SceneObject]) -> dict[str, list[_Candidate]]:
    """Every question the scene can answer, by family (in :data:`FAMILIES` order)."""
    found: dict[str, list[_Candidate]] = {family: [] for family in FAMILIES}

    def ask(family: str, template: str, answer: str | bool | int, **names: str) -> None:
        """Add a question; its answer type follows from the answer's: bool yes/no, int number, str other."""
        if isinstance(answer, bool):
            text, kind = ("yes" if answer else "no"), "yes/no"
        else:
            text, kind = str(answer), "number" if isinstance(answer, int) else "other"
        found[family].append(_Candidate(family, template, template.format(**names), text, kind))

    size = spec.canvas_size
    shape_counts = Counter(item.label for item in objects)
    colour_counts = Counter(item.colour for item in objects)
    large_area = math.pi * ((spec.object_scale[0] + spec.object_scale[1]) / 2 * size / 2) ** 2
    for item in objects:
        shape = spec.classes[item.label]
        if colour_counts[item.colour] == 1:
            ask("shape", "what shape is the {colour} object?", shape, colour=item.colour)
        if shape_counts[item.label] != 1:
            continue
        ask("colour", "what colour is the {shape}?", item.colour, shape=shape)
        cx, cy = _centre(item)
        for (first, second), offset in ((("on the left", "on the right"), cx - size / 2),
                                        (("at the top", "at the bottom"), cy - size / 2)):
            if abs(offset) >= MARGIN * size:
                ask("position", f"is the {{shape}} {first}?", bool(offset < 0), shape=shape)
                ask("position", f"is the {{shape}} {second}?", bool(offset > 0), shape=shape)
        ask("size", "is the {shape} large?", item.area >= large_area, shape=shape)
        ask("size", "is the {shape} small?", item.area < large_area, shape=shape)
        for side, sign in (("left", -1), ("right", 1)):
            neighbour = _nearest_on_side(item, objects, sign, MARGIN * size)
            if neighbour is not None:
                ask("relation", f"what shape is {side} of the {{shape}}?", spec.classes[neighbour.label], shape=shape)
                ask("relation", f"what colour is the object {side} of the {{shape}}?", neighbour.colour, shape=shape)
    ask("count", "how many objects are there?", len(objects))
    for label, shape in enumerate(spec.classes):
        ask("count", "how many {shapes} are there?", shape_counts[label], shapes=plural(shape))
    return found


def plural(noun: str) -> str:
    """The plural of a shape name: ``circles``, ``crosses``."""
    return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


def _centre(item: SceneObject) -> tuple[float, float]:
    x0, y0, x1, y1 = item.box
    return (x0 + x1) / 2, (y0 + y1) / 2


def _nearest_on_side(item: SceneObject, objects: Sequence[SceneObject], sign: int,
                     margin: float) -> SceneObject | None:
    """The object whose box centre is nearest ``item``'s among those at least ``margin`` to its left (``sign``
    −1) or right (+1); None when there is none or two are equally near."""
    cx, cy = _centre(item)
    distances = sorted((math.dist((cx, cy), _centre(other)), order) for order, other in enumerate(objects)
                       if sign * (_centre(other)[0] - cx) >= margin)
    if not distances or (len(distances) > 1 and distances[0][0] == distances[1][0]):
        return None
    return objects[distances[0][1]]
