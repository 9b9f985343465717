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

Under SLURM every job's run is tagged with its job id (:data:`SLURM_TAG`), and a
SQLite tracking store on a network filesystem (NFS, Lustre, GPFS, BeeGFS, CIFS…)
gets a warning: SQLite's file locking is unreliable there and concurrent jobs can
lose or corrupt runs; such clusters use a tracking server (``mlflow server``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import yaml

from taskcodec.artifacts import file_digest

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
#: the tag holding the SLURM job id of a job's run (absent outside SLURM)
SLURM_TAG = "slurm_job_id"
#: filesystem types (``/proc/mounts``) on which SQLite must not be shared by concurrent jobs
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
                       "panfs", "pvfs2", "orangefs", "afs", "wekafs", "9p", "fuse.sshfs", "fuse.ceph",
                       "fuse.glusterfs", "fuse.beegfs", "fuse.gpfs")
#: the mount table read to find a tracking store's filesystem
MOUNTS = Path("/proc/self/mounts")


def resolve_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else ``configured``, else a SQLite file in the working directory."""
    return os.environ.get(URI_ENV) or configured or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///…`` tracking URI (relative paths from the working directory), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path.startswith("/") else Path.cwd() / path


def mount_type(folder: str, table: str) -> str | None:
    """The filesystem type of the mount holding the absolute ``folder``, from a ``/proc/mounts``-style table."""
    best, kind = "", None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = folder == point or folder.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equal mount points is the one in effect
            best, kind = point, fields[2]
    return kind


def filesystem_type(path: Path, mounts: Path | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (its nearest existing folder), from :data:`MOUNTS`."""
    folder = path.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return mount_type(str(folder), (mounts or MOUNTS).read_text())
    except OSError:
        return None


def network_sqlite_warning(uri: str, mounts: Path | None = None) -> str | None:
    """A warning when ``uri`` is a SQLite file on a network filesystem (see the module docstring), else None."""
    path = sqlite_path(uri)
    kind = filesystem_type(path, mounts) if path else None
    if kind is None or kind.lower() not in NETWORK_FILESYSTEMS:
        return None
    return (f"taskcodec: the MLflow tracking store {path} is a SQLite file on a network filesystem ({kind}); "
            "jobs running at once on several nodes can lose or corrupt runs there: run `mlflow server` on one host "
            "and export MLFLOW_TRACKING_URI=http://<host>:<port> before starting the pipeline (README: Running on "
            "a SLURM cluster)")


def submits_to_slurm(command: list[str]) -> bool:
    """Whether a Snakemake command line (``sys.argv[1:]``) runs its jobs with the slurm executor."""
    for index, arg in enumerate(command):
        value = command[index + 1] if index + 1 < len(command) else ""
        if arg in ("--executor", "-e") and value == "slurm" or arg == "--executor=slurm":
            return True
        profile = value if arg == "--profile" else arg.split("=", 1)[1] if arg.startswith("--profile=") else None
        if profile:
            try:
                settings = yaml.safe_load((Path(profile) / "config.yaml").read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(settings, dict) and settings.get("executor") == "slurm":
                return True
    return False


def warn_network_sqlite(uri: str) -> None:
    """Print :func:`network_sqlite_warning` to stderr (and as a Python warning) when it applies."""
    message = network_sqlite_warning(uri)
    if message:
        print(message, file=sys.stderr, flush=True)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


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
    if submits_to_slurm(command) or os.environ.get("SLURM_JOB_ID"):
        warn_network_sqlite(os.environ[URI_ENV])
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
            **git_state()}
    if os.environ.get("SLURM_JOB_ID"):
        tags[SLURM_TAG] = os.environ["SLURM_JOB_ID"]
        warn_network_sqlite(resolve_uri())
    for key, path in (inputs or {}).items():
        tags[f"input.{key}.md5"] = file_digest(path, "md5")
    with mlflow.start_run(run_name=name, parent_run_id=parent, tags=tags) as run:
        mlflow.log_params({**flatten(params), **{f"wildcard.{k}": str(v) for k, v in wildcards.items()}})
        yield StageRun(mlflow, run.info.run_id)

