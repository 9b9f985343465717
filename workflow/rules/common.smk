# Helpers shared by the rule files (params validation, sweep expansion, paths, run settings).
# No rules here: `snakemake --lint` wants rules and functions in separate files.

import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from taskcodec import dvc_record, run_lock
from taskcodec.data.imagefolder import folder_images
from taskcodec.errors import UserError
from taskcodec.params import chained_from, codec_dirname, hyperparameters, number_id, validate_params
from taskcodec.sweeps import (CODEC, SCALABLE, TUNED, VARIABLE, VARIABLE_POINT, codec_points, finetune_points,
                             scalable_points, variable_rate_points)
from taskcodec.tracking import end_pipeline_run, start_pipeline_run

# Validated once, by the process that plans the jobs; a cluster job re-reads the Snakefile but must not pay the
# ~7 s of importing the codec registry again.
if workflow.is_main_process:
    try:
        validate_params(config, Path(workflow.current_basedir).parent / "schemas" / "params.schema.yaml")
    except UserError as err:
        raise WorkflowError(str(err)) from None

# The software of every rule: environment.yml (path relative to this folder). Without
# `--software-deployment-method conda` the stage commands run with the interpreter Snakemake runs under (the
# project's .venv); with it, in the rules' conda environment, importing taskcodec from this checkout's src/.
# PYTHONFAULTHANDLER: a crash inside a C extension leaves the Python stack in the rule's log, not an empty log.
CONDA_ENV = "../../environment.yml"
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    SRC = shlex.quote(str(Path(workflow.basedir, "src").resolve()))
    shell.prefix(f"set -euo pipefail; export PYTHONFAULTHANDLER=1 PYTHONPATH={SRC}; ")
else:
    shell.prefix(f"set -euo pipefail; export PYTHONFAULTHANDLER=1 PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; ")

RESULTS = config["results_dir"]
# One run per results folder (taskcodec.run_lock): while one runs, a second one stops here with one sentence.
if workflow.is_main_process:
    try:
        run_lock.check_free(RESULTS)
    except UserError as err:
        raise WorkflowError(str(err)) from None
SPLITS = ("train", "val", "test")
EXTRA_DATASETS = config["evaluate"]["extra_datasets"]
CLASSICAL_CODECS = list(config["evaluate"]["classical"])
TASKS = list(config["tasks"])  # the machine branch: one frozen model per task (none: human branch only)
MACHINE = bool(TASKS)

for name, folder in EXTRA_DATASETS.items():
    if not Path(folder).is_dir():
        raise WorkflowError(f"params.yaml: evaluate.extra_datasets.{name} = {folder} is not a folder; fix the path or remove the entry")
if config["prepare"]["dataset"] == "imagefolder" and not Path(config["prepare"]["root"]).is_dir():
    raise WorkflowError(f"params.yaml: prepare.root = {config['prepare']['root']} is not a folder; point it at your images")

wildcard_constraints:
    arch="[A-Za-z0-9_-]+",
    hyper="[A-Za-z0-9_-]+",
    lmbda=r"[0-9.eE+-]+",
    tau=r"[0-9.eE+-]+",
    task_lmbda=r"[0-9.eE+-]+",
    task="[A-Za-z0-9_-]+",
    point="[0-9]+",
    dataset="[A-Za-z0-9_-]+",
    codec="[A-Za-z0-9_-]+",


def results(*parts):
    """A path under ``results_dir``: the parts joined with '/', wildcards kept."""
    return "/".join((RESULTS, *parts))


SSL_MODEL = results("simclr", "model.pt")


def task_model(task):
    """The frozen model of ``task`` (a key of ``tasks``)."""
    return results("task", task, "model.pt")


def task_features(task):
    """The cached feature maps of ``task``'s model for every prepared image."""
    return results("task", task, "features")


def machine_report(task):
    """The rate–accuracy report of ``task`` on the test split."""
    return results("report", "machine", task)


def as_json(section):
    """A params section as a JSON string for a stage's --params."""
    return json.dumps(section, sort_keys=True)


def job_resources(stage):
    """The Snakemake resources of one job of ``stage`` (``resources.<stage>`` of params.yaml) and the device.

    Run settings, not science: rules pass them as ``threads:`` and ``resources:``, which Snakemake does not compare
    with the previous run (only params, shell code, inputs and software are rerun triggers), so changing them reruns
    nothing. ``cpus_per_task`` (the cores a cluster job asks for) follows the threads. A training stage's ``tasks``
    gives ``launcher``, how its command starts: ``python -m``, or torchrun with that many processes
    (taskcodec.distributed), which share the job's threads and GPUs. The cluster still gets one task: torchrun
    starts the processes inside it (the SLURM plugin runs a job's command as one task with ``cpus_per_task`` cores
    and all ``gpu`` GPUs), and ``tasks_per_gpu`` 0 keeps the plugin from asking for a task per GPU. A retried job
    (a cluster profile's ``retries``, e.g. after its time limit killed it) asks for ``runtime`` × the attempt: a
    training resumes from its checkpoint, so the longer limit lets it finish."""
    job = config["resources"][stage]
    resources = {"device": config["resources"]["device"], "mem_mb": job["mem_mb"],
                 "runtime": lambda wildcards, attempt: job["runtime"] * attempt,
                 "gpu": job["gpu"], "cpus_per_task": job["threads"], "tasks_per_gpu": 0}
    if "tasks" in job:
        resources["launcher"] = ("python -m" if job["tasks"] == 1
                                 else f"torchrun --standalone --nnodes 1 --nproc-per-node {job['tasks']} -m")
    return resources


def job_threads(stage):
    """The CPU threads of one job of ``stage``."""
    return config["resources"][stage]["threads"]


def neighbour_init(wildcards):
    """With a chained ``codec.train.init`` (``neighbour``: from the next larger λ; ``smaller_neighbour``: from the
    next smaller), the trained codec of the neighbouring λ of the same model, which this λ starts from
    ({"init": path}; the chain's first λ starts from scratch: {}), so that λ trains first."""
    start = chained_from(config["codec"]["train"]["init"], float(wildcards.lmbda), config["codec"]["sweep"]["lmbdas"])
    if start is None:
        return {}
    return {"init": results("codecs", wildcards.arch, wildcards.hyper, f"lmbda{number_id(start)}", "model.pt")}


def variable_rate_reads_ssl(arch, hyper):
    """Whether the variable-rate model ``arch``/``hyper`` (a codec path's folders) reads the self-supervised network
    (the registry's ``reads_ssl_model``: seed 001's pyramid with ``simclr: 1`` or a perceptual term, β > 0; not one
    with neither, the paper's baseline, nor CompressAI's -vbr models). Only input functions call it: the registry
    imports CompressAI (~7 s)."""
    from taskcodec.codecs.registry import reads_ssl_model

    return reads_ssl_model(arch, sweep_hyper("variable_rate", arch, hyper),
                           config["variable_rate"]["sweep"]["perceptual_weight"])


def ssl_input(wildcards):
    """The self-supervised network (train_simclr's) for a variable-rate model that reads it ({"ssl_model": path}),
    so that it trains only then; train_variable_rate's input."""
    return {"ssl_model": SSL_MODEL} if variable_rate_reads_ssl(wildcards.arch, wildcards.hyper) else {}


def sweep_hyper(section, arch, hyper):
    """The hyperparameters of the entry of ``<section>.sweep.models`` (codec, scalable, variable_rate) that a codec
    path's folders ``arch``/``hyper`` name, in the entry's order."""
    for model in config[section]["sweep"]["models"]:
        if model["arch"] == arch and codec_dirname(model) == hyper:
            return hyperparameters(model)
    raise WorkflowError(f"{arch}/{hyper} is not among {section}.sweep.models of params.yaml")


def hyper_json(section):
    """The ``--hyper`` JSON of the sweep entry a codec path names (:func:`sweep_hyper`); a function of the
    wildcards, for ``params:``."""
    return lambda wildcards: json.dumps(sweep_hyper(section, wildcards.arch, wildcards.hyper))


def per_codec(template, **fields):
    """``template`` formatted for every codec of the sweep (with extra ``fields``)."""
    return [template.format(**point, **fields) for point in codec_points(config)]


def task_measure_inputs(wildcards):
    """Every task's model and cached features and the saliency maps for evaluating a prepared split (extra folders
    have no labels)."""
    if wildcards.dataset not in SPLITS:
        return {}
    machine = {f"{kind}_{task}": path(task) for task in TASKS
               for kind, path in (("task_model", task_model), ("features", task_features))}
    return {**machine, "saliency": results("saliency")}


def task_measure_args(wildcards):
    """The stage arguments matching :func:`task_measure_inputs`; ``--task-model`` and ``--features`` list the
    tasks in one order."""
    if wildcards.dataset not in SPLITS:
        return ""
    args = f"--saliency {shlex.quote(results('saliency'))}"
    if TASKS:
        args += " --task-model " + " ".join(shlex.quote(task_model(task)) for task in TASKS)
        args += " --features " + " ".join(shlex.quote(task_features(task)) for task in TASKS)
    return args


def task_report_inputs(wildcards):
    """The evaluations and training records the rate–accuracy report of one task reads."""
    task = wildcards.task
    latent = task == "classification" and not LATENT_SKIP_REASON
    return {
        "finetuned": [results("eval", "finetuned", TUNED.format(**point), "test")
                      for point in finetune_points(config, [task] if task in config["finetune"]["tasks"] else [])],
        "scalable": per_scalable(results("eval", "scalable", SCALABLE, "test")) if config["scalable"]["task"] == task else [],
        "scalable_logs": (per_scalable(results("scalable", SCALABLE, "train_log.csv"))
                          if config["scalable"]["task"] == task else []),
        "latent": per_codec(results("latent", CODEC, "metrics.json")) if latent else [],
        "joint": per_codec(results("joint", CODEC)) if latent and config["latent_classifier"]["joint"]["enabled"] else [],
    }


def eval_datasets():
    return ["test"] + list(EXTRA_DATASETS)


def dataset_inputs(wildcards):
    """Inputs that define a dataset's images: the prepared data, or an extra folder's files."""
    if wildcards.dataset in SPLITS:
        return {"prepared": results("prepared")}
    return {"images": folder_files(EXTRA_DATASETS[wildcards.dataset])}


def folder_files(folder):
    """The image files of a dataset folder, as the stages list them (so other files never trigger reruns)."""
    try:
        return [str(path) for path in folder_images(folder)]
    except UserError as err:
        raise WorkflowError(str(err)) from None


def prepare_inputs(wildcards):
    """An image folder's files and its box and question files, so that changed data reruns prepare (none for the
    built-in dataset)."""
    section = config["prepare"]
    if section["dataset"] != "imagefolder":
        return []
    return folder_files(section["root"]) + [section[key] for key in ("annotations", "questions") if section.get(key)]


def saliency_input(floor):
    """The saliency maps as a named input of a training rule whose ``saliency_floor`` is set (else none)."""
    return {} if floor is None else {"saliency": results("saliency")}


def saliency_args(floor):
    """The ``--saliency`` argument matching :func:`saliency_input`."""
    return "" if floor is None else f"--saliency {shlex.quote(results('saliency'))}"


def dataset_args(wildcards):
    """The stage arguments selecting a dataset's images."""
    if wildcards.dataset in SPLITS:
        return f"--manifest {shlex.quote(results('prepared', 'manifest.csv'))} --split {wildcards.dataset}"
    return f"--folder {shlex.quote(EXTRA_DATASETS[wildcards.dataset])}"


def evaluate_section(**extra):
    """The keys of ``evaluate`` every evaluation stage takes, with ``extra`` keys, as JSON."""
    evaluate = config["evaluate"]
    return as_json({**extra, "save_reconstructions": evaluate["save_reconstructions"],
                    "saliency_threshold": evaluate["saliency_threshold"], "niqe": evaluate["niqe"]})


def reference_inputs(wildcards):
    """The CompressAI result folder drawn on a dataset's plots, if any."""
    references = config["evaluate"]["report"]["references"]
    return [references[wildcards.dataset]] if wildcards.dataset in references else []


def cache_outputs():
    splits = config["cache"]["splits"]
    return [path for split in splits for path in per_codec(results("cache", CODEC, "{split}"), split=split)]


def versioned_outputs():
    """Checkpoints and data that DVC versions (dvc.yaml outs) and whose inputs it versions too; the target
    of ``snakemake --touch versioned`` after a DVC restore (scripts/dvc_restore.sh); an input function of that
    rule, so that only a run that asks for it imports the codec registry (CompressAI, ~7 s)."""
    outputs = [results("saliency")] + per_codec(results("codecs", CODEC, "model.pt"))
    if MACHINE:
        outputs += [task_model(task) for task in TASKS]
        outputs += [results("finetuned", TUNED.format(**point), "model.pt") for point in finetune_points(config)]
        outputs += per_scalable(results("scalable", SCALABLE, "model.pt"))
    variable_rate = per_variable_rate(results("variable_rate", VARIABLE, "model.pt"))
    models = {(point["arch"], point["hyper"]) for point in variable_rate_points(config)}  # each once, not per point
    reads_ssl = any(variable_rate_reads_ssl(arch, hyper) for arch, hyper in models)
    return outputs + ([SSL_MODEL] if reads_ssl else []) + variable_rate


def report_outputs():
    return [results("report", dataset) for dataset in eval_datasets()]


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


def record_in_dvc():
    """After a run of the whole workflow (no targets, no --until/--omit-from/--allowed-rules/--batch), record it
    in DVC as `dvc repro` would, when it is what `dvc repro` runs, after creating the outs that a switched-off
    branch leaves absent (taskcodec.dvc_record)."""
    dag = workflow.dag_settings
    narrowed = dag.until or dag.omit_from or dag.allowed_rules or dag.batch
    whole_workflow = set(dag.targets) <= {"all"} and not narrowed
    dvc_record.create_absent_outs(config, whole_workflow)
    dvc_record.record(config, whole_workflow)


def per_scalable(template, **fields):
    """``template`` formatted for every scalable codec of the sweep (with extra ``fields``)."""
    return [template.format(**point, **fields) for point in scalable_points(config)]


def per_variable_rate(template, **fields):
    """``template`` formatted for every operating point of every variable-rate model (with extra ``fields``)."""
    return sorted({template.format(**point, **fields) for point in variable_rate_points(config)})
