"""The codec points the sweeps of ``params.yaml`` define and the path templates that name them: one place for the
workflow (``workflow/rules/common.smk``, which formats its rules' inputs and outputs with them) and for a benchmark
that asks the workflow for some of its targets (``bench/demo_patches.py``).

A point is a dict of the templates' wildcards: the codec's ``arch``, its hyperparameters folder ``hyper``
(:func:`taskcodec.params.codec_dirname` of its sweep entry, e.g. ``N32-M48``) and its λ, τ or λ_task at full
precision (:func:`taskcodec.params.number_id`).
"""

from __future__ import annotations

from taskcodec.params import codec_dirname, number_id

CODEC = "{arch}/{hyper}/lmbda{lmbda}"  # a pretrained codec of codec.sweep
TUNED = "{task}/{arch}/{hyper}/lmbda{lmbda}/tau{tau}"  # a codec fine-tuned through a task model
SCALABLE = "{arch}/{hyper}/lmbda{lmbda}/task{task_lmbda}"  # a scalable codec (seed 002) of scalable.sweep
VARIABLE = "{arch}/{hyper}"  # a variable-rate codec (seed 001) of variable_rate.sweep: one model for all its lambdas
VARIABLE_POINT = "{arch}/{hyper}/point{point}"  # one of its operating points (0: its lowest rate)


def codec_points(params: dict) -> list[dict[str, str]]:
    """Every (arch, hyper, lmbda) of codec.sweep."""
    sweep = params["codec"]["sweep"]
    return [{"arch": model["arch"], "hyper": codec_dirname(model), "lmbda": number_id(lmbda)}
            for model in sweep["models"] for lmbda in sweep["lmbdas"]]


def finetune_points(params: dict, tasks: list[str] | None = None) -> list[dict[str, str]]:
    """Every (task, arch, hyper, lmbda, tau) of the fine-tuning sweep: the selected pretrained codecs times the taus,
    for each task of ``tasks`` (default: finetune.tasks)."""
    sweep = params["finetune"]["sweep"]
    selected = [float(lmbda) for lmbda in sweep["lmbdas"]]
    return [{**point, "task": task, "tau": number_id(tau)}
            for task in (params["finetune"]["tasks"] if tasks is None else tasks)
            for point in codec_points(params) if float(point["lmbda"]) in selected
            for tau in sweep["taus"]]


def scalable_points(params: dict) -> list[dict[str, str]]:
    """Every (arch, hyper, lmbda, task_lmbda) of scalable.sweep (none unless scalable.enabled)."""
    scalable = params["scalable"]
    if not scalable["enabled"]:
        return []
    sweep = scalable["sweep"]
    return [{"arch": model["arch"], "hyper": codec_dirname(model), "lmbda": number_id(lmbda),
             "task_lmbda": number_id(task_lmbda)}
            for model in sweep["models"] for lmbda in sweep["lmbdas"] for task_lmbda in sweep["task_lmbdas"]]


def variable_rate_points(params: dict) -> list[dict[str, str]]:
    """Every (arch, hyper, point) of variable_rate.sweep (none unless variable_rate.enabled): one per model and
    operating point."""
    variable_rate = params["variable_rate"]
    if not variable_rate["enabled"]:
        return []
    sweep = variable_rate["sweep"]
    return [{"arch": model["arch"], "hyper": codec_dirname(model), "point": str(point)}
            for model in sweep["models"] for point in range(len(sweep["lmbdas"]))]
