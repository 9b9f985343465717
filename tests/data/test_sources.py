"""Training data held in memory or read from the files: the same tensors, the choice by the job's memory, and a
streaming job whose memory does not grow with the number of images."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from taskcodec.data.sources import (FileRows, ImageFiles, InMemory, WindowSampler, choose_source, image_rows,
                                    loader_workers, memory_budgets, window_batches, with_maps)
from taskcodec.errors import UserError


def write_images(folder, count, size, seed=0):
    """``count`` random RGB PNGs of ``size``² in ``folder``: their paths and the uint8 tensor N×3×H×W."""
    folder.mkdir(parents=True, exist_ok=True)
    images = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (count, 3, size, size), dtype=np.uint8))
    paths = [folder / f"{i:05d}.png" for i in range(count)]
    for path, image in zip(paths, images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return paths, images


@pytest.mark.parametrize("workers", [0, 2])
def test_files_give_the_windows_and_chunks_of_the_images_in_memory(tmp_path, workers):
    paths, images = write_images(tmp_path, 7, 20)
    maps = images[:, :1].flip(-1)  # any aligned map
    memory = InMemory(with_maps(images, maps), padding=3)
    files = ImageFiles(paths, 20, 20, maps, padding=3, workers=workers)
    assert (files.count, files.channels, files.height, files.width) == (7, 4, 26, 26)
    batches = [window_batches(source, WindowSampler(7, 5, 26, 26, 20, 3, torch.Generator().manual_seed(4)))
               for source in (memory, files)]
    for _ in range(6):
        (window, expected), (same_window, got) = next(batches[0]), next(batches[1])
        assert torch.equal(got, expected) and same_window.point == window.point
        assert torch.equal(same_window.draws.index, window.draws.index)
    chunks = list(files.chunks(3))
    assert [rows for rows, _ in chunks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert torch.equal(torch.cat([chunk for _, chunk in chunks]), with_maps(images, maps))  # as stored, unpadded
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(chunks, memory.chunks(3)))


@pytest.mark.parametrize("weights", [None, (1.0, 3.0, 5.0)])
def test_the_sampler_states_where_its_generator_is_after_each_batch(weights):
    """What a training that read ahead puts back before a checkpoint: the next batch is then drawn again."""
    generator = torch.Generator().manual_seed(1)
    sampler = iter(WindowSampler(10, 4, 32, 32, 16, 3, generator, weights))
    [first], [second] = next(sampler), next(sampler)
    next(sampler)  # read ahead
    generator.set_state(first.state)
    [again] = next(sampler)
    assert again.point == second.point and torch.equal(again.state, second.state)
    for name in ("index", "tops", "lefts", "flips"):
        assert torch.equal(getattr(again.draws, name), getattr(second.draws, name))


def test_operating_points_are_drawn_in_proportion_to_their_weights():
    def counts(weights):
        sampler = iter(WindowSampler(10, 2, 32, 32, 16, 3, torch.Generator().manual_seed(2), weights))
        points = [next(sampler)[0].point for _ in range(900)]
        return [points.count(k) for k in range(3)]

    assert counts((0.0, 1.0, 0.0)) == [0, 900, 0]
    low, middle, high = counts((1.0, 3.0, 5.0))  # the pyramid's (2k + 1): expected 100, 300, 500
    assert 60 < low < 140 and 240 < middle < 360 and 430 < high < 570
    assert min(counts(None)) > 240  # uniform without weights
    with pytest.raises(ValueError, match="3 operating points need as many non-negative weights"):
        WindowSampler(10, 2, 32, 32, 16, 3, torch.Generator(), (1.0, 2.0))


def test_a_split_in_memory_only_when_it_fits_the_budget(tmp_path):
    paths, images = write_images(tmp_path, 4, 16)
    held, said = choose_source(paths, 16, 16, budget_bytes=4 * 3 * 16 * 16, workers=3)
    assert isinstance(held, InMemory) and torch.equal(held.images, images) and "held decoded in memory" in said
    read, said = choose_source(paths, 16, 16, budget_bytes=4 * 3 * 16 * 16 - 1, workers=3)
    assert isinstance(read, ImageFiles) and read.workers == 3 and "read from their files by 3 loader workers" in said
    assert isinstance(choose_source(paths, 16, 16, None, 1)[0], InMemory)  # no budget: no limit
    assert [loader_workers(threads) for threads in (1, 2, 8)] == [0, 1, 4]
    assert "read from their files by the training process" in choose_source(paths, 16, 16, 0, 0)[1]
    # padded for translations, a split is held once, padding included in what it takes
    padded, _ = choose_source(paths, 16, 16, budget_bytes=4 * 3 * 20 * 20, workers=3, padding=2)
    assert isinstance(padded, InMemory) and torch.equal(padded.images, images) and padded.padded.shape[-1] == 20
    assert padded.images.untyped_storage().data_ptr() == padded.padded.untyped_storage().data_ptr()
    assert isinstance(choose_source(paths, 16, 16, 4 * 3 * 20 * 20 - 1, 3, padding=2)[0], ImageFiles)


def test_rows_of_the_files_index_as_the_tensor_in_memory(tmp_path):
    paths, images = write_images(tmp_path, 5, 12)
    rows = FileRows(ImageFiles(paths, 12, 12))
    assert rows.shape == images.shape and len(rows) == 5
    for index in (torch.tensor([4, 0, 4, 2]), slice(1, 4), slice(3, 9)):
        assert torch.equal(rows[index], images[index])


def test_rows_announced_ahead_are_decoded_by_the_loader_workers_in_that_order(tmp_path):
    paths, images = write_images(tmp_path, 6, 12)
    rows = FileRows(ImageFiles(paths, 12, 12, workers=2))
    rows.expect([[3, 1], [0, 5, 5], [2, 4]])
    for index in ([3, 1], [0, 5, 5]):
        assert torch.equal(rows[torch.tensor(index)], images[index])
    assert rows.prefetched == 2 and list(rows.expected) == [[2, 4]]
    assert torch.equal(rows[1:3], images[1:3]) and rows.prefetched == 2  # not the next announced: decoded here
    rows.expect([[5, 0]])  # a new epoch replaces what was left of the last
    assert torch.equal(rows[torch.tensor([5, 0])], images[[5, 0]]) and rows.prefetched == 3
    in_process = FileRows(ImageFiles(paths, 12, 12))  # no workers: nothing is read ahead
    in_process.expect([[3, 1]])
    assert torch.equal(in_process[torch.tensor([3, 1])], images[[3, 1]]) and in_process.prefetched == 0


def test_the_memory_of_a_job_is_shared_by_its_processes_and_splits_by_size():
    quarter = 2**20 // 4  # bytes: a quarter of 1 MB
    assert memory_budgets(4, [300, 100]) == [3 * quarter, quarter]
    assert memory_budgets(4, [300, 100], processes=2) == [3 * quarter // 2, quarter // 2]
    assert memory_budgets(None, [300, 100]) == [None, None]


def test_a_split_whose_first_file_is_not_an_image_is_one_sentence_that_names_it(tmp_path):
    paths, _ = write_images(tmp_path, 2, 16)
    paths[0].write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"00000\.png"):
        image_rows(paths, budget_bytes=0)


def test_a_file_of_another_size_is_named(tmp_path):
    paths, _ = write_images(tmp_path, 2, 16)
    Image.new("RGB", (17, 16)).save(paths[1])
    with pytest.raises(UserError, match=r"01\.png is 17×16, not the split's 16×16"):
        ImageFiles(paths, 16, 16)[1]


CHILD = """
import json, re, sys
from pathlib import Path
import torch
from taskcodec.codecs.registry import build_codec
from taskcodec.codecs.training import train_codec
from taskcodec.data.sources import choose_source

folder, count, budget = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
paths = sorted(folder.glob("*.png"))
train, _ = choose_source(paths[:count], 256, 256, budget, 1)
val, _ = choose_source(paths[-4:], 256, 256, None, 1)
params = {"distortion": "mse", "steps": 6, "batch_size": 2, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
          "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
          "spike_guard": None,
          "ema_decay": None, "quantization": "noise", "time_budget_s": None, "val_every": 6, "checkpoint_every": 3,
          "init": None, "seed": 0, "saliency_floor": None}
train_codec(build_codec("bmshj2018-hyperprior", {"N": 8, "M": 8}), 0.01, params, train, val, torch.device("cpu"),
            folder.parent / f"resume-{count}-{budget}.pt", folder.parent / f"log-{count}-{budget}.csv")
print(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
"""


def test_a_streaming_training_needs_no_more_memory_for_more_images(tmp_path):
    """Peak resident memory (KiB, VmHWM: getrusage's maxrss survives exec, so it would show pytest's) of the
    training process in a few steps on 100 and on 700 images of 256² read from their files (its loader worker
    holds one batch ahead), and on the 700 held in memory (98 MiB more decoded)."""
    smooth = torch.nn.functional.interpolate(torch.rand(700, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
                                             size=(256, 256), mode="bilinear")
    for i, image in enumerate((smooth * 255).round().to(torch.uint8)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / f"{i:04d}.png", compress_level=1)

    def peak_kib(count, budget):
        run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(count), json.dumps(budget)],
                             check=True, capture_output=True, text=True)
        return int(run.stdout.split()[-1])

    few, many, held = peak_kib(100, 0), peak_kib(700, 0), peak_kib(700, None)
    assert held - many > 60 * 1024  # what holding the images costs, seen by this measurement
    assert many - few < 20 * 1024  # streamed: 600 more images, no more memory


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_file_read_by_a_loader_worker_is_one_sentence_that_names_it(tmp_path, workers):
    paths, _ = write_images(tmp_path, 3, 16)
    paths[2].write_bytes(paths[2].read_bytes()[:60])  # truncated
    files = ImageFiles(paths, 16, 16, workers=workers)
    for read in (lambda: list(files.chunks(2)),
                 lambda: [next(window_batches(files, WindowSampler(3, 8, 16, 16, 8, 1, torch.Generator())))
                          for _ in range(4)]):
        with pytest.raises(UserError) as raised:
            read()
        assert "02.png is truncated or corrupt" in str(raised.value) and "Traceback" not in str(raised.value)
