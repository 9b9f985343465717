"""Load and validate ``params.yaml`` against ``workflow/schemas/params.schema.yaml``.

Validation runs before any job (:func:`validate_params`, called by the Snakefile) and again in every
stage run by hand (:func:`check_section` on the section the stage was given). A mistake is reported as
one sentence naming the key, what is wrong, and (for a mistyped key) the closest valid key.

Besides the schema, the checks here look at what a schema cannot hold: cross-section rules
(``finetune.sweep.lmbdas`` ⊆ ``codec.sweep.lmbdas``, patch size ≤ image size), and the plug-in
registries: a sweep entry's ``arch`` must be a registered codec and its other keys constructor
parameters of that codec; every key of ``tasks`` must be a registered task, and ``finetune.tasks`` and
``scalable.task`` keys of ``tasks``.

:func:`codec_dirname` and :func:`number_id` say how a sweep entry and a λ or τ appear in paths and
wildcards (``bmshj2018-hyperprior/N32-M48``, ``lmbda0.0035``).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
import yaml

from taskcodec.errors import UserError

#: The schema in the project folder (src/taskcodec/params.py -> workflow/schemas/).
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None


# ---------------------------------------------------------------------------------------------- paths


def number_id(value: float) -> str:
    """A λ or τ as it appears in paths and wildcards: full precision (``repr``), so no two values share a path."""
    return repr(float(value))


def hyperparameters(entry: dict[str, Any]) -> dict[str, int]:
    """The hyperparameters of a ``codec.sweep.models`` entry (every key but ``arch``), in the entry's order."""
    return {key: value for key, value in entry.items() if key != "arch"}


def codec_dirname(entry: dict[str, Any]) -> str:
    """The folder of a sweep entry's hyperparameters: ``N32-M48`` for ``{arch: ..., N: 32, M: 48}`` (as
    :func:`taskcodec.codecs.registry.hyper_label`, without importing the codecs)."""
    return "-".join(f"{key}{value}" for key, value in hyperparameters(entry).items())


def codec_id(entry: dict[str, Any]) -> str:
    """A sweep entry's name in tables and evaluation folders: ``bmshj2018-hyperprior/N32-M48`` (``<arch>/``
    then :func:`codec_dirname`, as a checkpoint names its codec)."""
    return f"{entry['arch']}/{codec_dirname(entry)}"


# ---------------------------------------------------------------------------------------------- messages


def _describe(error: jsonschema.ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    parts = [*prefix, *(str(part) for part in error.absolute_path)]
    where = ".".join(parts) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(known))
        described = []
        for key in unexpected:
            full = f"{where}.{key}" if parts else key
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(known)})"
            described.append(f"'{full}'{hint}")
        return f"{source}: unknown key {', '.join(described)}; fix or remove it"
    if error.validator == "required":
        return f"{source}: {where} is missing a required key: {error.message}; add it (see params.yaml in the repository)"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{source}: {where} = {error.instance!r} is not allowed; use one of {allowed}"
    if "propertyNames" in error.schema_path:
        return f"{source}: {where} has the key {error.instance!r}, which is not a name (letters, digits, _); rename it"
    if error.validator == "type":
        return f"{source}: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"{source}: {where} = {error.instance!r} is invalid: {error.message}"


def _unknown_name(key: str, value: str, kind: str, known: Iterable[str], source: str) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(value, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"{source}: {key} = {value!r} is not a registered {kind}{hint}; known: {', '.join(known)}")


# ---------------------------------------------------------------------------------------------- registries


#: the sweep each kind of codec belongs in, and what makes it that kind
SWEEP_KINDS = {"codec.sweep": "trained alone at one rate", "scalable.sweep": "built on the frozen task model",
               "variable_rate.sweep": "a variable-rate codec"}


def _codec_sweep_of(arch: str) -> str:
    """The sweep an architecture is listed in: scalable.sweep for one built on the frozen task model (seed 002),
    variable_rate.sweep for one model of several rates (seed 001: its class declares ``variable_rate``; the
    number of variable_rate.sweep.lmbdas sets its ``levels``), codec.sweep for the others."""
    from taskcodec.codecs.registry import is_variable_rate, needs_task_model  # imports CompressAI

    if needs_task_model(arch):
        return "scalable.sweep"
    return "variable_rate.sweep" if is_variable_rate(arch) else "codec.sweep"


def _check_codec_sweep(sweep: dict[str, Any], source: str, name: str) -> None:
    """Every entry is a registered codec of this sweep's kind (:func:`_codec_sweep_of`) with its hyperparameters."""
    from taskcodec.codecs.registry import CODECS, codec_hyperparameters  # imports CompressAI

    seen: dict[str, int] = {}
    for index, entry in enumerate(sweep["models"]):
        key = f"{name}.models.{index}"
        arch = entry["arch"]
        if arch not in CODECS:
            raise _unknown_name(f"{key}.arch", arch, "codec architecture", CODECS, source)
        belongs = _codec_sweep_of(arch)
        if belongs != name:
            raise UserError(f"{source}: {key}.arch {arch} is {SWEEP_KINDS[belongs]}; list it in {belongs}.models")
        required, optional = codec_hyperparameters(arch)
        if name == "variable_rate.sweep":
            if "levels" in entry:
                raise UserError(f"{source}: {key}.levels: the number of variable_rate.sweep.lmbdas sets a "
                                "variable-rate codec's levels; remove it")
            required, optional = [h for h in required if h != "levels"], [h for h in optional if h != "levels"]
            if list(sweep["lmbdas"]) != sorted(sweep["lmbdas"]):
                raise UserError(f"{source}: {name}.lmbdas must ascend (one per operating point, the lowest rate "
                                f"first), not {sweep['lmbdas']}; sort them")
        accepted = ", ".join(required + optional) or "none"
        for hyper in hyperparameters(entry):
            if hyper not in required and hyper not in optional:
                raise UserError(f"{source}: {key}.{hyper}: {arch} takes no hyperparameter '{hyper}' "
                                f"(its hyperparameters: {accepted}); remove it")
        for hyper in required:
            if hyper not in entry:
                raise UserError(f"{source}: {key} ({arch}) is missing the hyperparameter '{hyper}' "
                                f"(its hyperparameters: {accepted}); add it")
        if not hyperparameters(entry):
            raise UserError(f"{source}: {key} ({arch}) gives no hyperparameter; give at least one (its "
                            f"hyperparameters: {accepted}): they name the codec's folder")
        ident = f"{arch}/{'-'.join(f'{k}{v}' for k, v in sorted(hyperparameters(entry).items()))}"
        if ident in seen:
            raise UserError(f"{source}: {key} repeats {name}.models.{seen[ident]} ({codec_id(entry)}); "
                            f"remove one of them")
        seen[ident] = index


def _check_tasks(tasks: dict[str, Any], source: str, name: str) -> None:
    from taskcodec.plugins import load_plugins
    from taskcodec.tasks.registry import TASKS

    load_plugins()
    for task, section in tasks.items():
        if task not in TASKS:
            raise _unknown_name(f"{name}.{task}", task, "task", TASKS, source)
        check_value(TASKS[task].model_schema, section["model"], f"{name}.{task}.model", source)


# ---------------------------------------------------------------------------------------------- section checks


def _check_prepare(prepare: dict[str, Any], source: str, name: str) -> None:
    split = prepare["split"]
    if abs(sum(split.values()) - 1.0) > 1e-6:
        raise UserError(f"{source}: {name}.split fractions sum to {sum(split.values()):g}; make them sum to 1")
    scale = prepare["builtin"]["object_scale"]
    if scale[0] > scale[1]:
        raise UserError(f"{source}: {name}.builtin.object_scale {scale} must be [low, high] with low <= high")
    if prepare["dataset"] == "imagefolder" and not prepare["root"]:
        raise UserError(f"{source}: {name}.dataset is imagefolder but {name}.root is null; set it to your image folder")


#: ``codec.train.init`` values that train the sweep's λ as a chain → the neighbouring λ each starts from (the
#: trained codec of the same model there): ``neighbour`` the next larger λ (from the largest down, as CompressAI's
#: zoo was trained), ``smaller_neighbour`` the next smaller λ (from the smallest up: the largest λ, the curve's
#: top, is the most trained)
CHAINS = {"neighbour": "larger", "smaller_neighbour": "smaller"}


def chained_from(init: str | None, lmbda: float, lmbdas: list[float]) -> float | None:
    """The λ of ``lmbdas`` whose trained codec the codec of ``lmbda`` starts from under ``init`` (:data:`CHAINS`);
    None for the chain's first λ, which starts from scratch, and for an ``init`` that is no chain."""
    if CHAINS.get(init) == "larger":
        return min((other for other in lmbdas if other > lmbda), default=None)
    if CHAINS.get(init) == "smaller":
        return max((other for other in lmbdas if other < lmbda), default=None)
    return None


def _check_codec_train(train: dict[str, Any], source: str, name: str) -> None:
    init = train["init"]
    if init in CHAINS and name != "codec.train":
        raise UserError(f"{source}: {name}.init '{init}' chains the λ of codec.sweep only; give {name}.init a "
                        "checkpoint path, a zoo name or null")
    if init is not None and init.startswith("zoo:") and not re.fullmatch(r"zoo:[A-Za-z0-9_-]+:[1-8]", init):
        raise UserError(f"{source}: {name}.init '{init}' is not of the form zoo:<arch>:<quality 1-8>")


def _check_evaluate(evaluate: dict[str, Any], source: str, name: str) -> None:
    if evaluate["report"]["grid_image"] >= evaluate["save_reconstructions"]:
        raise UserError(f"{source}: {name}.report.grid_image {evaluate['report']['grid_image']} needs a saved "
                        f"reconstruction; raise {name}.save_reconstructions above it")
    datasets = {"test", *evaluate["extra_datasets"]}
    for dataset in evaluate["report"]["references"]:
        if dataset not in datasets:
            raise UserError(f"{source}: {name}.report.references.{dataset} names no evaluated dataset "
                            f"({', '.join(sorted(datasets))})")


#: Checks of one section beyond its schema, by dotted section name (run by both entry points).
SECTION_CHECKS: dict[str, Callable[[dict[str, Any], str, str], None]] = {
    "prepare": _check_prepare,
    "codec.sweep": _check_codec_sweep,
    "codec.train": _check_codec_train,
    "scalable.sweep": _check_codec_sweep,
    "scalable.train": _check_codec_train,
    "variable_rate.sweep": _check_codec_sweep,
    "variable_rate.train": _check_codec_train,
    "tasks": _check_tasks,
    "evaluate": _check_evaluate,
}


def _check_question_margin(params: dict[str, Any], source: str) -> None:
    """The random translations of the VQA trainings must not carry an object across the middle of the image, which
    would make a generated question about its side false (:data:`taskcodec.data.questions.MARGIN`)."""
    from taskcodec.data.questions import MARGIN

    prepare = params["prepare"]
    if "vqa" not in params["tasks"] or prepare["dataset"] != "builtin" or not prepare["builtin"].get("questions"):
        return
    margin = MARGIN * prepare["image_size"]
    trainings = {"tasks.vqa": params["tasks"]["vqa"]} | (
        {"finetune": params["finetune"]} if "vqa" in params["finetune"]["tasks"] else {})
    for section, values in trainings.items():
        padding = values["train"]["crop_padding"]
        if padding >= margin:
            raise UserError(f"{source}: {section}.train.crop_padding {padding} can move an object across the middle of "
                            f"the {prepare['image_size']}-pixel images, whose questions about sides keep {margin:g} px "
                            f"away from it; make it at most {math.ceil(margin) - 1}")


def _check_own_sizes(params: dict[str, Any], source: str) -> None:
    """A train split that keeps its images' own sizes (``prepare.keep_train_size``) is for codec pretraining only:
    every other use of it needs images of one size."""
    if not params["prepare"].get("keep_train_size", False):
        return
    uses = {"tasks": bool(params["tasks"]), "variable_rate.enabled": params["variable_rate"]["enabled"],
            "cache.splits": "train" in params["cache"]["splits"],
            "codec.train.saliency_floor": params["codec"]["train"]["saliency_floor"] is not None}
    for key, used in uses.items():
        if used:
            fix = {"cache.splits": "leave train out of it", "tasks": "set it to {}"}.get(
                key, "set it to " + ("null" if key.endswith("floor") else "false"))
            raise UserError(f"{source}: prepare.keep_train_size is true, so the training images keep their own "
                            f"sizes, which only codec pretraining takes, but {key} needs them at one size: {fix}, "
                            "or set prepare.keep_train_size: false")


def _check_across_sections(params: dict[str, Any], source: str) -> None:
    from taskcodec.tasks.registry import TASKS

    train, image_size = params["codec"]["train"], params["prepare"]["image_size"]
    if train["patch_size"] > image_size:
        raise UserError(f"{source}: codec.train.patch_size {train['patch_size']} is larger than prepare.image_size "
                        f"{image_size}; make it at most {image_size}")
    scalable, tasks = params["scalable"], params["tasks"]
    named = [("scalable.task", scalable["task"])] if scalable["enabled"] else []
    if params["finetune"]["sweep"]["lmbdas"]:
        named += [("finetune.tasks", task) for task in params["finetune"]["tasks"]]
    for key, task in named:
        if tasks and task not in tasks:
            close = difflib.get_close_matches(task, list(tasks), n=1)
            raise UserError(f"{source}: {key} names {task!r}, which is not among tasks"
                            f"{f' (did you mean {close[0]!r}?)' if close else ''}; name one of "
                            f"{', '.join(tasks)} or add its section to tasks")
    if scalable["enabled"] and not tasks:
        raise UserError(f"{source}: scalable.enabled is true but tasks is empty; the scalable codec's base layer is "
                        "built on a task model: add one to tasks or set scalable.enabled: false")
    if scalable["enabled"] and not TASKS[scalable["task"]].splits:  # a known name (_check_tasks)
        raise UserError(f"{source}: scalable.enabled is true but the {scalable['task']} task's model does not split "
                        "into features and the rest, which the scalable codec's base layer needs; name another "
                        "task in scalable.task or set scalable.enabled: false")
    if scalable["enabled"] and scalable["train"]["patch_size"] > image_size:
        raise UserError(f"{source}: scalable.train.patch_size {scalable['train']['patch_size']} is larger than "
                        f"prepare.image_size {image_size}; make it at most {image_size}")
    _check_question_margin(params, source)
    _check_own_sizes(params, source)
    variable_rate = params["variable_rate"]
    if variable_rate["enabled"] and variable_rate["train"]["patch_size"] > image_size:
        raise UserError(f"{source}: variable_rate.train.patch_size {variable_rate['train']['patch_size']} is larger "
                        f"than prepare.image_size {image_size}; make it at most {image_size}")
    pretrained = [float(value) for value in params["codec"]["sweep"]["lmbdas"]]
    for value in params["finetune"]["sweep"]["lmbdas"]:
        if float(value) not in pretrained:
            raise UserError(f"{source}: finetune.sweep.lmbdas has {value!r}, which is not in codec.sweep.lmbdas "
                            f"({', '.join(repr(v) for v in params['codec']['sweep']['lmbdas'])}); fine-tuning starts "
                            f"from a pretrained codec of the sweep, so use one of those or add {value!r} there")


# ---------------------------------------------------------------------------------------------- entry points


def _subschema(schema: dict[str, Any], dotted_name: str) -> dict[str, Any]:
    """The schema node of a dotted section name, with ``$ref`` resolved and the root's ``$defs`` kept."""
    node = schema
    for part in dotted_name.split(".") if dotted_name else []:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):  # a section of free keys: tasks.<task>
            node = node["additionalProperties"]
        else:
            raise ValueError(f"params.schema.yaml has no section '{dotted_name}'")
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return {**node, "$defs": schema.get("$defs", {})}


def _first_error(schema: dict[str, Any], value: Any) -> jsonschema.ValidationError | None:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if not errors:
        return None
    # a mistyped key explains the "required" error it causes, so report it first; then the deepest problem
    return min(errors, key=lambda e: (e.validator != "additionalProperties", -len(e.absolute_path)))


def _run_section_checks(dotted_name: str, section: Any, source: str, partial: bool = False) -> None:
    """The :data:`SECTION_CHECKS` of ``dotted_name`` and of the sections inside it (of a ``partial`` section: those
    whose keys it holds)."""
    for name, check in SECTION_CHECKS.items():
        if dotted_name and name != dotted_name and not name.startswith(dotted_name + "."):
            continue
        inner = name[len(dotted_name) + 1:] if dotted_name else name
        try:
            value = section
            for part in inner.split(".") if inner else []:
                value = value[part]
            check(value, source, name)
        except KeyError:
            if not partial:
                raise


def check_value(schema: dict[str, Any], value: Any, dotted_name: str, source: str) -> None:
    """Validate ``value`` (found at ``dotted_name``) against a schema of its own, e.g. a task's ``model_schema``,
    with the messages of :func:`validate_params`."""
    error = _first_error(schema, value)
    if error is not None:
        raise UserError(_describe(error, source, tuple(dotted_name.split("."))))


def check_section(dotted_name: str, section: Any, source: str = "--params", *, keys: Iterable[str] | None = None,
                  omit: Iterable[str] = (), schema_path: str | Path = SCHEMA) -> None:
    """Validate one section of params.yaml (e.g. ``"codec.train"``), as a stage receives it, against its part of
    the schema, with the messages of :func:`validate_params` (keys named by their full dotted path).

    ``keys``: the keys of the section the caller takes, when it takes only some of them (e.g. evaluate_codec
    takes ``save_reconstructions`` and ``saliency_threshold`` of ``evaluate``); others are then unknown and these
    are required. ``omit``: the same, given as the keys the caller leaves out (cache_latents: ``splits``). The
    checks beyond the schema run on the keys given (e.g. the keys of ``tasks`` against the task registry).
    """
    schema = _subschema(load_yaml(schema_path), dotted_name)
    omit = set(omit)
    whole = keys is None and not omit
    if not whole:
        taken = [key for key in (schema["properties"] if keys is None else keys) if key not in omit]
        schema["required"] = taken if keys is not None else [key for key in schema["required"] if key not in omit]
        schema["properties"] = {key: schema["properties"][key] for key in taken}
    error = _first_error(schema, section)
    if error is not None:
        raise UserError(_describe(error, source, tuple(dotted_name.split("."))))
    _run_section_checks(dotted_name, section, source, partial=not whole)


def validate_params(params: Any, schema_path: str | Path = SCHEMA, source: str = "params.yaml") -> None:
    """Raise :class:`UserError` describing the first problem of ``params`` against the schema and the registries."""
    error = _first_error(load_yaml(schema_path), params)
    if error is not None:
        raise UserError(_describe(error, source))
    _run_section_checks("", params, source)
    _check_across_sections(params, source)
