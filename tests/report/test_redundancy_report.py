"""The redundancy between a scalable codec's latents over training, gathered from its training log and plotted."""

import json

import pandas as pd

from taskcodec.report.redundancy import redundancy_plot, redundancy_table


def codec_folder(root, arch, lmbda, task_lmbda, coefficients):
    folder = root / arch / "N8-M_base4" / f"lmbda{lmbda}" / f"task{task_lmbda}"
    folder.mkdir(parents=True)
    rows = [{"step": step, "split": "train", "loss": 1.0} for step in (1, 2)]
    rows += [{"step": 10 * (i + 1), "split": "val", "loss": 1.0, "u_base_given_enh": base, "u_enh_given_base": enh}
             for i, (base, enh) in enumerate(coefficients)]
    pd.DataFrame(rows).to_csv(folder / "train_log.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"arch": arch, "hyper": {"N": 8, "M_base": 4}, "lmbda": lmbda,
                                                     "task_lmbda": task_lmbda}))
    return folder / "train_log.csv"


def test_one_row_per_validation_named_by_the_codec_and_logs_without_coefficients_left_out(tmp_path):
    ours = codec_folder(tmp_path, "scalable-hyperprior", 0.01, 2.0, [(0.5, 0.4), (0.2, 0.9)])
    plain = tmp_path / "plain"
    plain.mkdir()
    pd.DataFrame([{"step": 10, "split": "val", "loss": 1.0}]).to_csv(plain / "train_log.csv", index=False)
    (plain / "metrics.json").write_text(json.dumps({"arch": "x", "hyper": {}, "lmbda": 0.1, "task_lmbda": 1.0}))
    table = redundancy_table([ours, plain / "train_log.csv"])
    assert list(table["step"]) == [10, 20] and set(table["codec"]) == {"scalable-hyperprior/N8-M_base4"}
    assert list(table["u_base_given_enh"]) == [0.5, 0.2] and set(table["task_lmbda"]) == {2.0}
    redundancy_plot(table, tmp_path / "redundancy.png")
    assert (tmp_path / "redundancy.png").stat().st_size > 0
