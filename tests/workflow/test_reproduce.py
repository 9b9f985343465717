"""Reproduce a tracked run from its commit and params, in a temporary git + DVC copy of the project."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from taskcodec import reproduce, tracking
from taskcodec.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "taskcodec-reproduce-tests"


def run(repo: Path, *command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def tracked_repo(tmp_path_factory, tiny_config, git_dvc_project):
    """A committed git + DVC copy of the project on the tiny config's human branch (extra images DVC-tracked),
    run once."""
    params = tiny_config
    params["tracking"]["experiment"] = EXPERIMENT
    params["tasks"], params["scalable"]["enabled"] = {}, False  # reproducing a run needs no machine branch
    params["variable_rate"]["enabled"] = False  # nor more than one codec family
    params["cache"]["splits"] = ["test"]
    params["codec"]["sweep"]["lmbdas"] = [0.003]  # one codec and one classical codec: 12 jobs, run twice
    params["evaluate"]["classical"] = {"jpeg": {"qualities": [10, 50, 90]}}
    repo = git_dvc_project(tmp_path_factory.mktemp("reproduce") / "repo", params)
    # the repository's own code runs (and records its commit), as in a checkout with its own .venv
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env.pop(tracking.EXPERIMENT_ENV, None)
    run(repo, sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/local", "--cores", "2", env=env)
    return repo, params


def pipeline_runs(client: mlflow.MlflowClient, **tags: str) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])


def test_pipeline_run_keeps_its_exact_params_and_commit(tracked_repo, mlflow_store, tmp_path):
    repo, params = tracked_repo
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    (parent,) = pipeline_runs(client, **{"taskcodec.kind": "pipeline"})
    assert parent.data.tags["git_commit"] == run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert parent.data.tags["git_dirty"] == "false"
    path = client.download_artifacts(parent.info.run_id, tracking.PARAMS_ARTIFACT, str(tmp_path))
    assert yaml.safe_load(Path(path).read_text()) == params


def test_reproducing_a_job_run_gives_the_same_numbers(tracked_repo, mlflow_store, tmp_path, capsys):
    repo, _ = tracked_repo
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    (parent,) = pipeline_runs(client, **{"taskcodec.kind": "pipeline"})
    evaluations = [child for child in pipeline_runs(client, **{"mlflow.parentRunId": parent.info.run_id,
                                                                "rule": "evaluate_codec"})
                   if json.loads(child.data.tags["wildcards"])["dataset"] == "test"]
    original = evaluations[0]
    workdir = tmp_path / "again"

    assert reproduce.main([original.info.run_id, "--workdir", str(workdir), "--repo", str(repo),
                           "--cores", "2"]) == 0

    out = capsys.readouterr().out
    compared = len(original.data.metrics)  # no timings among an evaluation's metrics
    assert f"{compared} of {compared} metrics match" in out, out[-3000:]
    (again,) = pipeline_runs(client, **{tracking.REPRODUCES_TAG: original.info.run_id})
    assert again.data.tags["git_commit"] == parent.data.tags["git_commit"]
    (twin,) = [child for child in pipeline_runs(client, **{"mlflow.parentRunId": again.info.run_id})
               if child.info.run_name == original.info.run_name]
    assert twin.data.metrics == original.data.metrics  # CPU, same seeds: identical numbers
    assert {"bpp", "bpp_estimated", "psnr", "ms_ssim"} <= set(original.data.metrics)
    assert (workdir / "results" / "report" / "test").is_dir()
    assert (workdir / "data" / "extra" / "a.png").read_bytes() == (repo / "data" / "extra" / "a.png").read_bytes()


def test_dry_run_shows_commit_params_changes_and_command(tracked_repo, mlflow_store, tmp_path, capsys):
    repo, params = tracked_repo
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    parent = pipeline_runs(client, **{"taskcodec.kind": "pipeline"})[-1]  # the first, not the reproduction
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["codec"]["train"]["steps"] = 13
    workdir = tmp_path / "never"
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        status = reproduce.main([parent.info.run_id, "--dry-run", "--workdir", str(workdir), "--repo", str(repo)])
    finally:
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = capsys.readouterr().out
    assert status == 0
    assert parent.data.tags["git_commit"] in out
    assert [line for line in out.splitlines() if line.startswith("  ")] == ["  codec.train.steps: 13 -> 12"], out
    assert f"--directory {workdir}" in out and not workdir.exists()


def test_unknown_run_id_is_a_user_error():
    with pytest.raises(UserError, match="run 0123456789abcdef0123456789abcdef is not in the tracking store"):
        reproduce.main(["0123456789abcdef0123456789abcdef", "--dry-run"])
