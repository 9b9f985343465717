"""Run the real Snakefile on a tiny config in a temporary working directory."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "results_dir": "results",
    "tracking": {"uri": None, "experiment": "taskcodec-tests"},
    "prepare": {
        "dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "seed": 0,
        "builtin": {"num_images": 30, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                    "object_scale": [0.3, 0.7]},
    },
    "codec": {
        "sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 8, "M": 12}], "lmbdas": [0.003, 0.03]},
        "train": {"distortion": "mse", "steps": 12, "batch_size": 4, "patch_size": 64, "lr": 0.001,
                  "aux_lr": 0.001, "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
                  "time_budget_s": None, "val_every": 6, "checkpoint_every": 6, "init": None, "seed": 0,
                  "device": "auto", "threads": 1},
    },
    "cache": {"splits": ["train", "val", "test"], "shard_size": 8, "decode_check": 4, "device": "auto"},
    "evaluate": {
        "extra_datasets": {"extra": "extra_images"},
        "save_reconstructions": 2,
        "device": "auto",
        "classical": {"jpeg": {"qualities": [10, 50, 90]}, "webp": {"qualities": [10, 50, 90]}},
        "report": {"bd_rate_method": "pchip", "grid_image": 0, "grid_target_bpp": None, "references": {}},
    },
}


class Project:
    """A working directory with params.yaml, driven through the Snakemake CLI."""

    def __init__(self, path: Path):
        self.path = path
        self.params = copy.deepcopy(TINY)
        folder = path / "extra_images"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for name, (h, w) in {"a": (70, 90), "b": (90, 70)}.items():
            low = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
            Image.fromarray(low).resize((w, h), Image.BICUBIC).save(folder / f"{name}.png")
        self.write_params()

    def write_params(self) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))

    def snakemake(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                   str(self.path), "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--cores", "2", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.path)

    def planned_jobs(self) -> dict[str, int]:
        """Rule -> job count of a dry run ({} when nothing is to be done)."""
        result = self.snakemake("--dry-run")
        assert result.returncode == 0, result.stdout + result.stderr
        output = result.stdout + result.stderr
        if "Nothing to be done" in output:
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
