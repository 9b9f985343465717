"""Record a finished pipeline run in DVC, as ``dvc repro`` would, so that DVC's commands keep its outputs.

DVC knows only the runs it made itself. After a run of ``bash scripts/pipeline.sh`` (or of Snakemake),
``dvc.lock`` would still name the outputs of an older run, or of none, and ``dvc exp run``, ``dvc checkout`` and
``dvc exp apply`` would put those back over the new ones, deleting what no DVC cache holds. So a run that made
the whole workflow of ``params.yaml`` into ``results/`` (the folder of ``dvc.yaml``'s outs), in a DVC
repository, ends with ``dvc commit --force pipeline``: ``dvc.lock`` then names its outputs and params, and the
DVC cache holds them. Not when DVC runs the pipeline (``dvc repro`` and ``dvc exp run`` record it themselves),
not in the checkout of :mod:`taskcodec.reproduce`, not for a run of some targets, other params or another
results folder. A run with nothing to do calls no Snakemake hook and records nothing.

Every whole-workflow run into ``results/`` of a DVC repository, DVC's own included, first creates (empty) the
outs that its params leave without a job (:func:`create_absent_outs`: ``tasks: {}``, no scalable
codecs, no joint classifiers...), or ``dvc repro`` and ``dvc commit`` would stop at the missing folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from taskcodec import tracking

STAGE = "pipeline"  # dvc.yaml's stage
RESULTS = Path("results")  # the folder of its outs
RUN_SETTINGS = ("resources", "tracking")  # params.yaml sections that DVC does not track


def _science(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key not in RUN_SETTINGS}


def should_record(config: dict[str, Any], whole_workflow: bool, folder: Path) -> bool:
    """Whether this run is what ``dvc repro`` would run in ``folder``, and no DVC command runs it."""
    if not whole_workflow or os.environ.get("DVC_STAGE") or os.environ.get(tracking.REPRODUCES_ENV):
        return False
    if not ((folder / ".dvc").is_dir() and (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file()):
        return False
    params = yaml.safe_load((folder / "params.yaml").read_text())
    return Path(config["results_dir"]) == RESULTS and _science(params) == _science(config)


def create_absent_outs(config: dict[str, Any], whole_workflow: bool, folder: Path = Path(".")) -> list[Path]:
    """Create, empty, the folders of ``dvc.yaml``'s outs that a whole-workflow run into ``results/`` of a DVC
    repository in ``folder`` left absent (a branch its params switch off); returns those created."""
    if not whole_workflow or Path(config["results_dir"]) != RESULTS or not (folder / ".dvc").is_dir():
        return []
    outs = yaml.safe_load((folder / "dvc.yaml").read_text())["stages"][STAGE]["outs"]
    created = []
    for out in outs:
        path = folder / (next(iter(out)) if isinstance(out, dict) else out)
        if not path.exists():
            path.mkdir(parents=True)
            created.append(path)
    return created


def record(config: dict[str, Any], whole_workflow: bool, folder: Path = Path(".")) -> None:
    """``dvc commit --force pipeline`` in ``folder`` if :func:`should_record`; says so, or why it failed."""
    if not should_record(config, whole_workflow, folder):
        return
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "commit", "--force", STAGE], cwd=folder, capture_output=True,
                            text=True)
    if result.returncode == 0:
        print("taskcodec: recorded this run in DVC (dvc.lock and the DVC cache), as `dvc repro` would")
        return
    said = " ".join((result.stderr or result.stdout).split())[-400:]
    print(f"taskcodec: warning: DVC could not record this run ({said}), so `dvc exp run`, `dvc checkout` and "
          "`dvc exp apply` would replace its outputs with those of dvc.lock; fix that and run `dvc commit pipeline`")
