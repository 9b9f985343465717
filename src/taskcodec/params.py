"""Load and validate ``params.yaml`` against ``workflow/schemas/params.schema.yaml``.

Validation runs before any job; a mistake is reported as one sentence naming the
key, what is wrong, and (for a mistyped key) the closest valid key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from taskcodec.errors import UserError


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None


def _key_path(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(known))
        parts = []
        for key in unexpected:
            full = f"{where}.{key}" if error.absolute_path else key
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(known)})"
            parts.append(f"'{full}'{hint}")
        return f"{source}: unknown key {', '.join(parts)}; fix or remove it"
    if error.validator == "required":
        return f"{source}: {where} is missing a required key: {error.message}; add it (see params.yaml in the repository)"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{source}: {where} = {error.instance!r} is not allowed; use one of {allowed}"
    if error.validator == "type":
        return f"{source}: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"{source}: {where} = {error.instance!r} is invalid: {error.message}"


def validate_params(params: Any, schema_path: str | Path, source: str = "params.yaml") -> None:
    """Raise :class:`UserError` describing the first problem of ``params`` against the schema."""
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(params))
    if errors:
        # a mistyped key explains the "required" error it causes, so report it first; then the deepest problem
        error = min(errors, key=lambda e: (e.validator != "additionalProperties", -len(e.absolute_path)))
        raise UserError(_describe(error, source))
    split = params["prepare"]["split"]
    if abs(sum(split.values()) - 1.0) > 1e-6:
        raise UserError(f"{source}: prepare.split fractions sum to {sum(split.values()):g}; make them sum to 1")
    scale = params["prepare"]["builtin"]["object_scale"]
    if scale[0] > scale[1]:
        raise UserError(f"{source}: prepare.builtin.object_scale {scale} must be [low, high] with low <= high")
    if params["prepare"]["dataset"] == "imagefolder" and not params["prepare"]["root"]:
        raise UserError(f"{source}: prepare.dataset is imagefolder but prepare.root is null; set it to your image folder")
    train, image_size = params["codec"]["train"], params["prepare"]["image_size"]
    if train["patch_size"] > image_size:
        raise UserError(f"{source}: codec.train.patch_size {train['patch_size']} is larger than prepare.image_size "
                        f"{image_size}; make it at most {image_size}")
    init = train["init"]
    if init is not None and init.startswith("zoo:") and not re.fullmatch(r"zoo:[A-Za-z0-9_-]+:[1-8]", init):
        raise UserError(f"{source}: codec.train.init '{init}' is not of the form zoo:<arch>:<quality 1-8>")
    evaluate = params["evaluate"]
    if evaluate["report"]["grid_image"] >= evaluate["save_reconstructions"]:
        raise UserError(f"{source}: evaluate.report.grid_image {evaluate['report']['grid_image']} needs a saved "
                        f"reconstruction; raise evaluate.save_reconstructions above it")
    datasets = {"test", *evaluate["extra_datasets"]}
    for name in evaluate["report"]["references"]:
        if name not in datasets:
            raise UserError(f"{source}: evaluate.report.references.{name} names no evaluated dataset "
                            f"({', '.join(sorted(datasets))})")
