"""MLflow tracking: one parent run per pipeline invocation, one child run per stage job.

Every stage enters :func:`stage_run`; no stage talks to MLflow directly. The
tracking URI comes from ``MLFLOW_TRACKING_URI`` when set (a cluster's tracking
server), else from params ``tracking.uri``, else ``sqlite:///<project>/mlflow.db``
(never the deprecated ``./mlruns`` file store). The Snakefile's ``onstart``
creates the parent run with :func:`start_pipeline_run` — which also creates the
database, so parallel jobs never race to initialise it — and passes its id to
the jobs in the environment (:data:`PARENT_ENV`), never through rule params.
A stage run by hand, without a parent, records a top-level run. The parent run
keeps the exact resolved config as its artifact ``params.yaml`` (the flattened
params are for browsing), from which :mod:`taskcodec.reproduce` reruns it.

Large checkpoints are not copied into MLflow (DVC versions them): their path
and SHA-256 are logged as tags.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from taskcodec.io import file_digest

PARENT_ENV = "TASKCODEC_MLFLOW_PARENT_RUN_ID"
URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
#: set by taskcodec.reproduce: the run a pipeline invocation reproduces, tagged ``REPRODUCES_TAG``
REPRODUCES_ENV = "TASKCODEC_REPRODUCES"
REPRODUCES_TAG = "taskcodec.reproduces"
#: the parent run's artifact holding the exact resolved config
PARAMS_ARTIFACT = "params.yaml"
DEFAULT_EXPERIMENT = "taskcodec"
#: MLflow's limit on metrics per log_batch call
BATCH_SIZE = 1000


def resolve_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else ``configured``, else a SQLite file in the working directory."""
    return os.environ.get(URI_ENV) or configured or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def _mlflow():
    import mlflow  # imported lazily: it takes a second, and only stages that record need it

    mlflow.set_tracking_uri(resolve_uri())
    mlflow.set_experiment(os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT))
    return mlflow


def git_state(folder: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the repository holding this code (``unknown`` outside git)."""
    folder = folder or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(status.strip())).lower()}


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as ``a.b.c`` keys with JSON values, as MLflow params."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if not isinstance(value, str) else value
    return flat


def start_pipeline_run(params: dict[str, Any], command: list[str]) -> str:
    """Create the parent run of a pipeline invocation and export its id (and the URI) to the jobs.

    The run gets the flattened params, and ``params`` itself as the artifact
    :data:`PARAMS_ARTIFACT`; it is tagged :data:`REPRODUCES_TAG` when
    :data:`REPRODUCES_ENV` is set.
    """
    os.environ[URI_ENV] = resolve_uri(params["tracking"]["uri"])
    os.environ.setdefault(EXPERIMENT_ENV, params["tracking"]["experiment"])
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name(os.environ[EXPERIMENT_ENV])
    tags = {"taskcodec.kind": "pipeline", "host": socket.gethostname(), "command": " ".join(command)[:5000],
            **git_state()}
    if os.environ.get(REPRODUCES_ENV):
        tags[REPRODUCES_TAG] = os.environ[REPRODUCES_ENV]
    run = client.create_run(experiment.experiment_id, run_name="pipeline", tags=tags)
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v[:6000]) for k, v in flatten(params).items()])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / PARAMS_ARTIFACT
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        client.log_artifact(run.info.run_id, str(path))
    os.environ[PARENT_ENV] = run.info.run_id
    return run.info.run_id


def end_pipeline_run(status: str) -> None:
    """Close the parent run with ``FINISHED`` or ``FAILED``."""
    run_id = os.environ.get(PARENT_ENV)
    if run_id:
        _mlflow().MlflowClient().set_terminated(run_id, status=status)


class StageRun:
    """What a stage records into its child run."""

    def __init__(self, mlflow, run_id: str):
        self._mlflow = mlflow
        self._client = mlflow.MlflowClient()
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_history(self, rows: list[dict[str, Any]], prefix: str) -> None:
        """Per-step curves: every numeric field of ``rows`` as metric ``<prefix><field>`` at ``row['step']``."""
        from mlflow.entities import Metric

        metrics = [Metric(f"{prefix}{key}", float(value), 0, int(row["step"]))
                   for row in rows for key, value in row.items()
                   if key != "step" and isinstance(value, (int, float)) and value == value]
        for start in range(0, len(metrics), BATCH_SIZE):
            self._client.log_batch(self.run_id, metrics=metrics[start : start + BATCH_SIZE])

    def log_artifact(self, path: str | os.PathLike) -> None:
        self._mlflow.log_artifact(str(path))

    def log_file_reference(self, name: str, path: str | os.PathLike) -> None:
        """Tag a large file (e.g. a checkpoint) by path and SHA-256 instead of copying it."""
        self._mlflow.set_tags({f"{name}.path": str(Path(path).resolve()), f"{name}.sha256": file_digest(path)})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def stage_run(rule: str, wildcards: dict[str, Any], params: dict[str, Any],
              inputs: dict[str, str | os.PathLike] | None = None) -> Iterator[StageRun]:
    """A child run named after the rule and wildcards, with params, wildcards and provenance tags.

    ``inputs`` maps a name to an input file whose MD5 (DVC's content hash) is recorded as a tag.
    """
    mlflow = _mlflow()
    label = ",".join(f"{k}={v}" for k, v in wildcards.items())
    name = f"{rule}[{label}]" if label else rule
    parent = os.environ.get(PARENT_ENV)
    tags = {"rule": rule, "wildcards": json.dumps(wildcards, sort_keys=True), "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""), **git_state()}
    for key, path in (inputs or {}).items():
        tags[f"input.{key}.md5"] = file_digest(path, "md5")
    with mlflow.start_run(run_name=name, parent_run_id=parent, tags=tags) as run:
        mlflow.log_params({**flatten(params), **{f"wildcard.{k}": str(v) for k, v in wildcards.items()}})
        yield StageRun(mlflow, run.info.run_id)

