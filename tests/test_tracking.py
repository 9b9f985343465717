import hashlib
import subprocess
import sys
import textwrap
import warnings

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


MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
lustre@tcp:/scratch /scratch lustre rw 0 0
/dev/vdb1 /home/user/local\\040disk ext4 rw 0 0
"""


@pytest.mark.parametrize("folder, kind", [
    ("/home/user/project", "nfs4"),
    ("/scratch/runs", "lustre"),
    ("/home/user/local disk/runs", "ext4"),  # a mount point with a space, inside the NFS mount
    ("/home", "nfs4"),
    ("/homework", "ext4"),  # not inside /home
    ("/tmp", "ext4"),
])
def test_mount_type_is_that_of_the_innermost_mount(folder, kind):
    assert tracking.mount_type(folder, MOUNTS) == kind


def test_filesystem_type_of_a_file_not_created_yet(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda1 / ext4 rw 0 0\nlustre@tcp:/scratch {tmp_path} lustre rw 0 0\n")
    assert tracking.filesystem_type(tmp_path / "new" / "folder" / "mlflow.db", mounts) == "lustre"


def test_sqlite_path_of_tracking_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.sqlite_path("sqlite:////abs/mlflow.db") == tracking.Path("/abs/mlflow.db")
    assert tracking.sqlite_path("sqlite:///runs/mlflow.db?timeout=30") == tmp_path / "runs" / "mlflow.db"
    assert tracking.sqlite_path("http://tracking:5000") is None


def test_network_sqlite_warning_names_the_filesystem_and_the_fix(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda1 / ext4 rw 0 0\nserver:/x {tmp_path} nfs rw 0 0\n")
    message = tracking.network_sqlite_warning(f"sqlite:///{tmp_path / 'mlflow.db'}", mounts)
    assert "network filesystem (nfs)" in message and "mlflow server" in message and "MLFLOW_TRACKING_URI" in message
    local = tmp_path / "local_mounts"
    local.write_text("/dev/vda1 / ext4 rw 0 0\n")
    assert tracking.network_sqlite_warning(f"sqlite:///{tmp_path / 'mlflow.db'}", local) is None
    assert tracking.network_sqlite_warning("http://tracking:5000", mounts) is None


def test_submits_to_slurm_from_the_command_line_or_the_profile(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("executor: slurm\njobs: 10\n")
    local = tmp_path / "local"
    local.mkdir()
    (local / "config.yaml").write_text("cores: all\n")
    assert tracking.submits_to_slurm(["--profile", str(profile)])
    assert tracking.submits_to_slurm([f"--profile={profile}", "--dry-run"])
    assert tracking.submits_to_slurm(["--profile", str(local), "--executor", "slurm"])
    assert not tracking.submits_to_slurm(["--profile", str(local), "--cores", "2"])
    assert not tracking.submits_to_slurm(["--profile", str(tmp_path / "missing")])


def test_slurm_job_is_tagged_and_warned_about_sqlite_on_nfs(client, mlflow_store, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "slurm-tags")
    # the store's folder is mounted over NFS, as the mount table tells
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda1 / ext4 rw 0 0\nserver:/x {tracking.sqlite_path(mlflow_store).parent} nfs rw 0 0\n")
    monkeypatch.setattr(tracking, "MOUNTS", mounts)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with tracking.stage_run("prepare", {}, {}) as outside:
        pass
    assert "network filesystem" not in capsys.readouterr().err  # not under SLURM: nothing to warn about
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with pytest.warns(RuntimeWarning, match="network filesystem"):
        with tracking.stage_run("prepare", {}, {}) as inside:
            pass
    assert "MLFLOW_TRACKING_URI" in capsys.readouterr().err
    assert client.get_run(inside.run_id).data.tags[tracking.SLURM_TAG] == "4242"
    assert tracking.SLURM_TAG not in client.get_run(outside.run_id).data.tags


def test_pipeline_run_submitting_to_slurm_warns_about_sqlite_on_nfs(mlflow_store, monkeypatch, tmp_path):
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "slurm-tags")
    monkeypatch.setattr(tracking, "network_sqlite_warning", lambda uri, mounts=None: f"on nfs: {uri}")
    with pytest.warns(RuntimeWarning, match="on nfs"):
        tracking.start_pipeline_run(PARAMS, ["--executor", "slurm"])
    tracking.end_pipeline_run("FINISHED")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracking.start_pipeline_run(PARAMS, ["--cores", "2"])  # a local run: SQLite on any filesystem is fine
    tracking.end_pipeline_run("FINISHED")
