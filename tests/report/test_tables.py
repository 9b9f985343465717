import json
import math

import pandas as pd
import pytest

from taskcodec.errors import UserError
from taskcodec.report.tables import bd_rate_table, load_reference_curves, rd_points


def test_rd_points_average_per_codec_point_with_image_size():
    per_image = pd.DataFrame({
        "kind": ["classical"] * 4, "codec": ["jpeg"] * 4, "point": [10, 10, 50, 50], "image_id": ["a", "b"] * 2,
        "height": [64, 32, 64, 32], "width": [64, 48, 64, 48], "bpp": [1.0, 3.0, 2.0, 4.0],
        "bpp_estimated": [math.nan] * 4, "psnr": [30.0, 32.0, 34.0, 36.0], "ms_ssim": [0.9] * 4, "run_id": ["r1"] * 4,
    })
    points = rd_points(per_image)
    assert list(points["bpp"]) == [2.0, 3.0] and list(points["psnr"]) == [31.0, 35.0]
    assert set(points["image_size"]) == {"48×32, 64×64"}
    assert list(points["run_id"]) == ["r1", "r1"]


def test_bd_rate_table_pairs_learned_with_classical():
    anchor = {"kind": "classical", "codec": "jpeg"}
    test = {"kind": "pretrained", "codec": "net"}
    rows = [{**anchor, "point": q, "bpp": r, "psnr": p, "ms_ssim": m}
            for q, r, p, m in [(10, 1.0, 30, 0.9), (50, 2.0, 33, 0.95), (90, 4.0, 36, 0.98)]]
    rows += [{**test, "point": q, "bpp": r / 2, "psnr": p, "ms_ssim": m}
             for q, r, p, m in [(1, 1.0, 30, 0.9), (2, 2.0, 33, 0.95), (3, 4.0, 36, 0.98)]]
    table = bd_rate_table(pd.DataFrame(rows), "pchip")
    assert len(table) == 1
    assert table.loc[0, "bd_rate_psnr"] == pytest.approx(-50.0)
    assert table.loc[0, "bd_rate_ms_ssim"] == pytest.approx(-50.0)
    assert table.loc[0, "bd_psnr_db"] > 0
    assert table.loc[0, "overlap_psnr_db"] == pytest.approx(6.0) and table.loc[0, "note"] == ""


def test_bd_rate_over_a_narrow_overlap_is_flagged():
    rows = [{"kind": "classical", "codec": "jpeg", "point": q, "bpp": r, "psnr": p, "ms_ssim": 0.9 + q / 1000}
            for q, r, p in [(10, 1.0, 30.0), (50, 2.0, 33.0), (90, 4.0, 36.0)]]
    rows += [{"kind": "pretrained", "codec": "net", "point": q, "bpp": r, "psnr": p, "ms_ssim": 0.9 + q / 100}
             for q, r, p in [(1, 0.5, 35.2), (2, 1.0, 35.6), (3, 2.0, 36.5)]]
    table = bd_rate_table(pd.DataFrame(rows), "pchip")
    assert table.loc[0, "overlap_psnr_db"] == pytest.approx(0.8)
    assert table.loc[0, "note"] == "PSNR overlap under 1 dB"


def test_reference_curves_are_labelled_by_file(tmp_path):
    curve = {"name": "same", "results": {"bpp": [0.1, 0.5], "psnr-rgb": [28.0, 33.0], "ms-ssim-rgb": [0.9, 0.97]}}
    for stem in ("model_cpu", "model_cuda"):
        (tmp_path / f"{stem}.json").write_text(json.dumps(curve))
    points = load_reference_curves(tmp_path)
    assert set(points["codec"]) == {"model_cpu (published)", "model_cuda (published)"} and len(points) == 4
    (tmp_path / "broken.json").write_text('{"name": "x"}')
    with pytest.raises(UserError, match="broken.json is not a CompressAI result file"):
        load_reference_curves(tmp_path)
