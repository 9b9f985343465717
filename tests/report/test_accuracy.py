"""Rate–accuracy tables from per-image task measurements and classifier metrics."""

import math

import numpy as np
import pandas as pd
import pytest

from taskcodec.errors import UserError
from taskcodec.report.accuracy import (accuracy_envelope, bd_rate_accuracy, bits_for_accuracy, classifier_points,
                                       decoded_points, scalable_savings, set_metrics_of)

METRICS = ["top1", "top5"]


def per_image(codec: str, points: dict[float, tuple[float, list[float]]]) -> pd.DataFrame:
    """Rows for images at each point: (bpp, per-image top-1 hits)."""
    rows = []
    for point, (bpp, hits) in points.items():
        for i, hit in enumerate(hits):
            rows.append({"codec": codec, "point": point, "image_id": f"{i:03d}", "height": 64, "width": 64,
                         "bpp": bpp, "top1": hit, "top5": 1.0, "psnr": 30.0, "feature_mse": 0.1, "psnr_salient": 28.0,
                         "psnr_background": 31.0, "run_id": "r"})
    return pd.DataFrame(rows)


def test_the_tables_follow_the_metric_names_a_task_declares():
    curve = pd.DataFrame({"kind": "classical", "codec": "jpeg", "point": range(3), "bpp": [0.5, 1.0, 2.0],
                          "accuracy": [0.2, 0.5, 0.9]})
    assert list(bits_for_accuracy(curve, 0.5, "accuracy")["measured_bpp"]) == [1.0]
    assert "target_accuracy" in bits_for_accuracy(curve, 0.5, "accuracy").columns
    frame = per_image("c", {1: (0.5, [1, 0])}).rename(columns={"top1": "accuracy"})
    points = decoded_points(frame, "pretrained", ["accuracy"], {("c", 1.0): {"accuracy": 0.5}})
    assert points["accuracy"].tolist() == [0.5]


def test_decoded_points_take_the_task_metrics_over_each_point_and_average_the_rest():
    """The accuracies are the evaluations' set-level values (mAP is no mean of per-image APs), PSNR & co. means."""
    summaries = [{"codec": "jpeg", "task_metrics": [{"point": 10, "images": 4, "top1": 0.3, "top5": 1.0},
                                                    {"point": 50, "images": 4, "top1": 0.5, "top5": 1.0}]}]
    points = decoded_points(per_image("jpeg", {10: (0.5, [1, 0, 0, 0]), 50: (1.0, [1, 1, 0, 0])}), "classical",
                            METRICS, set_metrics_of(summaries))
    assert list(points["top1"]) == [0.3, 0.5] and list(points["images"]) == [4, 4]
    assert list(points["bpp"]) == list(points["bpp_image"]) == [0.5, 1.0]
    assert points["mse"].iloc[0] == pytest.approx(255.0**2 * 1e-3)
    assert points["feature_mse"].iloc[0] == pytest.approx(0.1)
    assert set(points["image_size"]) == {"64×64"} and set(points["kind"]) == {"classical"}
    with pytest.raises(UserError, match="rerun it"):
        decoded_points(per_image("jpeg", {90: (2.0, [1])}), "classical", METRICS, set_metrics_of(summaries))


def test_a_codec_carrying_the_task_model_is_placed_at_the_bits_of_its_task_layers():
    frame = pd.concat([per_image("scalable", {0.01: (0.8, [1, 1])}).assign(bpp_task=0.2),
                       per_image("plain", {0.01: (0.5, [1, 0])})])
    sets = {("scalable", 0.01): {"top1": 1.0, "top5": 1.0}, ("plain", 0.01): {"top1": 0.5, "top5": 1.0}}
    points = decoded_points(frame, "pretrained", METRICS, sets).set_index("codec")
    assert points.loc["scalable", "bpp"] == 0.2 and points.loc["scalable", "bpp_image"] == 0.8
    assert points.loc["plain", "bpp"] == points.loc["plain", "bpp_image"] == 0.5


def test_bd_rate_at_equal_accuracy_of_a_curve_needing_half_the_bits():
    rates = np.array([0.2, 0.4, 0.8, 1.6])
    accuracy = np.array([0.4, 0.6, 0.75, 0.85])
    anchor = pd.DataFrame({"kind": "classical", "codec": "avif", "point": range(4), "bpp": rates, "top1": accuracy})
    test = pd.DataFrame({"kind": "finetuned", "codec": "tuned", "point": range(4), "bpp": rates / 2, "top1": accuracy})
    table = bd_rate_accuracy(pd.concat([anchor, test]), "pchip", "top1")
    assert table["bd_rate_top1"].iloc[0] == pytest.approx(-50.0, abs=1e-6)
    needed = bits_for_accuracy(pd.concat([anchor, test]), 0.7, "top1").set_index("codec")
    # 0.7 lies two thirds of the way from 60 % (0.4 bpp) to 75 % (0.8 bpp), on a log-bpp axis
    assert needed.loc["avif", "bpp"] == pytest.approx(0.4 * 2 ** (2 / 3))
    assert needed.loc["avif", "measured_bpp"] == 0.8 and needed.loc["tuned", "measured_bpp"] == 0.4
    assert needed.loc["tuned", "share_of_avif"] == pytest.approx(0.5)
    first_point = bits_for_accuracy(pd.concat([anchor, test]), 0.3, "top1").set_index("codec")
    assert first_point.loc["avif", "bpp"] == 0.2
    unreached = bits_for_accuracy(pd.concat([anchor, test]), 0.9, "top1")
    assert unreached["bpp"].isna().all() and unreached["share_of_avif"].isna().all()


def test_a_point_exactly_on_the_target_reaches_it_despite_float_rounding():
    uncompressed, margin = 15 / 300, 0.02
    target = uncompressed - margin  # 0.030000000000000002 > 9 / 300 in floating point
    assert 9 / 300 < target
    curve = pd.DataFrame({"kind": "classical", "codec": "jpeg", "point": range(2), "bpp": [0.5, 1.0],
                          "top1": [3 / 300, 9 / 300]})
    assert bits_for_accuracy(curve, target, "top1")["measured_bpp"].iloc[0] == 1.0


def test_non_overlapping_accuracy_ranges_give_nan_with_a_note():
    anchor = pd.DataFrame({"kind": "classical", "codec": "jpeg", "point": range(3), "bpp": [1, 2, 3],
                           "top1": [0.1, 0.2, 0.3]})
    test = pd.DataFrame({"kind": "latent", "codec": "c", "point": range(3), "bpp": [1, 2, 3], "top1": [0.6, 0.7, 0.8]})
    row = bd_rate_accuracy(pd.concat([anchor, test]), "pchip", "top1").iloc[0]
    assert math.isnan(row["bd_rate_top1"]) and row["note"]


def test_classifier_points_from_metrics():
    latent = {"codec": "bmshj2018-hyperprior/N8-M12", "lmbda": 0.01, "images": {"train": 5, "test": 3},
              "bpp": 0.4, "test_top1": 0.5, "test_top5": None, "run_id": "x"}
    joint = {"codec": "bmshj2018-hyperprior/N8-M12", "lmbda": 0.01, "test_images": 3, "bpp": 0.38,
             "test_top1": 0.6, "test_top5": 0.9, "run_id": "y"}
    points = pd.concat([classifier_points([latent], "latent", "64×64", METRICS),
                        classifier_points([joint], "joint", "64×64", METRICS)])
    assert list(points["images"]) == [3, 3] and math.isnan(points["top5"].iloc[0]) and points["top5"].iloc[1] == 0.9
    assert list(points["codec"]) == ["bmshj2018-hyperprior/N8-M12 latent cResNet",
                                     "bmshj2018-hyperprior/N8-M12 joint cResNet"]


def test_envelope_keeps_only_points_that_raise_accuracy():
    curve = pd.DataFrame({"bpp": [0.5, 1.0, 1.5, 2.0, 3.0], "top1": [0.6, 0.88, 0.88, 0.86, 0.9]})
    assert list(accuracy_envelope(curve, "top1")["bpp"]) == [0.5, 1.0, 3.0]


def test_saturated_anchor_still_gives_a_bd_rate():
    anchor = pd.DataFrame({"kind": "classical", "codec": "hevc", "point": range(5), "bpp": [0.4, 0.7, 1.1, 1.7, 2.5],
                           "top1": [0.70, 0.80, 0.84, 0.88, 0.88]})
    test = anchor.assign(kind="pretrained", codec="learned", bpp=anchor["bpp"] * 0.8)
    assert bd_rate_accuracy(pd.concat([anchor, test]), "pchip", "top1")["bd_rate_top1"].iloc[0] == pytest.approx(-20.0)


def test_the_scalable_codec_saving_against_every_other_learned_curve_at_the_target():
    """Seed 002's claim: the base layer reaches the target with fewer bits (55 % fewer than Choi & Bajić's)."""
    points = pd.DataFrame([
        {"kind": "scalable", "codec": "ours", "bpp": 0.1, "top1": 0.9},
        {"kind": "scalable", "codec": "choi", "bpp": 0.2, "top1": 0.7}, {"kind": "scalable", "codec": "choi", "bpp": 0.4, "top1": 0.9},
        {"kind": "finetuned", "codec": "tuned", "bpp": 0.25, "top1": 0.9},
        {"kind": "pretrained", "codec": "never", "bpp": 1.0, "top1": 0.5},
        {"kind": "classical", "codec": "jpeg", "bpp": 2.0, "top1": 0.9},
    ])
    savings = scalable_savings(bits_for_accuracy(points, 0.9, "top1")).set_index(["codec", "against"])
    assert savings.loc[("ours", "choi"), "saving_percent"] == pytest.approx(75.0)
    assert savings.loc[("ours", "tuned"), "saving_percent"] == pytest.approx(60.0)
    assert savings.loc[("choi", "ours"), "saving_percent"] == pytest.approx(-300.0)
    assert math.isnan(savings.loc[("ours", "never"), "saving_percent"])  # never reaches the target
    assert ("ours", "jpeg") not in savings.index  # classical codecs are in bits_for_accuracy's share columns
