import pandas as pd
import pytest
import torch
from PIL import Image

from taskcodec import augment, trainer
from taskcodec.codecs import training
from taskcodec.codecs.coding import encode_images, estimated_bits
from taskcodec.codecs.registry import build_codec
from taskcodec.data.sources import ImageFiles, InMemory, with_maps
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError

PARAMS = {
    "distortion": "mse", "steps": 24, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
    "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5,
    "clip_max_norm": 1.0, "spike_guard": None, "ema_decay": None, "quantization": "noise", "time_budget_s": None,
    "val_every": 12, "checkpoint_every": 8, "init": None, "seed": 0, "saliency_floor": None,
}
HYPER = {"N": 8, "M": 12}


def smooth_images(count, size, seed=0):
    """Smooth random colour fields: compressible, like downsampled photos."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, size // 8, size // 8, generator=generator)
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def run(tmp_path, params, images, name="run", sources=InMemory):
    """Train on ``images[:12]``, validate on the rest; ``sources`` makes a split's source of its images."""
    torch.manual_seed(0)
    model = build_codec("bmshj2018-hyperprior", HYPER)
    state = training.train_codec(model, 0.01, params, sources(images[:12]), sources(images[12:]),
                                 torch.device("cpu"), tmp_path / f"{name}-resume.pt", tmp_path / f"{name}-log.csv")
    return model, state


def image_files(folder, workers):
    """A source maker that writes a split's images as PNG files and reads them with ``workers`` processes."""
    def sources(images):
        folder.mkdir(exist_ok=True)
        start = len(list(folder.iterdir()))
        paths = [folder / f"{start + i}.png" for i in range(len(images))]
        for path, image in zip(paths, images):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        return ImageFiles(paths, *images.shape[-2:], workers=workers)

    return sources


def test_learning_rate_schedule():
    schedule = trainer.step_drops(PARAMS["lr"], [0.5, 0.8], 0.5)
    assert schedule(0.0) == 1e-3 and schedule(0.5) == pytest.approx(5e-4) and schedule(0.85) == pytest.approx(2.5e-4)


def test_training_lowers_the_loss_and_writes_a_log(tmp_path):
    images = smooth_images(16, 64)
    params = {**PARAMS, "steps": 60, "val_every": 30}
    model, state = run(tmp_path, params, images)
    val = [row for row in state.history if row["split"] == "val"]
    assert [row["step"] for row in val] == [30, 60]
    train_losses = [row["loss"] for row in state.history if row["split"] == "train"]
    assert sum(train_losses[-10:]) < sum(train_losses[:10])
    assert (tmp_path / "run-log.csv").read_text().startswith("step,split,loss")


#: every lever of the fast recipe on: warm-up, cosine decay, weight average, straight-through rounding
RECIPE = {**PARAMS, "lr_warmup": 0.1, "lr_decay": "cosine", "ema_decay": 0.9, "quantization": "ste"}


@pytest.mark.parametrize("params, streamed", [(PARAMS, False), (RECIPE, False), (PARAMS, True)],
                         ids=["noise", "recipe", "read-ahead-from-files"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, monkeypatch, params, streamed):
    """Also when a loader process reads batches ahead of the training: the generator goes back to the
    last trained batch before each checkpoint."""
    images = smooth_images(16, 64)
    sources = image_files(tmp_path / "images", workers=1) if streamed else InMemory
    reference, _ = run(tmp_path, params, images, "reference", sources)

    real_batch = training.CodecObjective.batch
    calls = {"n": 0}

    def dying_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 13:  # killed after step 13; the last checkpoint is at step 8
            raise KeyboardInterrupt
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(training.CodecObjective, "batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, params, images, "killed", sources)
    assert torch.load(tmp_path / "killed-resume.pt", weights_only=True)["progress"]["step"] == 8
    calls["n"] = 0
    monkeypatch.setattr(training.CodecObjective, "batch", counting(real_batch, calls))
    resumed, state = run(tmp_path, params, images, "killed", sources)
    assert calls["n"] == params["steps"] - 8  # only the steps after the checkpoint were trained again
    assert state.step == params["steps"]
    for key, value in reference.state_dict().items():
        # same data order and noise as the uninterrupted run; Adam state restored from the checkpoint
        assert torch.equal(value, resumed.state_dict()[key]), key
    logs = [pd.read_csv(tmp_path / f"{name}-log.csv").drop(columns="elapsed_s") for name in ("reference", "killed")]
    pd.testing.assert_frame_equal(*logs)


def counting(fn, calls):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        return fn(*args, **kwargs)

    return wrapper


def test_straight_through_forward_decodes_rounded_latents_and_trains_the_encoder():
    torch.manual_seed(0)
    model = build_codec("bmshj2018-hyperprior", HYPER).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x, quantization="ste")
    with torch.no_grad():
        assert torch.allclose(out["x_hat"], model.g_s(torch.round(model.g_a(x))), atol=1e-6)
    assert set(out["likelihoods"]["main"]) == {"y", "z"}
    (out["x_hat"] - x).pow(2).mean().backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0  # the rounding passes the gradient through


def test_straight_through_needs_a_differentiable_analysis(tmp_path):
    model = build_codec("mbt2018", {"N": 8, "M": 12})
    with pytest.raises(UserError, match="quantization ste"):
        training.train_codec(model, 0.01, {**PARAMS, "quantization": "ste"}, InMemory(smooth_images(4, 64)),
                             InMemory(smooth_images(2, 64)), torch.device("cpu"), tmp_path / "r.pt",
                             tmp_path / "l.csv")


def test_resume_checkpoint_of_other_params_is_ignored(tmp_path):
    images = smooth_images(16, 64)
    run(tmp_path, {**PARAMS, "steps": 8}, images, "a")
    # a stale resume file from different params must not be picked up
    stale = tmp_path / "a-resume.pt"
    assert stale.exists()
    _, state = run(tmp_path, {**PARAMS, "steps": 4, "checkpoint_every": 100}, images, "a")
    assert state.step == 4


def test_actual_bpp_matches_estimated_bpp_on_a_trained_model(tmp_path):
    images = smooth_images(20, 64, seed=1)
    params = {**PARAMS, "steps": 150, "patch_size": 64, "val_every": 150, "checkpoint_every": 1000}
    torch.manual_seed(0)
    model = build_codec("bmshj2018-hyperprior", {"N": 16, "M": 24})
    training.train_codec(model, 0.01, params, InMemory(images[:16]), InMemory(images[16:]), torch.device("cpu"),
                         tmp_path / "resume.pt", tmp_path / "log.csv")
    # larger test images, so the few bytes of header and rANS flush per string are a small share
    x = to_float(smooth_images(4, 256, seed=2), torch.device("cpu"))
    actual_bits = sum(8 * len(b["main"].to_bytes()) for b in encode_images(model, x))
    estimate = estimated_bits(model, x)["main"].sum().item()
    assert actual_bits == pytest.approx(estimate, rel=0.05)


def test_time_budget_stops_training(tmp_path):
    images = smooth_images(16, 64)
    params = {**PARAMS, "steps": 10**6, "time_budget_s": 0.5, "val_every": 10**6, "checkpoint_every": 10**6}
    _, state = run(tmp_path, params, images)
    assert 0 < state.step < 10**6
    assert state.elapsed_s >= 0.5
    assert state.history[-1]["split"] == "val"


def test_patches_cut_image_and_map_at_the_same_place():
    images = smooth_images(3, 64)
    maps = images[:, :1].clone()  # a "map" equal to the red channel shows where each crop came from
    source = InMemory(with_maps(images, maps))
    batch = source.windows(augment.window_draws(3, 8, 64, 64, 32, torch.Generator().manual_seed(1)), 32)
    assert batch.shape == (8, 4, 32, 32)
    assert torch.equal(batch[:, 3], batch[:, 0])
    x, weights = training.split_maps(batch, torch.device("cpu"), 0.25)
    assert x.shape == (8, 3, 32, 32) and weights.shape == (8, 1, 32, 32)
    assert torch.allclose(weights, 0.25 + 0.75 * batch[:, :1].float() / 255)


def test_windows_of_a_translatable_source_shift_image_and_map_together():
    images = smooth_images(2, 16)
    maps = images[:, :1].clone()
    source = InMemory(with_maps(images, maps), padding=3)
    assert source.padded.shape == (2, 4, 22, 22) and torch.equal(source.padded[:, :, 3:19, 3:19],
                                                                  with_maps(images, maps))
    draws = augment.window_draws(2, 64, 22, 22, 16, torch.Generator().manual_seed(0))
    batch = source.windows(draws, 16)
    assert torch.equal(batch[:, 3], batch[:, 0])  # the map moved with its image
    originals = images[draws.index]
    unshifted = [torch.equal(batch[i, :3], originals[i]) or torch.equal(batch[i, :3], originals[i].flip(-1))
                 for i in range(len(batch))]
    assert 0 < sum(unshifted) < len(batch)  # some windows are the image itself, most are translated
    assert augment.translatable(images, 0) is images


def _saliency_run(tmp_path, images, maps, floor, name):
    torch.manual_seed(0)
    model = build_codec("bmshj2018-hyperprior", HYPER)
    params = {**PARAMS, "steps": 6, "val_every": 6, "checkpoint_every": 100, "saliency_floor": floor}
    state = training.train_codec(model, 0.01, params, InMemory(with_maps(images[:12], maps[:12])),
                                 InMemory(with_maps(images[12:], maps[12:])), torch.device("cpu"),
                                 tmp_path / f"{name}-resume.pt", tmp_path / f"{name}-log.csv")
    return model, state


def test_training_uses_the_saliency_maps(tmp_path):
    images = smooth_images(16, 64)
    half = torch.zeros(16, 1, 64, 64, dtype=torch.uint8)
    half[..., :32] = 255
    plain, plain_state = run(tmp_path, {**PARAMS, "steps": 6, "val_every": 6, "checkpoint_every": 100}, images, "plain")
    floor_one, _ = _saliency_run(tmp_path, images, half, 1.0, "one")  # w ≡ 1: plain MSE
    weighted, weighted_state = _saliency_run(tmp_path, images, half, 0.0, "zero")
    for key, value in plain.state_dict().items():
        assert torch.allclose(value, floor_one.state_dict()[key], atol=1e-5), key
    assert any(not torch.allclose(value, weighted.state_dict()[key], atol=1e-5)
               for key, value in plain.state_dict().items())
    # validation weights the distortion too: only the left half counts, so the loss differs while the MSE is plain
    val_plain, val_weighted = plain_state.history[-1], weighted_state.history[-1]
    assert val_weighted["split"] == "val" and val_weighted["loss"] != pytest.approx(val_plain["loss"])


def test_saliency_floor_without_maps_or_with_ms_ssim_is_a_clear_error(tmp_path):
    images = smooth_images(16, 64)
    with pytest.raises(UserError, match="codec.train.saliency_floor is 0.2, but no saliency maps were given"):
        run(tmp_path, {**PARAMS, "saliency_floor": 0.2}, images)
    maps = torch.zeros(16, 1, 64, 64, dtype=torch.uint8)
    with pytest.raises(UserError, match="distortion mse only, not ms-ssim"):
        training.train_codec(build_codec("bmshj2018-hyperprior", HYPER), 0.01,
                             {**PARAMS, "distortion": "ms-ssim", "saliency_floor": 0.2},
                             InMemory(with_maps(images[:12], maps[:12])), InMemory(with_maps(images[12:], maps[12:])),
                             torch.device("cpu"), tmp_path / "r.pt", tmp_path / "l.csv")


def test_a_patch_size_the_codec_cannot_code_is_a_clear_error(tmp_path):
    """The schema keeps no list of multiples: the codec's own pad_multiple decides."""
    with pytest.raises(UserError, match="codec.train.patch_size 48 must be a multiple of 64"):
        run(tmp_path, {**PARAMS, "patch_size": 48}, smooth_images(16, 64))


def test_a_split_read_from_its_files_trains_the_model_held_in_memory(tmp_path):
    """Streaming changes where the bytes come from, never a number: the same batches, the same weights."""
    images = smooth_images(16, 64)
    params = {**PARAMS, "steps": 10, "val_every": 5}
    in_memory, memory_state = run(tmp_path, params, images, "memory")
    streamed, streamed_state = run(tmp_path, params, images, "files", image_files(tmp_path / "images", workers=2))
    for key, value in in_memory.state_dict().items():
        assert torch.equal(value, streamed.state_dict()[key]), key
    assert [row["loss"] for row in memory_state.history] == [row["loss"] for row in streamed_state.history]
