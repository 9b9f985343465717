"""The default dataset: simple shapes on a photographic background.

Everything is generated offline from the photographs and textures that
scikit-image ships inside its wheel (nothing is downloaded). Image ``i``
depends only on ``(seed, i)``: it is drawn from
``np.random.default_rng([seed, i])``, so the same params give byte-identical
images in any order.

- Classification (default, ``prepare.builtin.objects`` absent or null): one
  shape per image; image ``i`` shows class ``i % len(classes)``, so the
  classes are balanced.
- Detection (``objects: [lo, hi]``): ``lo``–``hi`` shapes per image, each of a
  random class, scale (``object_scale``), position and rotation, drawn in turn
  so later ones may cover earlier ones. Each object's box is drawn around its
  *visible* pixels (coverage ≥ ½ after the later objects are drawn over it, the
  convention of COCO's boxes); an object hidden entirely is left out. The images
  are unlabeled (label -1), or with ``labeled: true`` labeled by their largest visible
  object (box area; the first drawn on a tie): classification beside detection and VQA.
- Visual question answering (``objects`` and ``questions: n``): the detection scenes with each object
  in a nameable :data:`PALETTE` colour (the only draws that differ) and ``n`` questions per image about
  the visible objects (:mod:`taskcodec.data.questions`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import skimage.data
from PIL import Image, ImageDraw

from taskcodec.data.questions import generate_questions
from taskcodec.data.registry import UNLABELED, Sample, register_dataset, require_int, require_param
from taskcodec.errors import UserError

SHIPPED_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
SHIPPED_TEXTURES = ("brick.png", "grass.png", "gravel.png", "camera.png")  # grayscale, tinted


def _regular_polygon(corners: int, radius: float = 1.0) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * math.pi, corners, endpoint=False) - math.pi / 2
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner_radius: float = 0.42) -> np.ndarray:
    outer = _regular_polygon(2 * points)
    outer[1::2] *= inner_radius
    return outer


def _cross(half_width: float = 0.3) -> np.ndarray:
    w = half_width
    return np.array(
        [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)],
        dtype=np.float64,
    )


# Each shape is a list of (polygon in unit coordinates, fill); fill 0 cuts a hole.
SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_regular_polygon(64), 255)],
    "square": [(_regular_polygon(4), 255)],
    "triangle": [(_regular_polygon(3), 255)],
    "cross": [(_cross(), 255)],
    "ring": [(_regular_polygon(64), 255), (_regular_polygon(64, radius=0.55), 0)],
    "star": [(_star(), 255)],
}

_SUPERSAMPLE = 4  # shapes are drawn at 4x and box-downsampled, which anti-aliases their edges
_MIN_COLOUR_DISTANCE = 110.0  # RGB distance of the object colour from the background under it
MAX_OBJECTS = 16  # objects per image of a detection dataset
#: the nameable object colours of a question dataset (RGB): well apart in hue, and white
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (235, 215, 40),
    "green": (40, 175, 50),
    "cyan": (40, 205, 215),
    "blue": (40, 70, 230),
    "purple": (180, 50, 210),
    "white": (245, 245, 245),
}


@dataclass(frozen=True)
class SceneSpec:
    """Everything that decides how a builtin image looks, except its index."""

    canvas_size: int
    classes: tuple[str, ...]
    object_scale: tuple[float, float]
    seed: int
    objects: tuple[int, int] | None = None  # detection: the range of objects per image
    questions: int | None = None  # visual question answering: questions per image (needs objects)

    def __post_init__(self) -> None:
        unknown = [name for name in self.classes if name not in SHAPES]
        if not self.classes or unknown:
            raise UserError(
                f"prepare.builtin.classes has unknown or no classes ({', '.join(map(str, unknown)) or 'empty'}); "
                f"use some of {', '.join(SHAPES)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise UserError(f"prepare.builtin.classes lists a class twice ({', '.join(self.classes)}); list each once")
        low, high = self.object_scale
        if not 0.0 < low <= high <= 1.0:
            raise UserError(
                f"prepare.builtin.object_scale is {list(self.object_scale)}; use [lo, hi] with 0 < lo <= hi <= 1"
            )
        if self.objects is not None and not 1 <= self.objects[0] <= self.objects[1] <= MAX_OBJECTS:
            raise UserError(f"prepare.builtin.objects is {list(self.objects)}; use [lo, hi] with "
                            f"1 <= lo <= hi <= {MAX_OBJECTS}, or null for one object per image (classification)")
        if self.questions is not None and self.objects is None:
            raise UserError("prepare.builtin.questions needs scenes of several objects, but prepare.builtin.objects is "
                            "null; set prepare.builtin.objects (e.g. [1, 4]) or set questions to null")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SceneSpec":
        """Build from the ``prepare`` params section (uses ``seed`` and ``builtin``)."""
        section = require_param(params, "builtin")
        classes = require_param(section, "classes", "prepare.builtin")
        scale = require_param(section, "object_scale", "prepare.builtin")
        if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
            raise UserError(f"prepare.builtin.classes is {classes!r}; set it to a list of class names")
        if not isinstance(scale, list) or len(scale) != 2 or not all(isinstance(v, (int, float)) for v in scale):
            raise UserError(f"prepare.builtin.object_scale is {scale!r}; set it to [lo, hi], e.g. [0.3, 0.75]")
        objects = section.get("objects")
        if objects is not None and (not isinstance(objects, list) or len(objects) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in objects)):
            raise UserError(f"prepare.builtin.objects is {objects!r}; set it to [lo, hi], e.g. [1, 4], or null")
        return cls(
            canvas_size=require_int(section, "canvas_size", 16, "prepare.builtin"),
            classes=tuple(classes),
            object_scale=(float(scale[0]), float(scale[1])),
            seed=require_int(params, "seed", 0),
            objects=None if objects is None else (objects[0], objects[1]),
            questions=None if section.get("questions") is None else require_int(
                section, "questions", 1, "prepare.builtin"),
        )


def class_of(index: int, num_classes: int) -> int:
    """The class index that builtin image ``index`` shows."""
    return index % num_classes


@dataclass(frozen=True)
class SceneObject:
    """One visible object of a builtin scene."""

    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) around its visible pixels, in canvas pixels
    label: int  # class index
    colour: str | None  # its :data:`PALETTE` name in a question dataset, else None (a random colour)

    @property
    def area(self) -> float:
        """The visible box's area in canvas pixels: the object's size as the questions judge it."""
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


def render_image(spec: SceneSpec, index: int) -> np.ndarray:
    """Render builtin image ``index`` as a ``canvas_size`` square ``uint8`` RGB array."""
    return draw_scene(spec, index)[0].copy()


def render_scene(spec: SceneSpec, index: int) -> tuple[np.ndarray, tuple[tuple[tuple[float, ...], int], ...]]:
    """Builtin image ``index`` and its objects ``((x0, y0, x1, y1), class index)`` in canvas pixels (detection's)."""
    image, objects = draw_scene(spec, index)
    return image, _boxes(objects)


@functools.lru_cache(maxsize=2)  # prepare loads an image, then asks for its objects and questions
def draw_scene(spec: SceneSpec, index: int) -> tuple[np.ndarray, tuple[SceneObject, ...]]:
    """Builtin image ``index`` and its visible objects, in drawing order."""
    rng = np.random.default_rng([spec.seed, index])
    canvas = _background(rng, spec.canvas_size)
    if spec.objects is None:
        labels = [class_of(index, len(spec.classes))]
    else:
        count = rng.integers(spec.objects[0], spec.objects[1] + 1)
        labels = rng.integers(len(spec.classes), size=count).tolist()
    masks, colours = [], []  # colours: the objects' palette names, in a question dataset only
    for label in labels:
        canvas, mask = _draw_object(rng, spec, canvas, SHAPES[spec.classes[label]], colours)
        masks.append(mask)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    image.flags.writeable = False  # cached: shared by every caller
    visible = _visible_boxes(masks, list(range(len(labels))))  # labelled by drawing order, to find the colour
    return image, tuple(SceneObject(box, labels[order], colours[order] if colours else None) for box, order in visible)


def _draw_object(rng: np.random.Generator, spec: SceneSpec, canvas: np.ndarray, shape: list[tuple[np.ndarray, int]],
                 colour_names: list[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``canvas`` with one shape of random scale, position, rotation and colour drawn over it, and its coverage; in a
    question dataset the colour is a :data:`PALETTE` one, whose name is appended to ``colour_names``."""
    size = spec.canvas_size
    radius = rng.uniform(*spec.object_scale) * size / 2
    margin = min(0.8 * radius, size / 2)  # the object's bounding circle stays mostly inside
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    mask = _shape_mask(shape, size, cx, cy, radius, angle)[:, :, None]
    background = _mean_under(canvas, cx, cy, radius)
    if spec.questions is None:
        colour = _contrasting_colour(rng, background)
    else:
        name, colour = _palette_colour(rng, background)
        colour_names.append(name)
    fill = _shaded_fill(rng, colour, size, cx, cy, radius)
    return canvas * (1.0 - mask) + fill * mask, mask[:, :, 0]


def _visible_boxes(masks: list[np.ndarray], labels: list[int]) -> tuple[tuple[tuple[float, ...], int], ...]:
    """The box around each object's visible pixels (coverage ≥ ½ under the objects drawn after it), with its label;
    an object hidden entirely is left out."""
    objects = []
    covered = np.zeros_like(masks[0])  # coverage by the objects drawn later
    for mask, label in reversed(list(zip(masks, labels))):
        visible = mask * (1.0 - covered) >= 0.5
        covered = covered + mask * (1.0 - covered)
        if visible.any():
            rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
            objects.append(((float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)), label))
    return tuple(reversed(objects))


def generate_images(spec: SceneSpec, num_images: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(index, class_index, image_uint8)`` for builtin images ``0 .. num_images-1``."""
    for index in range(num_images):
        yield index, class_of(index, len(spec.classes)), render_image(spec, index)


@functools.cache
def _background_sources() -> tuple[tuple[Image.Image, bool], ...]:
    """The shipped photos (RGB) and textures (grayscale, flagged True), decoded once per process."""
    folder = Path(skimage.data.__file__).parent
    sources = []
    for names, mode in ((SHIPPED_PHOTOS, "RGB"), (SHIPPED_TEXTURES, "L")):
        for name in names:
            path = folder / name
            if not path.is_file():
                raise UserError(f"{path} is missing from the scikit-image install; reinstall scikit-image")
            with Image.open(path) as img:
                sources.append((img.convert(mode), mode == "L"))
    return tuple(sources)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (position and scale) of a shipped image, as float32 RGB."""
    sources = _background_sources()
    source, is_texture = sources[rng.integers(len(sources))]
    width, height = source.size
    shorter = min(width, height)
    smallest = min(shorter, max(size, 0.15 * shorter))
    side = math.exp(rng.uniform(math.log(smallest), math.log(shorter)))
    left = rng.uniform(0.0, width - side)
    top = rng.uniform(0.0, height - side)
    crop = source.resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=2.0
    )
    pixels = np.asarray(crop, dtype=np.float32)
    if is_texture:
        dark = rng.uniform(0.0, 110.0, size=3).astype(np.float32)
        light = rng.uniform(140.0, 255.0, size=3).astype(np.float32)
        pixels = dark + (light - dark) * (pixels[:, :, None] / 255.0)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return pixels


def _shape_mask(
    shape: list[tuple[np.ndarray, int]], size: int, cx: float, cy: float, radius: float, angle: float
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of ``shape`` scaled to ``radius``, rotated and centred at (cx, cy)."""
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    mask = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, fill in shape:
        points = (polygon @ rotation.T * radius + (cx, cy)) * _SUPERSAMPLE
        draw.polygon([tuple(point) for point in points], fill=fill)
    return np.asarray(mask.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0


def _mean_under(canvas: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Mean background colour in the object's bounding box."""
    size = canvas.shape[0]
    x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 1)
    y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 1)
    return canvas[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour far from ``background``: the first of 8 candidates that is far enough, else the farthest."""
    candidates = rng.integers(0, 256, size=(8, 3)).astype(np.float32)
    return candidates[_first_far_from(candidates, background)]


def _palette_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[str, np.ndarray]:
    """A :data:`PALETTE` colour far from ``background`` (each of those equally likely), else the farthest one."""
    names = [str(name) for name in rng.permutation(list(PALETTE))]
    candidates = np.array([PALETTE[name] for name in names], dtype=np.float32)
    index = _first_far_from(candidates, background)
    return names[index], candidates[index]


def _first_far_from(candidates: np.ndarray, background: np.ndarray) -> int:
    """The index of the first candidate colour at least ``_MIN_COLOUR_DISTANCE`` from ``background``, else of the
    farthest."""
    distance = np.linalg.norm(candidates - background, axis=1)
    far_enough = distance >= _MIN_COLOUR_DISTANCE
    return int(np.argmax(far_enough)) if far_enough.any() else int(np.argmax(distance))


@functools.cache
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys


def _shaded_fill(
    rng: np.random.Generator, colour: np.ndarray, size: int, cx: float, cy: float, radius: float
) -> np.ndarray:
    """The object's colour with a linear light gradient across it and a little pixel noise."""
    xs, ys = _pixel_centres(size)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    strength = rng.uniform(0.15, 0.35)
    along = ((xs - cx) * math.cos(direction) + (ys - cy) * math.sin(direction)) / radius
    gain = 1.0 + strength * np.clip(along, -1.0, 1.0)
    noise = rng.normal(0.0, 4.0, size=(size, size, 3)).astype(np.float32)
    return colour * gain[:, :, None] + noise


@register_dataset("builtin")
@dataclass(frozen=True)
class BuiltinDataset:
    """``prepare.dataset: builtin``: ``num_images`` generated images, labeled by shape or with their objects' boxes."""

    spec: SceneSpec
    num_images: int
    labeled: bool = False  # scenes of several objects: labeled by the largest visible one

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "BuiltinDataset":
        spec = SceneSpec.from_params(params)
        image_size = require_int(params, "image_size", 1)
        if image_size > spec.canvas_size:
            raise UserError(
                f"prepare.image_size ({image_size}) is larger than prepare.builtin.canvas_size "
                f"({spec.canvas_size}); raise canvas_size or lower image_size"
            )
        labeled = params["builtin"].get("labeled", False)
        if not isinstance(labeled, bool) or (labeled and spec.objects is None):
            raise UserError(f"prepare.builtin.labeled is {labeled!r}; set it to true (scenes of several objects, "
                            "prepare.builtin.objects, labeled by their largest object) or false")
        return cls(spec, require_int(params["builtin"], "num_images", 1, "prepare.builtin"), labeled)

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    def samples(self) -> Iterator[Sample]:
        if self.spec.objects is not None:
            for index in range(self.num_images):
                scene = draw_scene(self.spec, index)[1]  # its objects, once: the label, boxes and questions need them
                yield Sample(
                    image_id=f"{index:06d}",
                    label=max(scene, key=lambda item: item.area).label if self.labeled else UNLABELED,
                    source=f"builtin(seed={self.spec.seed}, index={index})",
                    load=functools.partial(render_image, self.spec, index),
                    objects=functools.partial(_boxes, scene),
                    questions=None if self.spec.questions is None else functools.partial(
                        generate_questions, self.spec, index, scene),
                )
            return
        for index in range(self.num_images):
            label = class_of(index, len(self.spec.classes))
            yield Sample(
                image_id=f"{index:06d}_{self.spec.classes[label]}",
                label=label,
                source=f"builtin(seed={self.spec.seed}, index={index})",
                load=functools.partial(render_image, self.spec, index),
            )


def _boxes(scene: tuple[SceneObject, ...]) -> tuple[tuple[tuple[float, ...], int], ...]:
    return tuple((item.box, item.label) for item in scene)
