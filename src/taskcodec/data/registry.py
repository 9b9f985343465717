"""Name → dataset class registry for ``prepare.dataset``.

A dataset module registers its class with ``@register_dataset("name")``;
:func:`build_dataset` looks the name up and calls the class's
``from_params(prepare_params)``. Every dataset exposes ``classes`` (empty
when unlabeled) and ``samples()``, an iterator of :class:`Sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, TypeVar

import numpy as np

from taskcodec.errors import UserError

UNLABELED = -1


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, described but not yet loaded."""

    image_id: str  # unique within the dataset and safe as a file name
    label: int  # class index, or UNLABELED
    source: str  # where the image comes from, for the manifest and messages
    load: Callable[[], np.ndarray]  # returns the raw HxWx3 uint8 RGB image
    #: the image file ``load`` reads (None for a generated image); ``prepare.storage: in_place`` indexes it there
    file: Path | None = None
    #: a detection dataset's objects (called after ``load``): ``((x0, y0, x1, y1), class index)`` each, in
    #: pixels of the raw image (edges: a box around one pixel is 1 wide); None for a dataset without boxes
    objects: Callable[[], tuple[tuple[tuple[float, ...], int], ...]] | None = None
    #: a visual-question-answering dataset's questions about the image (called after ``load``): dicts
    #: ``{"question", "answers", "type", "family"}`` (:data:`taskcodec.data.manifest.QUESTIONS_COLUMN`), [] for an
    #: image without any; None for a dataset without questions
    questions: Callable[[], list[dict[str, Any]]] | None = None


class Dataset(Protocol):
    """What ``prepare`` needs from a dataset."""

    classes: list[str]

    def samples(self) -> Iterator[Sample]: ...


class DatasetClass(Protocol):
    """A registered dataset class: built from the ``prepare`` params section."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Dataset: ...


_DATASETS: dict[str, DatasetClass] = {}

_T = TypeVar("_T", bound=DatasetClass)


def register_dataset(name: str) -> Callable[[_T], _T]:
    """Class decorator: make the class available as ``prepare.dataset: <name>``."""

    def register(cls: _T) -> _T:
        if name in _DATASETS:
            raise ValueError(f"dataset name {name!r} is registered twice")
        _DATASETS[name] = cls
        return cls

    return register


def require_param(params: Mapping[str, Any], key: str, section: str = "prepare") -> Any:
    """``params[key]``, or a UserError naming ``<section>.<key>`` when it is missing."""
    if not isinstance(params, Mapping) or key not in params:
        raise UserError(f"{section}.{key} is missing from the params; add it (see params.yaml)")
    return params[key]


def require_int(params: Mapping[str, Any], key: str, minimum: int, section: str = "prepare") -> int:
    """``params[key]`` checked to be an integer of at least ``minimum``."""
    value = require_param(params, key, section)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{section}.{key} is {value!r}; set it to an integer >= {minimum}")
    return value


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


def build_dataset(params: Mapping[str, Any]) -> Dataset:
    """Build the dataset named by ``params["dataset"]`` from the ``prepare`` params."""
    name = require_param(params, "dataset")
    if name not in _DATASETS:
        raise UserError(
            f"prepare.dataset is {name!r}, which is not a known dataset; use one of {', '.join(dataset_names())}"
        )
    return _DATASETS[name].from_params(params)
