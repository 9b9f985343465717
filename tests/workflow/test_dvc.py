"""DVC around the Snakemake pipeline: the README's commands, in the order a new user tries them, in a fresh git
clone of a temporary git + DVC copy of the project on the tiny config (one codec)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]
DVC_OUTS = ("results/prepared", "results/codecs", "results/report", "data/extra")
EXPERIMENT = "taskcodec-dvc-tests"
CODEC = "bmshj2018-hyperprior/N8-M12@lmbda0.003"
#: what a change of evaluate.report rewrites (the rest of results/ must stay as it was)
REPORTING = ("report", "summary", "logs", "benchmarks")


def run(repo: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    """``command`` in ``repo``, with the repository's own code (as in a clone with its own .venv)."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run(repo, str(ROOT / ".venv" / "bin" / "dvc"), *args)


def content_hashes(repo: Path, folders=DVC_OUTS) -> dict[str, str]:
    """SHA-256 of every file under ``folders``."""
    hashes = {}
    for out in folders:
        for path in sorted((repo / out).rglob("*")):
            if path.is_file():
                hashes[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def finished_work(repo: Path) -> dict[str, tuple[str, int]]:
    """SHA-256 and modification time of every file under results/ that no report change rewrites."""
    kept = [str(path.relative_to(repo)) for path in (repo / "results").iterdir()
            if path.is_dir() and path.name not in REPORTING]
    return {name: (digest, (repo / name).stat().st_mtime_ns) for name, digest in content_hashes(repo, kept).items()}


@pytest.fixture(scope="module")
def clone(tmp_path_factory, tiny_config, git_dvc_project) -> Path:
    """A fresh git clone of the project, its data restored from the DVC remote as the README says."""
    params = tiny_config
    params["tracking"]["experiment"] = EXPERIMENT  # apart from the end-to-end test's runs
    params["codec"]["sweep"]["lmbdas"] = [0.003]
    params["evaluate"]["classical"] = {"jpeg": {"qualities": [10, 50, 90]}}
    params["scalable"]["enabled"] = params["latent_classifier"]["joint"]["enabled"] = False  # DVC needs no more jobs
    params["variable_rate"]["enabled"] = False
    base = tmp_path_factory.mktemp("dvc")
    upstream = git_dvc_project(base / "upstream", params)
    dvc(upstream, "push", "-q")  # data/extra, to the default remote beside the project
    run(base, "git", "clone", "-q", str(upstream), "clone")
    restored = run(base / "clone", "bash", "scripts/dvc_restore.sh", "pull", "-q")
    assert "no dvc.lock" in restored.stdout and (base / "clone" / "data" / "extra" / "a.png").is_file()
    return base / "clone"


@pytest.fixture(scope="module")
def steps(clone, mlflow_store, job_counts) -> dict[str, dict]:
    """Each command of the README, in order: its output, the Snakemake jobs it ran and the finished work after it."""
    commands = {
        "pipeline": ["bash", "scripts/pipeline.sh"],
        "repro": [str(ROOT / ".venv" / "bin" / "dvc"), "repro"],
        "exp run": [str(ROOT / ".venv" / "bin" / "dvc"), "exp", "run", "-S", "evaluate.report.grid_image=1",
                    "-n", "grid1"],
        "exp apply": ["bash", "scripts/dvc_restore.sh", "exp", "apply", "grid1"],
        "pipeline again": ["bash", "scripts/pipeline.sh"],
    }
    done = {}
    for name, command in commands.items():
        output = run(clone, *command)
        done[name] = {"output": output.stdout + output.stderr, "jobs": job_counts(output.stdout + output.stderr),
                      "work": finished_work(clone)}
        if name == "pipeline":
            done[name]["grid"] = (clone / "results" / "report" / "test" / "recon_grid.png").read_bytes()
            done[name]["status"] = dvc(clone, "status").stdout
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    first = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                               "tags.`taskcodec.kind` = 'pipeline'", order_by=["attributes.start_time ASC"])[0]
    workdir = clone.parent / "reproduction"
    output = run(clone, sys.executable, "-m", "taskcodec.reproduce", first.info.run_id, "--dry-run",
                 "--workdir", str(workdir))
    done["reproduce"] = {"output": output.stdout, "jobs": {}, "work": finished_work(clone), "workdir": workdir}
    return done


def test_documented_commands_keep_finished_work(clone, steps):
    first = steps["pipeline"]
    assert first["jobs"]["train_codec"] == 1 and sum(first["jobs"].values()) > 20, first["jobs"]
    assert "recorded this run in DVC" in first["output"]  # so DVC's commands know it ...
    assert first["status"].strip().endswith("Data and pipelines are up to date.")
    assert steps["repro"]["jobs"] == {} and "Running stage 'pipeline'" not in steps["repro"]["output"]
    # ... and an evaluation-only change reruns the reports alone
    assert "report" in steps["exp run"]["jobs"], steps["exp run"]["output"][-3000:]
    assert set(steps["exp run"]["jobs"]) <= {"report", "report_task", "summarize"}, steps["exp run"]["jobs"]
    assert (clone / "results" / "report" / "test" / "recon_grid.png").read_bytes() != first["grid"]
    for name in ("repro", "exp run", "exp apply", "pipeline again", "reproduce"):
        assert steps[name]["work"] == first["work"], f"{name} deleted or rewrote finished work"
    assert steps["exp apply"]["jobs"] == {} and steps["pipeline again"]["jobs"] == {}
    assert "Nothing to be done" in steps["pipeline again"]["output"]
    assert "would run:" in steps["reproduce"]["output"] and not steps["reproduce"]["workdir"].exists()


def test_the_lock_names_the_run_and_experiments_compare(clone, steps):
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    outs = {out["path"] for out in lock["stages"]["pipeline"]["outs"]}
    assert {"results/prepared", "results/codecs", "results/report", "results/summary/metrics.json"} <= outs
    tracked = lock["stages"]["pipeline"]["params"]["params.yaml"]
    assert tracked["codec"]["train"]["steps"] == 12 and tracked["evaluate"]["report"]["grid_image"] == 1
    assert "resources" not in tracked and "tracking" not in tracked  # run settings: DVC does not track them
    shown = json.loads(dvc(clone, "exp", "show", "--json").stdout)
    names = [exp.get("name") for rev in shown for exp in (rev.get("experiments") or [])]
    assert "grid1" in names
    assert run(clone, "git", "status", "--porcelain", "--untracked-files=all").stdout.split() == [
        "M", "params.yaml", "??", "dvc.lock"]  # nothing under results/ is git's


def test_run_settings_leave_the_dvc_stage_up_to_date(clone, steps):
    original = (clone / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["resources"]["device"] = "cpu"
    params["resources"]["train_codec"]["threads"] = 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert dvc(clone, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    finally:
        (clone / "params.yaml").write_text(original)


def test_metrics_and_plots_read_the_summary(clone, steps):
    metrics = json.loads(dvc(clone, "metrics", "show", "--json").stdout)
    summary = metrics[next(iter(metrics))]["data"]["results/summary/metrics.json"]["data"]
    assert set(summary) == {"test", "extra", "machine"}
    learned = summary["test"]["learned"]
    assert set(learned) == {CODEC}
    assert all(point["bpp"] > 0 and point["psnr"] > 0 for point in learned.values())  # 12 steps: barely trained
    plots = dvc(clone, "plots", "show", "--json")
    assert "results/summary/rate_distortion.csv" in plots.stdout


def planned_rules(repo: Path) -> str:
    dry = run(repo, "bash", "scripts/pipeline.sh", "--dry-run", "--quiet", "rules")
    return dry.stdout + dry.stderr


def test_edited_data_reruns_its_jobs(clone, steps, extra_images):
    extra_images(clone / "data" / "extra", seed=1)
    dvc(clone, "add", "-q", "data/extra")
    planned = planned_rules(clone)
    for rule in ("cache_latents", "evaluate_codec", "evaluate_classical", "report", "summarize"):
        assert rule in planned, planned
    assert "train_codec" not in planned and "prepare" not in planned
    extra_images(clone / "data" / "extra", seed=0)  # back to the data the outs were made from
    dvc(clone, "add", "-q", "data/extra")


def test_a_second_run_on_the_same_folder_is_refused(clone, steps):
    before = finished_work(clone)
    log = clone.parent / "first_run.log"
    with open(log, "w") as handle:
        first = subprocess.Popen(["bash", "scripts/pipeline.sh", "--forcerun", "summarize"], cwd=clone,
                                 stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONPATH": str(clone / "src")})
    try:
        deadline = time.monotonic() + 300
        while "rule summarize" not in log.read_text() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, log.read_text()[-4000:]
        os.killpg(first.pid, signal.SIGSTOP)  # the first run holds its lock for as long as the second one tries
        second = run(clone, "bash", "scripts/pipeline.sh", check=False)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGCONT)
    assert first.wait(300) == 0, log.read_text()[-4000:]
    said = second.stdout + second.stderr
    assert second.returncode != 0
    assert f"another pipeline run (pid {first.pid} on " in said  # pipeline.sh execs Snakemake: the same pid
    assert "is writing to results/; wait for it to end or stop it, then run again" in said
    assert "LockException" not in said and "--unlock" not in said, said[-3000:]
    dry = run(clone, "bash", "scripts/pipeline.sh", "--dry-run")
    assert finished_work(clone) == before and "Nothing to be done" in dry.stdout + dry.stderr


def test_push_then_pull_into_an_empty_workspace_restores_identical_files(clone, steps):
    before = content_hashes(clone)
    assert len(before) > 10 and any(name.endswith("model.pt") for name in before)
    dvc(clone, "push", "-q")
    # a fresh workspace: no outs, no DVC cache, no untracked results
    for out in DVC_OUTS + ("results/cache", "results/eval"):
        shutil.rmtree(clone / out)
    shutil.rmtree(clone / ".dvc" / "cache")
    run(clone, "bash", "scripts/dvc_restore.sh", "pull", "-q")
    assert content_hashes(clone) == before
    assert dvc(clone, "status").stdout.strip().endswith("Data and pipelines are up to date.")
    # restored data and checkpoints are up to date; only the untracked caches and evaluations are redone
    planned = planned_rules(clone)
    assert "cache_latents" in planned and "evaluate_codec" in planned
    assert "train_codec" not in planned and "prepare" not in planned, planned
