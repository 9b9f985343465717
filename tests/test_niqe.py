"""NIQE (taskcodec.niqe): clean vs noisy natural images, the size limit, a missing parameter file, and the niqe
column of the evaluations and their tables."""

import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from taskcodec import niqe as niqe_module
from taskcodec.evaluation import read_table
from taskcodec.niqe import MIN_SIDE, default_params_path, niqe, write_params
from taskcodec.stages import evaluate_classical

from stage_settings import RUN

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

installed = pytest.mark.skipif(
    importlib.util.find_spec("pyiqa") is None or not default_params_path().is_file(),
    reason=f"NIQE is not installed (pyiqa and {default_params_path()}): run `bash scripts/setup.sh` with PyPI reachable")
kodak = pytest.mark.skipif(not (KODAK / "kodim23.png").is_file(), reason=f"the Kodak images are not in {KODAK}")


def natural(width: int = 384, height: int = 256) -> np.ndarray:
    """A clean natural photograph: Kodak's kodim23 (read-only, never copied into the project) at half size."""
    with Image.open(KODAK / "kodim23.png") as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS))


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


@installed
@kodak
def test_a_clean_photograph_scores_better_than_the_same_with_strong_noise():
    image = natural()
    clean, strong = niqe(image), niqe(noisy(image, 25))
    assert 1 < clean < 8  # Kodak's photographs score about 2.5-4.5
    assert strong > clean + 3  # lower is better
    assert niqe(image) == clean  # deterministic


@installed
@kodak
def test_nan_below_the_patch_size_and_a_score_from_one_patch_on():
    image = natural()
    assert math.isnan(niqe(image[: MIN_SIDE - 1]))
    assert math.isnan(niqe(image[:, : MIN_SIDE - 1]))
    assert math.isnan(niqe(image[:64, :64]))
    assert math.isfinite(niqe(np.ascontiguousarray(image[:MIN_SIDE, :MIN_SIDE])))


def test_only_8_bit_rgb_images():
    with pytest.raises(ValueError, match="uint8 RGB"):
        niqe(np.zeros((128, 128), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        niqe(np.zeros((128, 128, 3), np.float32))


def test_a_missing_parameter_file_gives_nan_and_says_so_once(tmp_path, capsys):
    missing = tmp_path / "niqe_pris_params.mat"
    image = np.full((128, 128, 3), 100, np.uint8)
    assert math.isnan(niqe(image, missing)) and math.isnan(niqe(image, missing))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NIQE is not measured" in err, err
    if importlib.util.find_spec("pyiqa") is not None:
        assert str(missing) in err and "scripts/setup.sh" in err


def test_pyiqa_that_cannot_be_imported_gives_nan_not_a_crash(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` raises ImportError
    assert niqe_module._metric(tmp_path / "params.mat") is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyiqa cannot be imported" in err, err


def test_the_pristine_model_is_saved_as_the_mat_pyiqa_loads(tmp_path):
    mu, cov = np.arange(36.0)[None], np.eye(36) * 2
    buffer = io.BytesIO()
    np.savez(buffer, mu_pris_param=mu, cov_pris_param=cov, gaussian_window=np.ones((7, 7)))
    buffer.seek(0)
    write_params(buffer, tmp_path / "share" / "params.mat")
    saved = scipy.io.loadmat(tmp_path / "share" / "params.mat")
    assert np.array_equal(np.ravel(saved["mu_prisparam"]), mu.ravel())
    assert np.array_equal(saved["cov_prisparam"], cov)
    assert [path.name for path in (tmp_path / "share").iterdir()] == ["params.mat"]  # no temporary left
    # an existing file is kept: installing again downloads nothing
    assert niqe_module.install_params(tmp_path / "share" / "params.mat") is False


def _classical(folder: Path, out: Path, niqe_on: bool) -> pd.DataFrame:
    params = {"saliency_threshold": 0.5, "save_reconstructions": 0, "niqe": niqe_on, "qualities": [10, 90]}
    evaluate_classical.main(["--params", json.dumps(params), *RUN, "--codec", "jpeg", "--folder", str(folder),
                             "--out", str(out)])
    return read_table(out / "per_image.csv")


@pytest.fixture
def photos(tmp_path):
    """Two images of a folder dataset: one large enough for NIQE, one under its 96 pixels."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(natural(192, 128)).save(folder / "large.png")
    Image.fromarray(natural(192, 128)[:80, :80].copy()).save(folder / "small.png")
    return folder


@installed
@kodak
def test_evaluate_classical_writes_niqe_of_every_reconstruction(photos, tmp_path):
    table = _classical(photos, tmp_path / "eval", True).set_index(["image_id", "point"])
    assert list(table.columns[table.columns.get_loc("ms_ssim") + 1:][:1]) == ["niqe"]  # beside MS-SSIM
    assert table["niqe"].loc["small"].isna().all()
    scores = table["niqe"].loc["large"]
    assert scores.notna().all() and scores[10] > scores[90]  # JPEG at quality 10 looks less natural
    off = _classical(photos, tmp_path / "off", False)
    assert "niqe" in off and off["niqe"].isna().all()


@kodak
def test_evaluate_classical_without_parameters_leaves_niqe_empty(photos, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "not-installed.mat"
    monkeypatch.setattr(niqe_module, "default_params_path", lambda: missing)
    table = _classical(photos, tmp_path / "eval", True)
    assert len(table) == 4 and table["niqe"].isna().all() and table["psnr"].notna().all()
    said = [line for line in capsys.readouterr().err.splitlines() if "NIQE" in line]
    assert len(said) == 1 and "NIQE is not measured" in said[0], said


def test_tables_show_niqe_beside_psnr_and_ms_ssim():
    from taskcodec.report.tables import rd_points
    from taskcodec.stages.report import _markdown
    from taskcodec.stages.summarize import dataset_metrics

    per_image = pd.DataFrame({
        "kind": ["classical"] * 2 + ["pretrained"] * 2, "codec": ["jpeg"] * 2 + ["net"] * 2, "point": [10] * 2 + [1] * 2,
        "image_id": ["a", "b"] * 2, "height": [128, 64] * 2, "width": [128, 64] * 2, "bpp": [0.5, 0.6, 0.4, 0.5],
        "bpp_estimated": [math.nan] * 2 + [0.4, 0.5], "psnr": [30.0, 31.0, 32.0, 33.0], "ms_ssim": [0.9] * 4,
        "niqe": [5.0, math.nan, math.nan, math.nan], "run_id": ["r"] * 4})
    points = rd_points(per_image).set_index("codec")
    assert points.loc["jpeg", "niqe"] == 5.0 and math.isnan(points.loc["net", "niqe"])  # mean of the measured
    assert list(points.columns).index("niqe") == list(points.columns).index("ms_ssim") + 1
    table = _markdown(points.reset_index())
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines()]
    assert [row[cells[0].index("niqe")] for row in cells[2:]] == ["5", "n/a"]
    summary = dataset_metrics(points.reset_index(), pd.DataFrame(columns=["codec", "anchor", "bd_rate_psnr",
                                                                          "bd_rate_ms_ssim"]))
    assert summary["learned"]["net@lmbda1"]["niqe"] is None
    assert rd_points(per_image.drop(columns="niqe"))["niqe"].isna().all()  # tables written before NIQE


@installed
def test_an_image_without_texture_is_nan_not_a_crash():
    """A flat reconstruction (a codec of two latent channels at a very low rate) has no patch statistics."""
    assert math.isnan(niqe(np.full((128, 128, 3), 117, dtype=np.uint8)))
