"""Run the real Snakefile on a tiny config in a temporary working directory."""

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
# `dvc init` of the tests' repositories sends no usage report (each left a file in /tmp); the project's
# .dvc/config turns them off after it
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# the stages with run settings in params.yaml's `resources` section; the training stages also have `tasks`
STAGES = ("prepare", "train_codec", "finetune_codec", "cache_latents", "evaluate_codec", "evaluate_classical",
          "train_task", "extract_features", "train_latent_classifier", "train_joint_classifier", "train_simclr")
PROCESSES = {"train_codec": {"tasks": 1}, "finetune_codec": {"tasks": 1}}

TINY = {
    "results_dir": "results",
    "tracking": {"uri": None, "experiment": "taskcodec-tests"},
    "resources": {"device": "auto",
                  **{stage: {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0, **PROCESSES.get(stage, {})}
                     for stage in STAGES}},
    "prepare": {
        "dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "seed": 0, "on_bad_image": "stop",
        "builtin": {"num_images": 30, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                    "object_scale": [0.3, 0.7]},
    },
    "codec": {
        "sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 8, "M": 12}], "lmbdas": [0.003, 0.03]},
        "train": {"distortion": "mse", "steps": 12, "batch_size": 4, "patch_size": 64, "lr": 0.001,
                  "aux_lr": 0.001, "lr_warmup": 0.1, "lr_decay": "cosine", "lr_drop_at": [0.8], "lr_gamma": 0.5,
                  "clip_max_norm": 1.0, "spike_guard": None, "ema_decay": 0.9, "quantization": "ste",
                  "saliency_floor": None, "time_budget_s": None, "val_every": 6, "checkpoint_every": 6, "init": None,
                  "seed": 0},
    },
    "scalable": {
        "enabled": True,
        "task": "classification",
        "sweep": {"models": [{"arch": "scalable-hyperprior", "N": 8, "M_base": 4, "M_enh": 8}], "lmbdas": [0.01],
                  "task_lmbdas": [1.0]},
        "train": {"distortion": "mse", "steps": 8, "batch_size": 4, "patch_size": 64, "lr": 0.001, "aux_lr": 0.001,
                  "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
                  "spike_guard": None,
                  "ema_decay": None, "quantization": "ste", "saliency_floor": None, "time_budget_s": None,
                  "val_every": 4, "checkpoint_every": 4, "init": None, "seed": 0},
    },
    "simclr": {"model": "resnet-small", "widths": [8, 16], "blocks": [1, 1], "weights": None, "normalize": False,
               "projection_dim": 8, "crop_size": 16, "min_crop_scale": 0.3, "jitter_strength": 0.5, "temperature": 0.2,
               "steps": 4, "batch_size": 8, "lr": 0.003, "weight_decay": 1e-6, "lr_warmup": 0.0, "time_budget_s": None,
               "val_every": 2, "checkpoint_every": 2, "seed": 0},
    "variable_rate": {
        "enabled": True,
        "sweep": {"models": [{"arch": "pyramid", "N": 8, "M": 4, "attention": 1, "simclr": 1}], "lmbdas": [0.003, 0.03],
                  "perceptual_weight": 0.1},
        "train": {"distortion": "mse", "steps": 8, "batch_size": 4, "patch_size": 64, "lr": 0.001, "aux_lr": 0.001,
                  "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
                  "spike_guard": None,
                  "ema_decay": None, "quantization": "ste", "saliency_floor": None, "time_budget_s": None,
                  "val_every": 4, "checkpoint_every": 4, "init": None, "seed": 0},
    },
    "saliency": {"method": "spectral-residual", "working_width": 64, "blur_sigma": 2.5, "grid_images": 4},
    "tasks": {"classification": {
        "model": {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 2, "weights": None},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005,
                  "crop_padding": 4, "time_budget_s": None, "checkpoint_every": 1, "seed": 0},
        "features": {"layer": "stage2", "batch_size": 16},
    }},
    "finetune": {
        "tasks": ["classification"],
        "sweep": {"lmbdas": [0.003], "taus": [1.0]},
        "train": {"steps": 4, "batch_size": 4, "lr": 0.0001, "aux_lr": 0.001, "clip_max_norm": 1.0, "task_weight": 1.0, "crop_padding": 2,
                  "saliency_floor": 0.2, "time_budget_s": None, "val_every": 2, "checkpoint_every": 2, "seed": 0,
                  "lr_drop_at": [0.8], "lr_gamma": 0.3},
    },
    "latent_classifier": {
        "model": {"arch": "cresnet", "width": 4, "blocks": [1, 1, 1]},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.005,
                  "crop_padding": 1, "time_budget_s": None, "checkpoint_every": 1, "seed": 0},
        "joint": {"enabled": True, "epochs": 1, "batch_size": 8, "lr": 0.0001, "aux_lr": 0.001, "rate_weight": 1.0,
                  "crop_padding": 4, "clip_max_norm": 1.0, "time_budget_s": None, "checkpoint_every": 1, "seed": 0},
    },
    "cache": {"splits": ["train", "val", "test"], "shard_size": 8, "decode_check": 4},
    "evaluate": {
        "extra_datasets": {"extra": "extra_images"},
        "save_reconstructions": 2,
        "saliency_threshold": 0.5,
        "niqe": True,  # every image is under NIQE's 96 pixels: NaN, without loading pyiqa
        "classical": {"jpeg": {"qualities": [10, 50, 90]}, "webp": {"qualities": [10, 50, 90]}},
        "report": {"bd_rate_method": "pchip", "grid_image": 0, "grid_target_bpp": None, "references": {}},
    },
}


class Project:
    """A working directory with params.yaml, driven through the Snakemake CLI."""

    def __init__(self, path: Path):
        self.path = path
        self.params = copy.deepcopy(TINY)
        write_extra_images(path / "extra_images", seed=0)
        self.write_params()

    def write_params(self) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))

    def snakemake(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                   str(self.path), "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--cores", "2", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.path)

    def dry_run(self, *args: str) -> str:
        """The output of a successful dry run."""
        result = self.snakemake("--dry-run", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def planned_jobs(self, *args: str) -> dict[str, int]:
        """Rule -> job count of a dry run ({} when nothing is to be done)."""
        return job_stats(self.dry_run(*args))


def job_stats(output: str) -> dict[str, int]:
    """Rule -> job count of the "Job stats" table in Snakemake's output, without `all` ({} if there is none)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = dict((rule, int(count)) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    jobs.pop("all", None)
    return jobs


@pytest.fixture(scope="package")
def pipeline_run(tmp_path_factory):
    """The tiny pipeline, run once to completion; shared by the workflow tests (which run in file order)."""
    project = Project(tmp_path_factory.mktemp("pipeline"))
    result = project.snakemake()
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return project, result


@pytest.fixture(scope="module")
def tiny_config():
    """A fresh copy of the tiny config (one per test module)."""
    return copy.deepcopy(TINY)


def write_extra_images(folder: Path, seed: int) -> None:
    """Two small images of different shapes (an extra evaluation dataset)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, (h, w) in {"a": (70, 90), "b": (90, 70)}.items():
        low = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
        Image.fromarray(low).resize((w, h), Image.BICUBIC).save(folder / f"{name}.png")


def checked(repo: Path, *command: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def make_git_dvc_project(repo: Path, params: dict) -> Path:
    """The project's files (what git would commit, no run) in a fresh, committed git + DVC repository at ``repo``, with
    ``params`` and an extra dataset ``data/extra`` versioned with ``dvc add``; ``.venv`` links to the project's."""
    listed = checked(ROOT, "git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    for name in listed:
        # not a run's records (dvc.lock, results/): a fresh clone has none
        if (ROOT / name).is_file() and not name.startswith((".dvc/", "results/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    params["evaluate"]["extra_datasets"] = {"extra": "data/extra"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_extra_images(repo / "data" / "extra", seed=0)
    dvc = str(ROOT / ".venv" / "bin" / "dvc")
    checked(repo, "git", "init", "-q")
    checked(repo, "git", "config", "user.email", "tests@taskcodec")
    checked(repo, "git", "config", "user.name", "taskcodec tests")
    checked(repo, dvc, "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the project's local default remote
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    checked(repo, dvc, "add", "-q", "data/extra")
    checked(repo, "git", "add", "-A")
    checked(repo, "git", "commit", "-q", "-m", "tiny project")
    return repo


@pytest.fixture(scope="session")
def git_dvc_project():
    """:func:`make_git_dvc_project`, for tests that need the project under git and DVC."""
    return make_git_dvc_project


@pytest.fixture(scope="session")
def extra_images():
    """:func:`write_extra_images`."""
    return write_extra_images


@pytest.fixture(scope="session")
def job_counts():
    """:func:`job_stats`."""
    return job_stats


#: what scripts/slurm/start.sh starts and the SLURM tests call
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


def cannot_start_slurm() -> str | None:
    """Why scripts/slurm/start.sh cannot run here, or None."""
    if os.geteuid() != 0:
        return "scripts/slurm/start.sh needs root (it installs Debian's Slurm and starts its daemons)"
    missing = [tool for tool in SLURM_TOOLS if not shutil.which(tool, path=f"/usr/sbin:/usr/bin:{os.environ['PATH']}")]
    if missing and not shutil.which("apt-get"):
        return f"Slurm is not installed ({', '.join(missing)} missing) and there is no apt-get to install it"
    return None


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM for a test module (test_slurm.py, test_slurm_preflight.py); stopped afterwards
    if this fixture started it (start.sh only waits for the node when its daemons already run)."""
    reason = cannot_start_slurm()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so the SLURM tests must run, but {reason}")
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    result = subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "start.sh")], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip(), f"(start.sh took {time.monotonic() - started:.1f} s)")
    try:
        yield
    finally:
        if "already running" not in result.stdout:  # leave a cluster someone else started alone
            subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "stop.sh")], timeout=300)
