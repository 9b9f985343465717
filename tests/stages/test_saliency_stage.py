"""prepare -> saliency, through main()."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from taskcodec.data.manifest import read_manifest
from taskcodec.errors import UserError
from taskcodec.saliency import load_maps
from taskcodec.stages import prepare, saliency

PREPARE = {"dataset": "builtin", "root": None, "image_size": 32, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "builtin": {"num_images": 10, "canvas_size": 40, "classes": ["circle", "square"],
                                  "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
SALIENCY = {"method": "spectral-residual", "working_width": 32, "blur_sigma": 1.0, "grid_images": 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("saliency")
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(root / "prepared")])
    return root / "prepared" / "manifest.csv"


def test_maps_index_grid_and_tensor(prepared, tmp_path):
    out = saliency.main(["--params", json.dumps(SALIENCY), "--manifest", str(prepared), "--out", str(tmp_path / "s")])
    manifest = read_manifest(prepared)
    index = pd.read_csv(out / "index.csv", keep_default_na=False)
    assert list(index["image_id"]) == list(manifest["image_id"]) and set(index["split"]) == {"train", "val", "test"}
    stored = torch.load(out / "saliency.pt", weights_only=True)
    assert stored["maps"].dtype == torch.uint8 and stored["maps"].shape == (10, 1, 32, 32)
    assert stored["image_ids"] == list(manifest["image_id"]) and stored["params"] == SALIENCY
    for position, row in enumerate(index.itertuples()):
        png = np.asarray(Image.open(out / row.map))
        assert png.dtype == np.uint8 and png.shape == (32, 32) and png.max() == 255
        assert np.array_equal(png, stored["maps"][position, 0].numpy())
        assert row.mean_saliency == pytest.approx(png.mean() / 255, abs=0.01)
    (val,) = load_maps(out / "saliency.pt", [list(manifest.loc[manifest["split"] == "val", "image_id"])], (32, 32))
    assert val.shape == (2, 1, 32, 32)
    assert Image.open(out / "grid.png").size[0] > 200
    summary = json.loads((out / "saliency.json").read_text())
    assert summary["num_images"] == 10 and summary["seconds_per_image"] > 0


def test_unknown_method_is_named(prepared, tmp_path):
    with pytest.raises(UserError, match="saliency.method = 'itti' is not allowed"):
        saliency.main(["--params", json.dumps({**SALIENCY, "method": "itti"}), "--manifest", str(prepared),
                       "--out", str(tmp_path / "s")])
    assert not (tmp_path / "s").exists()
