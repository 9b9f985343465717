import hashlib
import subprocess
import sys
import textwrap

import mlflow
import pytest

from taskcodec import tracking

PARAMS = {"tracking": {"uri": None, "experiment": "tracking-tests"}, "codec": {"train": {"lr": 0.001, "steps": 3}}}


@pytest.fixture
def client(mlflow_store):
    mlflow.set_tracking_uri(mlflow_store)
    return mlflow.MlflowClient()


def test_flatten_nested_params():
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {}}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "x", "e": "{}"}


def test_stage_run_under_a_pipeline_run(client, monkeypatch, tmp_path):
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "tracking-tests")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)  # restored after the test
    parent = tracking.start_pipeline_run(PARAMS, ["--cores", "2"])
    try:
        checkpoint = tmp_path / "model.pt"
        checkpoint.write_bytes(b"weights")
        with tracking.stage_run("train_codec", {"arch": "x", "lmbda": 0.01}, {"lr": 0.001},
                                inputs={"manifest": checkpoint}) as run:
            run.log_history([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "psnr": float("nan")}], "train/")
            run.log_metrics({"psnr": 30.0})
            run.log_file_reference("checkpoint", checkpoint)
    finally:
        tracking.end_pipeline_run("FINISHED")
    child = client.get_run(run.run_id)
    assert child.info.run_name == "train_codec[arch=x,lmbda=0.01]"
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.tags["rule"] == "train_codec" and "git_commit" in child.data.tags
    assert child.data.tags["input.manifest.md5"] == "63f4f1e9b725370f459720575cd5f953"  # md5(b"weights")
    assert child.data.tags["checkpoint.sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert child.data.params["lr"] == "0.001" and child.data.params["wildcard.arch"] == "x"
    assert [m.value for m in client.get_metric_history(run.run_id, "train/loss")] == [2.0, 1.5]
    assert client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).data.params["codec.train.lr"] == "0.001"


def test_two_stages_logging_at_once_lose_nothing(client, mlflow_store, monkeypatch):
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)  # restored after the test
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "concurrency")
    # the store exists before the jobs start (the pipeline's onstart creates it)
    tracking.start_pipeline_run(PARAMS, [])
    script = textwrap.dedent("""
        import sys
        from taskcodec import tracking
        with tracking.stage_run("stage", {"job": sys.argv[1]}, {}) as run:
            for step in range(60):
                run.log_metrics({"value": step}, step=step)
        print(run.run_id)
    """)
    jobs = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True)
            for name in ("a", "b")]
    run_ids = [job.communicate(timeout=300)[0].strip().splitlines()[-1] for job in jobs]
    tracking.end_pipeline_run("FINISHED")
    assert all(job.returncode == 0 for job in jobs)
    for run_id in run_ids:
        assert [m.step for m in client.get_metric_history(run_id, "value")] == list(range(60))
