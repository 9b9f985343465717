"""DVC around the Snakemake pipeline, in a temporary git + DVC copy of the project on the tiny config."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]
DVC_OUTS = ("results/prepared", "results/codecs", "results/report", "data/extra")


def run(repo: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(repo, str(ROOT / ".venv" / "bin" / "dvc"), *args, check=check)


def content_hashes(repo: Path) -> dict[str, str]:
    """SHA-256 of every file under the DVC outs."""
    hashes = {}
    for out in DVC_OUTS:
        for path in sorted((repo / out).rglob("*")):
            if path.is_file():
                hashes[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, tiny_config, git_dvc_project) -> Path:
    """The project in a fresh git + DVC repository, pipeline run once by `dvc repro`."""
    params = tiny_config
    params["tracking"]["experiment"] = "taskcodec-dvc-tests"  # apart from the end-to-end test's runs
    repo = git_dvc_project(tmp_path_factory.mktemp("dvc") / "repo", params)
    first = dvc(repo, "repro")
    assert "Running stage 'pipeline'" in first.stdout, first.stdout[-3000:]
    return repo


def test_repro_twice_runs_the_pipeline_once(dvc_repo):
    again = dvc(dvc_repo, "repro")
    assert "Running stage 'pipeline'" not in again.stdout
    assert "didn't change" in again.stdout or "up to date" in again.stdout, again.stdout
    assert dvc(dvc_repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    outs = {out["path"] for out in lock["stages"]["pipeline"]["outs"]}
    assert {"results/prepared", "results/codecs", "results/report", "results/summary/metrics.json"} <= outs
    tracked = lock["stages"]["pipeline"]["params"]["params.yaml"]
    assert tracked["codec"]["train"]["steps"] == 12
    assert "resources" not in tracked and "tracking" not in tracked  # run settings: DVC does not track them


def test_run_settings_leave_the_dvc_stage_up_to_date(dvc_repo):
    original = (dvc_repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["resources"]["device"] = "cpu"
    params["resources"]["train_codec"]["threads"] = 2
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert dvc(dvc_repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    finally:
        (dvc_repo / "params.yaml").write_text(original)


def test_metrics_and_plots_read_the_summary(dvc_repo):
    metrics = json.loads(dvc(dvc_repo, "metrics", "show", "--json").stdout)
    summary = metrics[next(iter(metrics))]["data"]["results/summary/metrics.json"]["data"]
    assert set(summary) == {"test", "extra", "machine"}
    learned = summary["test"]["learned"]
    assert set(learned) == {"bmshj2018-hyperprior/N8-M12@lmbda0.003", "bmshj2018-hyperprior/N8-M12@lmbda0.03"}
    assert all(point["bpp"] > 0 and point["psnr"] > 0 for point in learned.values())  # 12 steps: barely trained
    plots = dvc(dvc_repo, "plots", "show", "--json")
    assert "results/summary/rate_distortion.csv" in plots.stdout


def planned_rules(repo: Path) -> str:
    dry = run(repo, "bash", "scripts/pipeline.sh", "--dry-run", "--quiet", "rules")
    return dry.stdout + dry.stderr


def test_experiment_with_a_changed_param_reruns_only_what_depends_on_it(dvc_repo):
    models = sorted((dvc_repo / "results" / "codecs").rglob("model.pt"))
    trained = {path: path.stat().st_mtime_ns for path in models}
    grid = dvc_repo / "results" / "report" / "test" / "recon_grid.png"
    old_grid = grid.read_bytes()
    dvc(dvc_repo, "exp", "run", "-q", "-S", "evaluate.report.grid_image=1", "-n", "grid1")
    diff = json.loads(dvc(dvc_repo, "params", "diff", "--json").stdout)
    change = diff["params.yaml"]["evaluate.report.grid_image"]
    assert (change["old"], change["new"]) == (0, 1)
    shown = json.loads(dvc(dvc_repo, "exp", "show", "--json").stdout)
    names = [exp.get("name") for rev in shown for exp in (rev.get("experiments") or [])]
    assert "grid1" in names
    assert grid.read_bytes() != old_grid  # the report was redone for the other image ...
    assert {path: path.stat().st_mtime_ns for path in models} == trained  # ... and no codec retrained


def test_edited_data_reruns_its_jobs(dvc_repo, extra_images):
    extra_images(dvc_repo / "data" / "extra", seed=1)
    dvc(dvc_repo, "add", "-q", "data/extra")
    planned = planned_rules(dvc_repo)
    for rule in ("cache_latents", "evaluate_codec", "evaluate_classical", "report", "summarize"):
        assert rule in planned, planned
    assert "train_codec" not in planned and "prepare" not in planned
    extra_images(dvc_repo / "data" / "extra", seed=0)  # back to the data the outs were made from
    dvc(dvc_repo, "add", "-q", "data/extra")


def test_push_then_pull_into_an_empty_workspace_restores_identical_files(dvc_repo):
    before = content_hashes(dvc_repo)
    assert len(before) > 10 and any(name.endswith("model.pt") for name in before)
    dvc(dvc_repo, "push", "-q")
    # a fresh workspace: no outs, no DVC cache, no untracked results
    for out in DVC_OUTS + ("results/cache", "results/eval"):
        shutil.rmtree(dvc_repo / out)
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    run(dvc_repo, "bash", "scripts/dvc_restore.sh", "pull", "-q")
    assert content_hashes(dvc_repo) == before
    assert dvc(dvc_repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    # restored data and checkpoints are up to date; only the untracked caches and evaluations are redone
    planned = planned_rules(dvc_repo)
    assert "cache_latents" in planned and "evaluate_codec" in planned
    assert "train_codec" not in planned and "prepare" not in planned, planned
