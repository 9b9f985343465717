# Helpers shared by the rule files: params validation, sweep expansion, paths.
# No rules here.

import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from taskcodec.data.imagefolder import folder_images
from taskcodec.errors import UserError
from taskcodec.params import validate_params
from taskcodec.tracking import end_pipeline_run, start_pipeline_run

try:
    validate_params(config, Path(workflow.current_basedir).parent / "schemas" / "params.schema.yaml")
except UserError as err:
    raise WorkflowError(str(err)) from None

# Stage commands run with the interpreter Snakemake runs under (the project's .venv).
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; ")

RESULTS = config["results_dir"]
SPLITS = ("train", "val", "test")
EXTRA_DATASETS = config["evaluate"]["extra_datasets"]
CLASSICAL_CODECS = list(config["evaluate"]["classical"])
CODEC = "{arch}/N{N}-M{M}/lmbda{lmbda}"  # a codec of the sweep, as a path
TUNED = CODEC + "/tau{tau}"  # a task-fine-tuned codec
TASK_MODEL = RESULTS + "/task/model.pt"
MACHINE = config["task"]["enabled"]  # the machine branch (needs a labeled dataset)
MACHINE_REPORT = RESULTS + "/report/machine/test"

for name, folder in EXTRA_DATASETS.items():
    if not Path(folder).is_dir():
        raise WorkflowError(f"params.yaml: evaluate.extra_datasets.{name} = {folder} is not a folder; fix the path or remove the entry")
if config["prepare"]["dataset"] == "imagefolder" and not Path(config["prepare"]["root"]).is_dir():
    raise WorkflowError(f"params.yaml: prepare.root = {config['prepare']['root']} is not a folder; point it at your images")

wildcard_constraints:
    arch="[A-Za-z0-9_-]+",
    N=r"\d+",
    M=r"\d+",
    lmbda=r"[0-9.eE+-]+",
    tau=r"[0-9.eE+-]+",
    dataset="[A-Za-z0-9_-]+",
    codec="[A-Za-z0-9_-]+",


def as_json(section):
    """A params section as a JSON string for a stage's --params."""
    return json.dumps(section, sort_keys=True)


def codec_points():
    """Every (arch, N, M, lmbda) of the sweep, as wildcard dicts."""
    sweep = config["codec"]["sweep"]
    return [
        {"arch": model["arch"], "N": model["N"], "M": model["M"], "lmbda": format(lmbda, "g")}
        for model in sweep["models"]
        for lmbda in sweep["lmbdas"]
    ]


def per_codec(template, **fields):
    """``template`` formatted for every codec of the sweep (with extra ``fields``)."""
    return [template.format(**point, **fields) for point in codec_points()]


def finetune_points():
    """Every (arch, N, M, lmbda, tau) of the fine-tuning sweep: the selected pretrained codecs times the taus."""
    sweep = config["finetune"]["sweep"]
    return [
        {**point, "tau": format(tau, "g")}
        for point in codec_points()
        if float(point["lmbda"]) in sweep["lmbdas"]
        for tau in sweep["taus"]
    ]


def task_measure_inputs(wildcards):
    """Task model, its cached features and the saliency maps for evaluating a prepared split (extra folders
    have no labels)."""
    if wildcards.dataset not in SPLITS:
        return {}
    machine = {"task_model": TASK_MODEL, "features": RESULTS + "/task/features"} if MACHINE else {}
    return {**machine, "saliency": RESULTS + "/saliency"}


def task_measure_args(wildcards):
    """The stage arguments matching :func:`task_measure_inputs`."""
    return " ".join(f"--{name.replace('_', '-')} {shlex.quote(path)}" for name, path in task_measure_inputs(wildcards).items())


def eval_datasets():
    return ["test"] + list(EXTRA_DATASETS)


def dataset_inputs(wildcards):
    """Inputs that define a dataset's images: the prepared data, or an extra folder's files."""
    if wildcards.dataset in SPLITS:
        return {"prepared": RESULTS + "/prepared"}
    return {"images": folder_files(EXTRA_DATASETS[wildcards.dataset])}


def folder_files(folder):
    """The image files of a dataset folder, as the stages list them (so other files never trigger reruns)."""
    try:
        return [str(path) for path in folder_images(folder)]
    except UserError as err:
        raise WorkflowError(str(err)) from None


def saliency_input(floor):
    """The saliency maps as a named input of a training rule whose ``saliency_floor`` is set (else none)."""
    return {} if floor is None else {"saliency": RESULTS + "/saliency"}


def saliency_args(floor):
    """The ``--saliency`` argument matching :func:`saliency_input`."""
    return "" if floor is None else f"--saliency {shlex.quote(RESULTS + '/saliency')}"


def dataset_args(wildcards):
    """The stage arguments selecting a dataset's images."""
    if wildcards.dataset in SPLITS:
        return f"--manifest {shlex.quote(RESULTS + '/prepared/manifest.csv')} --split {wildcards.dataset}"
    return f"--folder {shlex.quote(EXTRA_DATASETS[wildcards.dataset])}"


def cache_outputs():
    return [path for split in config["cache"]["splits"] for path in per_codec(RESULTS + "/cache/" + CODEC + "/{split}", split=split)]


def versioned_outputs():
    """Checkpoints and data that DVC versions (dvc.yaml outs) and whose inputs it versions too; the target
    of ``snakemake --touch versioned`` after a DVC restore (scripts/dvc_restore.sh)."""
    outputs = [RESULTS + "/saliency"] + per_codec(RESULTS + "/codecs/" + CODEC + "/model.pt")
    if MACHINE:
        outputs += [TASK_MODEL] + [RESULTS + "/finetuned/" + TUNED.format(**point) + "/model.pt"
                                   for point in finetune_points()]
    return outputs


def report_outputs():
    return expand(RESULTS + "/report/{dataset}", dataset=eval_datasets())


def skipped_classical_codecs():
    """(codec, dataset, reason) of classical evaluations that were skipped because a tool is missing
    (among those that exist: a run of some targets only, or with --touch, has not made them all)."""
    skipped = []
    for codec in CLASSICAL_CODECS:
        for dataset in eval_datasets():
            path = Path(RESULTS, "eval", "classical", codec, dataset, "summary.json")
            summary = json.loads(path.read_text()) if path.is_file() else {"status": "missing"}
            if summary["status"] == "skipped":
                skipped.append((codec, dataset, summary["reason"]))
    return skipped
