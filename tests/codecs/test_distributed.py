"""train_codec in two gloo processes under torchrun (DDP) against one process with the same global batch.

The two-process training is stopped with SIGTERM after a checkpoint (what SLURM sends to every process of
a job) and run again: it resumes, ends at the same step count, its processes hold identical weights, its
loss curve follows the one-process curve, and its model.pt loads and decodes with the single-process code.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from taskcodec import distributed
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.data.manifest import split_images
from taskcodec.data.tensors import images_to_tensor, to_float
from taskcodec.errors import UserError
from taskcodec.stages import prepare, train_codec

STEPS = 120
TRAIN = {
    "distortion": "mse", "steps": STEPS, "batch_size": 4, "patch_size": 64, "lr": 2e-3, "aux_lr": 1e-3,
    "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
    "spike_guard": None,
    "ema_decay": None, "quantization": "noise", "time_budget_s": None, "val_every": 60, "checkpoint_every": 30,
    "init": None, "seed": 0, "saliency_floor": None,
}
#: mean training loss of the last steps: two processes against one (measured: within 6 %; seeds of one process
#: differ by up to 4 %; the loss falls from about 150 to 24)
LAST, TOLERANCE = 40, 0.15
SIGTERM_AFTER = 35  # steps, after the checkpoint at step 30

# train_codec under torchrun; every process prints "rank R step N" after drawing the batch of step N and
# "rank R weights <sha256>" of its weights after training, each line in one write to the pipe the processes share
# (with PYTHONUNBUFFERED set, as in many CI images, a print writes its text and its newline apart and another process's
# line lands between them)
CHILD = """
import hashlib, os, sys
sys.argv[0] = "train_codec"
from taskcodec import distributed
from taskcodec.codecs import training
from taskcodec.stages import train_codec

batch, optimize = training.CodecObjective.batch, training.optimize

def announcing(self, step):
    result = batch(self, step)
    os.write(1, f"rank {distributed.rank()} step {step + 1}\\n".encode())
    return result

def reporting(model, *args, **kwargs):
    trained = optimize(model, *args, **kwargs)
    weights = b"".join(value.numpy().tobytes() for value in model.state_dict().values())
    os.write(1, f"rank {distributed.rank()} weights {hashlib.sha256(weights).hexdigest()}\\n".encode())
    return trained

training.CodecObjective.batch, training.optimize = announcing, reporting
train_codec.run(train_codec.main)
"""


def stage_argv(root: Path, out: Path, threads: int) -> list[str]:
    return ["--params", json.dumps(TRAIN), "--threads", str(threads), "--device", "cpu",
            "--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}', "--lmbda", "0.01",
            "--manifest", str(root / "prepared" / "manifest.csv"), "--out", str(out / "model.pt")]


def torchrun(root: Path, out: Path, stop_after: int | None = None) -> tuple[int, str]:
    """Run the stage in two processes as the rules do; with ``stop_after``, send SIGTERM to all of them (as
    SLURM does) once process 0 has drawn that step's batch. Returns the exit status and the output."""
    child = root / "child.py"
    child.write_text(CHILD)
    command = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nnodes", "1",
               "--nproc-per-node", "2", "--log-dir", str(root / "torchrun"),  # not a new folder in /tmp
               str(child), *stage_argv(root, out, 2)]  # a thread each
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines = []
    for line in process.stdout:  # the processes' prints and progress bars interleave: match the ends of lines
        lines.append(line)
        step = re.search(r"rank 0 step (\d+)$", line.rstrip())
        if stop_after is not None and step and int(step.group(1)) >= stop_after:
            os.killpg(process.pid, signal.SIGTERM)
            break
    lines.append(process.communicate(timeout=300)[0])
    return process.returncode, "".join(lines)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    params = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 30, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    return root


@pytest.fixture(scope="module")
def interrupted(root):
    """The two-process training stopped by SIGTERM: (exit status, output, its resume checkpoint)."""
    status, output = torchrun(root, root / "two", stop_after=SIGTERM_AFTER)
    return status, output, torch.load(root / "two" / "resume.pt", weights_only=True)


@pytest.fixture(scope="module")
def single(root, interrupted):
    """One process with the same global batch, started beside a copy of the two processes' resume checkpoint:
    (its output folder, what it printed)."""
    out = root / "one"
    out.mkdir()
    shutil.copy(root / "two" / "resume.pt", out / "resume.pt")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train_codec.main(stage_argv(root, out, 1))  # the CPU time of the two
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def resumed(root, interrupted):
    """The two-process training run again after the SIGTERM: (exit status, output)."""
    return torchrun(root, root / "two")


def train_losses(folder: Path) -> pd.Series:
    log = pd.read_csv(folder / "train_log.csv")
    return log[log["split"] == "train"].set_index("step")["loss"]


def test_sigterm_stops_both_processes_at_one_step_with_one_checkpoint(root, interrupted):
    status, output, checkpoint = interrupted
    assert status != 0, output
    assert [path.name for path in (root / "two").iterdir()] == ["resume.pt"], output  # no model, metrics or log
    step = checkpoint["progress"]["step"]
    assert SIGTERM_AFTER <= step < STEPS
    assert output.count(f"terminated: saved {root / 'two' / 'resume.pt'} at step {step}") == 1  # process 0 only
    rngs = checkpoint["rng_states"]  # every process's own generator (seed + rank)
    assert len(rngs) == 2 and not torch.equal(rngs[0]["generator"], rngs[1]["generator"])


def test_a_checkpoint_of_another_process_count_starts_afresh(single):
    out, printed = single
    assert "2 training processes wrote it, this run has 1; training from the start" in printed
    assert json.loads((out / "metrics.json").read_text())["steps"] == STEPS
    assert list(train_losses(out).index) == list(range(1, STEPS + 1))


def test_the_rerun_resumes_and_ends_at_the_same_step_count_with_identical_processes(root, interrupted, resumed):
    status, output = resumed
    assert status == 0, output[-3000:]
    step = interrupted[2]["progress"]["step"]
    assert output.count(f"resuming {root / 'two' / 'resume.pt'} at step {step}") == 1, output[-3000:]  # process 0
    assert min(int(n) for n in re.findall(r"rank 0 step (\d+)\n", output)) == step + 1
    weights = dict(re.findall(r"rank (\d) weights ([0-9a-f]{64})", output))
    assert set(weights) == {"0", "1"} and weights["0"] == weights["1"], output[-3000:]  # DDP kept them equal
    metrics = json.loads((root / "two" / "metrics.json").read_text())
    assert metrics["steps"] == STEPS and metrics["processes"] == 2 and metrics["val"]["step"] == STEPS
    assert list(train_losses(root / "two").index) == list(range(1, STEPS + 1))
    assert not (root / "two" / "resume.pt").exists()


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(root, single, resumed):
    one, two = train_losses(single[0]), train_losses(root / "two")
    assert len(one) == len(two) == STEPS
    assert one.iloc[:10].mean() > 4 * one.iloc[-LAST:].mean() and two.iloc[:10].mean() > 4 * two.iloc[-LAST:].mean()
    assert two.iloc[-LAST:].mean() == pytest.approx(one.iloc[-LAST:].mean(), rel=TOLERANCE)


def test_the_two_process_model_loads_and_decodes_with_the_single_process_code(root, resumed):
    model, meta = load_codec(root / "two" / "model.pt")
    assert meta["params"] == TRAIN and meta["metrics"]["processes"] == 2
    records = split_images(root / "prepared" / "manifest.csv", "val")
    x = to_float(images_to_tensor([path for _, path, _ in records[:2]]), torch.device("cpu"))
    bitstreams = encode_images(model, x)
    decoded = decode_images(model, bitstreams).x_hat
    with torch.no_grad():
        for image, reconstruction in zip(x.split(1), decoded.split(1)):  # as the eval-mode forward predicts
            expected = model(pad(image, model.pad_multiple))["x_hat"][..., :64, :64]
            assert (reconstruction - expected).abs().max() < 1e-3
    assert all(len(b["main"].to_bytes()) > 0 for b in bitstreams)


def test_a_batch_the_processes_cannot_share_is_a_user_error(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(UserError, match="codec.train.batch_size is 4, which 3 training processes cannot share"):
        distributed.share(4, "codec.train.batch_size")
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.share(4, "codec.train.batch_size") == 2
