"""Shared plumbing for the stage command-line modules.

Every stage module defines ``build_parser()`` and ``main(argv=None)``;
``main`` parses its arguments and does the work, so a test can call it
directly. ``run(main)`` is what ``if __name__ == "__main__"`` calls: it turns
a :class:`~taskcodec.errors.UserError` into one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from taskcodec import artifacts
from taskcodec.data.imagefolder import folder_images
from taskcodec.data.manifest import split_images
from taskcodec.data.stored import StoredImage
from taskcodec.errors import UserError

if TYPE_CHECKING:  # not imported at run time: stages without training start without loading torch
    import torch

    from taskcodec.data.sources import ImageSource
    from taskcodec.tracking import StageRun
    from taskcodec.trainer import Trained


def params_argument(parser: argparse.ArgumentParser, section: str | None, keys: Sequence[str] | None = None,
                    omit: Sequence[str] = ()) -> None:
    """Add ``--params``: the stage's own params section (dotted name ``section``) as a JSON string.

    The value is checked against that section of the schema as it is parsed
    (:func:`taskcodec.params.check_section`; ``keys``/``omit`` when the stage takes part of a
    section), so a stage run by hand rejects an unknown, mistyped or missing key with the same
    sentence as the pipeline. ``section`` None: the stage checks a composite value itself.
    """

    class CheckedSection(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            if section is not None:
                from taskcodec.params import check_section

                check_section(section, values, keys=keys, omit=omit)
            setattr(namespace, self.dest, values)

    parser.add_argument("--params", required=True, type=_json_object, action=CheckedSection,
                        help=f"this stage's section of params.yaml{f' ({section})' if section else ''}, as JSON")


def threads_argument(parser: argparse.ArgumentParser, what: str = "CPU threads for PyTorch") -> None:
    """Add the run setting ``--threads``: the cores a SLURM job was given (``SLURM_CPUS_PER_TASK``) by default,
    else 1; Snakemake passes the rule's ``{threads}``."""
    parser.add_argument("--threads", type=int, default=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")), help=what)


def run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the run settings ``--threads`` (:func:`threads_argument`) and ``--device``: how a job runs, never what
    it computes.

    They are not part of ``--params``, so changing them neither reruns a job nor changes a
    resume fingerprint.
    """
    threads_argument(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")


def memory_argument(parser: argparse.ArgumentParser) -> None:
    """Add the run setting ``--mem-mb``, the job's memory (Snakemake passes the rule's ``mem_mb``): a split that
    would take more than :data:`~taskcodec.data.sources.MEMORY_SHARE` of it decoded is read from its files."""
    from taskcodec.data.sources import MEMORY_SHARE

    # "%%": argparse formats help texts with %, so the percent sign is doubled
    parser.add_argument("--mem-mb", type=int, help="the job's memory in MB: a split that would take more than "
                        f"{MEMORY_SHARE:.0%}% of it decoded is read from its files (default: held in memory)")


def image_sources(splits: dict[str, list], maps: list[torch.Tensor | None], size: tuple[int, int],
                  args: argparse.Namespace, paddings: Sequence[int] | None = None,
                  sizes: Sequence[list[tuple[int, int]] | None] | None = None) -> list[ImageSource]:
    """Each split's images (``(image_id, path, label)`` records, with any saliency ``maps``, replicate-padded by
    ``paddings`` pixels, default none) in memory or read from their files (:func:`memory_argument`), as the log
    says; ``size`` (H, W) each, or a split's ``sizes``, each image's own
    (:func:`~taskcodec.data.manifest.own_sizes`).

    Every training process holds its own splits: each gets ``--mem-mb`` / processes, shared by the splits in
    proportion to their images, and ``--threads`` / processes, of which a streaming one gives half to its loader
    workers (:func:`~taskcodec.data.sources.loader_workers`) and keeps the rest for PyTorch (:func:`share_threads`)."""
    from taskcodec import distributed
    from taskcodec.data.sources import choose_source, loader_workers, memory_budgets

    processes = distributed.world_size()
    threads = max(1, args.threads // processes)
    budgets = memory_budgets(args.mem_mb, [len(records) for records in splits.values()], processes)
    sources = []
    for (split, records), split_maps, budget, padding, split_sizes in zip(splits.items(), maps, budgets,
                                                                          paddings or [0] * len(splits),
                                                                          sizes or [None] * len(splits)):
        source, held = choose_source([path for _, path, _ in records], *size, budget, loader_workers(threads),
                                     split_maps, padding, split_sizes)
        distributed.write(f"{split} images: {held}")
        sources.append(source)
    share_threads(threads, sources)
    return sources


def share_threads(threads: int, inputs: Sequence[Any]) -> None:
    """PyTorch keeps a training process's ``threads`` less the loader workers of those of its ``inputs`` that are
    read from their files (:class:`~taskcodec.data.sources.ImageFiles` or :class:`~taskcodec.data.sources.FileRows`
    of them), at least one."""
    import torch

    from taskcodec.data.sources import FileRows

    workers = max((getattr(item.files if isinstance(item, FileRows) else item, "workers", 0) for item in inputs),
                  default=0)
    torch.set_num_threads(max(1, threads - workers))


def apply_run_arguments(args: argparse.Namespace) -> torch.device:
    """Set PyTorch's CPU threads from :func:`run_arguments`' ``--threads``; return the ``--device`` to run on."""
    import torch

    from taskcodec.device import resolve_device

    torch.set_num_threads(args.threads)
    return resolve_device(args.device)


@contextlib.contextmanager
def training_run(rule: str, wildcards: dict[str, Any], params: dict[str, Any], inputs: dict[str, Path],
                 device: torch.device) -> Iterator[StageRun | None]:
    """The MLflow run of a training stage (:func:`taskcodec.tracking.stage_run`, tagged with the device and
    the number of training processes) on the main process; None on the other processes of a multi-process
    training (:mod:`taskcodec.distributed`), which write no outputs."""
    from taskcodec import distributed
    from taskcodec.tracking import stage_run

    if not distributed.is_main():
        yield None
        return
    with stage_run(rule, wildcards, params, inputs=inputs) as tracked:
        tracked.set_tags({"device": device, "processes": distributed.world_size()})
        yield tracked


def hyper_object(text: str) -> dict[str, int]:
    """A codec's hyperparameters: a JSON object of integers (``--hyper``)."""
    value = _json_object(text)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        raise argparse.ArgumentTypeError(f"--hyper values must be integers, got {text}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def run(main: Callable[[Sequence[str] | None], Any]) -> None:
    """Run a stage's ``main`` and exit, reporting a UserError as one sentence."""
    try:
        main(None)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def task_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--task-model``, ``--features`` and ``--saliency``: machine-side measures for a prepared split."""
    parser.add_argument("--task-model", type=Path, nargs="+", help="task model.pt files, one per task: each "
                        "task's scores of every reconstruction, in <out>/task/<task>/")
    parser.add_argument("--features", type=Path, nargs="+", help="extract_features folders, one per --task-model "
                        "in its order: feature MSE of every reconstruction against its original's")
    parser.add_argument("--saliency", type=Path, help="saliency stage folder: PSNR inside/outside salient regions")


def dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the image source: ``--manifest M --split S`` (prepared data) or ``--folder F`` (extra dataset)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--manifest", type=Path, help="prepared manifest.csv (with --split)")
    group.add_argument("--folder", type=Path, help="folder of images, evaluated at native size")
    parser.add_argument("--split", help="split of the manifest: train, val or test")


def dataset_name(args: argparse.Namespace) -> str:
    """The dataset of :func:`dataset_arguments`: the split, or the folder's name."""
    return args.split if args.manifest is not None else args.folder.name


def dataset_images(args: argparse.Namespace) -> list[tuple[str, StoredImage | Path, int]]:
    """(image id, image, label) for the images named by :func:`dataset_arguments`: a split's
    :class:`~taskcodec.data.stored.StoredImage` s, or a folder's files; read either with
    :func:`~taskcodec.data.stored.read_image`."""
    if args.manifest is not None:
        if not args.split:
            raise UserError("--manifest needs --split (train, val or test)")
        return split_images(args.manifest, args.split)
    root = args.folder
    records, seen = [], {}
    for path in folder_images(root):
        image_id = str(path.relative_to(root).with_suffix(""))
        if image_id in seen:
            raise UserError(f"{seen[image_id]} and {path} would both be named '{image_id}'; rename one of them")
        seen[image_id] = path
        records.append((image_id, path, -1))
    return records


def final_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last validation row of a per-step training history, without its bookkeeping fields."""
    return {key: value for key, value in history[-1].items() if key not in ("split", "aux_loss", "lr")}


def finish_training(tracked: StageRun, checkpoint: Path, trained: Trained, metrics: dict[str, Any],
                    logged: Sequence[str] = ()) -> None:
    """After a training stage saved ``checkpoint``: write ``metrics.json`` beside it, drop its ``resume.pt``,
    and log the run.

    The stage run gets the training curves (a per-step log's rows by split, as
    ``train/…`` and ``val/…``, and its final validation as ``final_val_…``; a
    per-epoch log's rows as they are), the steps and seconds trained, the
    ``logged`` keys of ``metrics`` (those not None), ``train_log.csv``
    (expected beside the checkpoint), ``metrics.json`` and the checkpoint's
    path and hash.
    """
    out_dir = checkpoint.parent
    artifacts.write_json(out_dir / "metrics.json", metrics)
    (out_dir / "resume.pt").unlink(missing_ok=True)
    values = {"steps": trained.step, "train_seconds": trained.elapsed_s,
              **{key: metrics[key] for key in logged if metrics[key] is not None}}
    if all("split" in row for row in trained.history):
        for split in ("train", "val"):
            tracked.log_history([row for row in trained.history if row["split"] == split], f"{split}/")
        final = final_validation(trained.history)
        values.update({f"final_val_{key}": value for key, value in final.items() if key != "step"})
    else:
        tracked.log_history(trained.history, "")
    tracked.log_metrics(values)
    tracked.log_artifact(out_dir / "train_log.csv")
    tracked.log_artifact(out_dir / "metrics.json")
    tracked.log_file_reference("checkpoint", checkpoint)
