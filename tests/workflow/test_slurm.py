"""The pipeline on a real single-node SLURM started by scripts/slurm/start.sh, through the one documented command
(`bash scripts/pipeline.sh --profile workflow/profiles/slurm`): every non-local job runs as a SLURM job and its
numbers are a local run's; a training job sent SIGTERM (as SLURM does before a preemption or time-limit kill) is
resubmitted and resumes from its checkpoint.

Starting SLURM needs root and apt-get (or the Debian packages already installed); elsewhere these tests are skipped
with the reason, except under CI=true, where they must run.
"""

import copy
import json
import os
import re
import signal
import subprocess
import time
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from taskcodec.evaluation import read_table

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "workflow/profiles/slurm"  # relative to the project folder, as in the README
# the tables a user reads; the run on SLURM must write the local run's rows of its curves, except for the MLflow run ids
TABLES = ("report/test/rd_points.csv", "report/test/bd_rate.csv", "report/machine/classification/rate_accuracy.csv",
          "report/machine/classification/bd_rate_accuracy.csv", "report/machine/classification/tradeoff.csv",
          "summary/rate_distortion.csv", "summary/rate_accuracy.csv")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def make_project(path: Path, config: dict, extra_images) -> Path:
    """A working directory with ``config`` as params.yaml and its extra dataset, like conftest's Project."""
    extra_images(path / "extra_images", seed=0)
    (path / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_on_slurm(project: Path, experiment: str, *args: str, timeout: float, on_running=None) -> str:
    """The README's command for ``project``, recording into MLflow experiment ``experiment``; returns Snakemake's
    output. ``on_running(output_so_far)`` is called every second while it runs. After ``timeout`` s Snakemake is
    interrupted (SIGINT, which cancels its jobs) and the test fails."""
    env = {**os.environ, "MLFLOW_EXPERIMENT_NAME": experiment}
    output = project / "snakemake.out"
    command = ["bash", str(ROOT / "scripts" / "pipeline.sh"), "--profile", PROFILE,
               "--snakefile", str(ROOT / "Snakefile"), "--directory", str(project),
               "--slurm-logdir", str(project / "slurm_logs"),
               # the site key `cores`: this cluster's node has fewer cores than the profile's example
               "--cores", subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0],
               # a tiny pipeline's jobs take seconds: check their state early (a cluster's default is 20 s)
               "--slurm-init-seconds-before-status-checks", "2", *args]
    started = time.monotonic()
    with open(output, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env,
                                   start_new_session=True)
        while process.poll() is None and time.monotonic() - started < timeout:
            time.sleep(1)
            if on_running:
                on_running(output.read_text())
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Snakemake ignores SIGTERM until its jobs end; SIGINT cancels them
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
            pytest.fail(f"the pipeline on SLURM did not finish in {timeout} s:\n{output.read_text()[-6000:]}")
    text = output.read_text()
    print(f"pipeline on SLURM: {time.monotonic() - started:.0f} s, "
          f"{len(SUBMITTED.findall(text))} jobs submitted")
    assert process.returncode == 0, text[-8000:]
    return text


def time_limits(job_ids) -> dict[str, str]:
    """SLURM's time limit of each job (squeue's %l, e.g. 10:00 for 10 minutes)."""
    listing = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%l", "-j", ",".join(sorted(job_ids))],
                             capture_output=True, text=True, check=True).stdout
    return dict(line.split("|") for line in listing.split())


def job_states(job_ids) -> dict[str, str]:
    """SLURM's state of each job (finished jobs stay visible to squeue for start.sh's MinJobAge)."""
    listing = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%T", "-j", ",".join(sorted(job_ids))],
                             capture_output=True, text=True, check=True).stdout
    return dict(line.split("|") for line in listing.split())


def attempts(submitted) -> dict[str, list[str]]:
    """The SLURM jobs of each planned job or group (the ``--target-jobs`` its SLURM log shows), in the order
    they were submitted: more than one when the profile's ``retries`` resubmitted it after a failure."""
    tries = {}
    for job_id, log in submitted:
        target = re.search(r"--target-jobs (.+?) --allowed-rules", Path(log).read_text())
        tries.setdefault(target.group(1) if target else log, []).append(job_id)
    return tries


def failed_jobs(states: dict[str, str], submitted, job_ids) -> str:
    """Each of ``job_ids``: its state, its SLURM log and the end of that log."""
    logs = dict(submitted)
    return "\n".join(f"job {job_id} {states.get(job_id)}, log {logs[job_id]}:\n"
                     + (Path(logs[job_id]).read_text()[-3000:] if Path(logs[job_id]).is_file() else "(no log)")
                     for job_id in sorted(job_ids, key=int))


def planned(output: str) -> Counter:
    """Jobs per rule of the run's job stats table."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return Counter({rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)})


def child_runs(experiment: str):
    """The job runs under the one pipeline run of ``experiment``."""
    import mlflow

    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    parents = [run for run in runs if run.data.tags.get("taskcodec.kind") == "pipeline"]
    assert len(parents) == 1, [run.info.run_name for run in runs]
    return [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def test_pipeline_on_slurm_runs_every_job_as_a_slurm_job_with_the_local_numbers(slurm, pipeline_run, mlflow_store,
                                                                               tmp_path_factory, extra_images):
    import mlflow

    mlflow.set_tracking_uri(mlflow_store)
    local, _ = pipeline_run  # the tiny config, run with the local profile
    # without the extra dataset and the branches whose jobs are submitted like others (variable-rate and scalable
    # codecs: like train_codec and the cache/evaluate group; the joint classifier: like the latent one)
    config = copy.deepcopy(local.params)
    config["variable_rate"]["enabled"] = config["scalable"]["enabled"] = False
    config["latent_classifier"]["joint"]["enabled"] = False
    config["evaluate"]["extra_datasets"] = {}
    project = make_project(tmp_path_factory.mktemp("slurm_pipeline"), config, extra_images)
    output = run_on_slurm(project, "taskcodec-slurm-tests", timeout=900)

    # every job Snakemake planned, except the local rules, was submitted with sbatch and completed in SLURM; an
    # attempt that failed and was resubmitted (the profile's retries: 2) is reported with its log, not hidden
    submitted = SUBMITTED.findall(output)
    assert submitted, output[-4000:]
    slurm_ids = {job_id for job_id, _ in submitted}
    states = job_states(slurm_ids)
    tries = attempts(submitted)
    last = {ids[-1] for ids in tries.values()}
    assert set(states) == slurm_ids and {states[job_id] for job_id in last} == {"COMPLETED"}, \
        failed_jobs(states, submitted, slurm_ids)
    retried = slurm_ids - last
    if retried:
        warnings.warn("jobs that failed in SLURM and were resubmitted:\n" + failed_jobs(states, submitted, retried))
    # the rules' groups: a codec's cache and the evaluation that reads it share one submission
    assert any("/group_" in log for _, log in submitted)
    for job_id, log in submitted:  # SLURM's own log of each job, named by its id
        assert Path(log).name == f"{job_id}.log" and Path(log).is_file()
    local_rules = set(re.findall(r"^localrule (\w+):", output, flags=re.M))
    children = child_runs("taskcodec-slurm-tests")
    children = [run for run in children if run.data.tags.get("slurm_job_id") not in retried]
    remote = [run for run in children if run.data.tags["rule"] not in local_rules]
    expected = Counter({rule: n for rule, n in planned(output).items() if rule not in local_rules})
    assert Counter(run.data.tags["rule"] for run in remote) == expected
    # each job's MLflow run carries the id of the SLURM job it ran in; local rules' runs carry none
    assert {run.data.tags.get("slurm_job_id") for run in remote} <= slurm_ids
    assert all("slurm_job_id" not in run.data.tags for run in children if run not in remote)
    assert all(run.info.status == "FINISHED" for run in children)

    # the same numbers as the local run of the same codecs (on the CPU they are identical); only the run ids differ
    for name in TABLES:
        on_slurm, at_home = (read_table(path / "results" / name).drop(columns="run_id", errors="ignore")
                             for path in (project, local.path))
        for column in ("kind", "codec", "series"):  # the local run's rows of the curves the run on SLURM has
            if column in at_home.columns:
                at_home = at_home[at_home[column].isin(on_slurm[column])]
        # exact values; a count column is float where the other run's table has a NaN in rows it does not share
        pd.testing.assert_frame_equal(on_slurm, at_home.reset_index(drop=True), check_dtype=False, check_exact=True,
                                      obj=name)
    for name, kinds in {"report/test/rd_points.csv": {"classical", "pretrained"},
                        "report/machine/classification/rate_accuracy.csv": {"classical", "pretrained", "finetuned", "latent"}}.items():
        assert set(read_table(project / "results" / name)["kind"]) == kinds, name  # every curve of its branches
    summary = [json.loads((path / "results" / "summary" / "metrics.json").read_text()) for path in (project, local.path)]
    assert summary[0].keys() == {"test", "machine"}
    assert summary[0] == within(summary[1], summary[0])


def within(whole, part):
    """``whole`` (nested dicts) with only the keys that ``part`` has at the same places."""
    if not isinstance(part, dict) or not isinstance(whole, dict):
        return whole
    return {key: within(whole[key], value) for key, value in part.items() if key in whole}


TRAIN_STEPS = 800  # long enough to be interrupted: about 15 s of CPU time on one core


def test_training_job_sent_sigterm_is_resubmitted_and_resumes_from_its_checkpoint(slurm, mlflow_store, tmp_path_factory,
                                                                                   tiny_config, extra_images):
    import mlflow

    mlflow.set_tracking_uri(mlflow_store)
    config = copy.deepcopy(tiny_config)
    config["codec"]["sweep"]["lmbdas"] = [0.003]
    # no periodic checkpoint before the end: only a checkpoint written on SIGTERM lets the retry resume
    config["codec"]["train"].update(steps=TRAIN_STEPS, checkpoint_every=TRAIN_STEPS, val_every=TRAIN_STEPS)
    project = make_project(tmp_path_factory.mktemp("slurm_sigterm"), config, extra_images)
    codec = project / "results" / "codecs" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003"
    log = project / "results" / "logs" / "train_codec" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003.log"
    killed = {}

    def kill_training_once_it_runs(output: str) -> None:
        """scancel --signal=TERM the training job once its progress bar shows steps done (and not all)."""
        if killed:
            return
        training = [job_id for job_id, path in SUBMITTED.findall(output) if "rule_train_codec" in path]
        shown = re.findall(rf"(\d+)/{TRAIN_STEPS} ", log.read_text().replace("\r", "\n")) if log.exists() else []
        if training and shown and 0 < int(shown[-1]) < TRAIN_STEPS - 200:
            subprocess.run(["scancel", "--signal=TERM", training[0]], check=True)
            killed.update(job=training[0], step=int(shown[-1]))

    target = "results/codecs/bmshj2018-hyperprior/N8-M12/lmbda0.003/model.pt"
    output = run_on_slurm(project, "taskcodec-slurm-sigterm", "--retries", "1", target, timeout=600,
                          on_running=kill_training_once_it_runs)
    assert killed, "the training job finished before it could be sent SIGTERM:\n" + output[-4000:]
    attempts = [job_id for job_id, path in SUBMITTED.findall(output) if "rule_train_codec" in path]
    assert len(attempts) == 2 and attempts[0] == killed["job"], output[-6000:]
    states = job_states(attempts)
    assert states[attempts[0]] == "FAILED" and states[attempts[1]] == "COMPLETED", states
    # the retry asks for the rule's runtime times the attempt (resources.train_codec.runtime is 10 minutes)
    limits = time_limits(attempts)
    assert (limits[attempts[0]], limits[attempts[1]]) == ("10:00", "20:00"), limits
    # the resubmitted job continued from the step the first one had reached when it got SIGTERM, not from 0
    resumed = [line for line in log.read_text().replace("\r", "\n").splitlines() if line.startswith("resuming")]
    assert resumed, f"the retried training job did not resume (no 'resuming' line in {log}):\n{log.read_text()[-3000:]}"
    step = int(re.search(r"at step (\d+)", resumed[0]).group(1))
    assert killed["step"] <= step < TRAIN_STEPS
    # and ended at the same step count as an uninterrupted run, every step recorded once
    history = pd.read_csv(codec / "train_log.csv")
    assert list(history.loc[history["split"] == "train", "step"]) == list(range(1, TRAIN_STEPS + 1))
    runs = [run for run in child_runs("taskcodec-slurm-sigterm") if run.data.tags["rule"] == "train_codec"]
    assert {run.data.tags["slurm_job_id"]: run.info.status for run in runs}[attempts[1]] == "FINISHED"
