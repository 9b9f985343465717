"""The benchmark numbers in README.md and bench/README.md are generated from the committed summaries."""

import json
import re

import pytest
from bench_scripts import ROOT, load_bench
from snakemake.utils import update_config
from taskcodec.params import codec_id, load_yaml

summary = load_bench("summary.py")


def test_the_readmes_quote_the_committed_summaries():
    assert summary.main(["--check"]) == 0, "run python bench/summary.py and commit the READMEs"


def test_a_number_edited_by_hand_is_caught(tmp_path, monkeypatch):
    document = tmp_path / "README.md"
    text = (ROOT / "bench" / "README.md").read_text()
    body = summary.BLOCK.search(text).start("body")  # the first generated block
    digit = next(i for i in range(body, len(text)) if text[i].isdigit())
    document.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    monkeypatch.setattr(summary, "DOCUMENTS", (document,))
    assert summary.main(["--check"]) == 1
    assert summary.main([]) == 0 and document.read_text() == text


def test_bd_rates_stand_beside_their_overlap():
    rows = {"bd_rate": [
        {"codec": "a", "anchor": "jpeg", "bd_rate_psnr": -12.34, "overlap_psnr_db": 0.5, "bd_rate_ms_ssim": None,
         "overlap_ms_ssim_db": -0.2, "note": "PSNR overlap under 1 dB"},
        {"codec": "a", "anchor": "webp", "bd_rate_psnr": 3.0, "overlap_psnr_db": 4.25, "bd_rate_ms_ssim": -1.0,
         "overlap_ms_ssim_db": 2.0, "note": ""}]}
    table = summary.bd_table(rows).splitlines()
    assert table[2] == "| a | jpeg | -12.3 % | 0.50 dB (under 1 dB) | n/a | none | PSNR overlap under 1 dB |"
    assert table[3] == "| a | webp | +3.0 % | 4.25 dB | -1.0 % | 2.00 dB |  |"


def test_the_kodak_headline_names_its_codec_and_quotes_only_overlapping_bd_rates(tmp_path, monkeypatch):
    learned = [{"codec": "c/N48-M128", "point": point, "train_seconds": 1800.0, "init": "neighbour",
                "image_size": "512×768"} for point in ("lmbda0.0035", "lmbda0.025")]
    bd = [{"codec": "c/N48-M128", "anchor": anchor, "bd_rate_psnr": rate, "overlap_psnr_db": overlap}
          for anchor, rate, overlap in (("jpeg", -27.4, 4.03), ("webp", 4.6, 3.29), ("avif", None, -1.0))]
    (tmp_path / "kodak.json").write_text(json.dumps({"learned": learned, "bd_rate": bd,
                                                      "psnr_span_db": {"c/N48-M128": 4.03}}))
    monkeypatch.setattr(summary, "SUMMARIES", tmp_path)
    assert summary.render_kodak_headline() == (
        "Kodak (24 images), c/N48-M128, 2 λ, chained (each λ from the next larger λ's codec) sweep, at most 1800 CPU-s "
        "of training per λ: BD-rate (PSNR) -27.4 % against jpeg (PSNR overlap 4.03 dB); +4.6 % against webp (PSNR "
        "overlap 3.29 dB); learned curve spans 4.03 dB of PSNR; images 512×768.\n")


def test_a_kodak_run_says_how_its_sweep_was_trained():
    assert summary.sweep([{"init": "neighbour"}] * 2) == "chained (each λ from the next larger λ's codec)"
    assert summary.sweep([{"init": None}, {"init": "smaller_neighbour"}]) == ("chained (each λ from the next smaller "
                                                                              "λ's codec)")
    assert summary.sweep([{"init": None}, {"init": None}]) == "independent"
    assert summary.sweep([{"steps": 1}]) == "independent"  # collected before the field: independent sweeps only
    assert summary.sweep([{"init": "zoo:bmshj2018-hyperprior:3"}]) == "from given checkpoints"
    assert summary.sweep([{"init": "neighbour", "spike_guard": None}, {"init": "neighbour", "spike_guard": 10.0}]) == (
        "chained (each λ from the next larger λ's codec, spike guard 10x)")


def test_a_side_by_side_run_shows_the_previous_runs_job_times_per_rule(tmp_path, monkeypatch):
    rules = [{"rule": "train_codec", "jobs": 3, "sum_s": 400.0, "max_s": 140.0, "cpu_s": 360.0},
             {"rule": "evaluate_classical", "jobs": 4, "sum_s": 200.0, "max_s": 50.0, "cpu_s": 100.0}]
    run = {"full_run_s": 900.0, "noop_run_s": 7.0, "jobs": 7, "cpu_s": 460.0, "rules": rules}
    previous = {**run, "full_run_s": 1000.0, "label": "before", "rules": [{**rules[1], "sum_s": 240.0}]}
    (tmp_path / "pipeline-speed.json").write_text(json.dumps({**run, "previous": previous}))
    monkeypatch.setattr(summary, "SUMMARIES", tmp_path)
    lines = summary.render_pipeline_speed().splitlines()
    assert "this run took **0.90×** its wall time" in lines[7]
    assert lines[-4].endswith("| CPU time (s) | sum of job wall times, previous run (s) |")
    assert "last sample" in lines[-6]
    assert lines[-2:] == ["| train_codec | 3 | 400.0 | 140.0 | 360.0 | |",
                          "| evaluate_classical | 4 | 200.0 | 50.0 | 100.0 | 240.0 |"]


def test_the_two_chains_stand_side_by_side_with_their_validation_points(tmp_path, monkeypatch):
    def chain(init: str, bd_rate: float, psnr: float) -> dict:
        learned = [{"codec": "c", "point": lmbda, "steps": 1000 + 100 * i, "train_seconds": 1800.0,
                    "val_loss": i + 0.5, "init": init, "image_size": "512×512", "bpp": 0.2 * i, "psnr": psnr - i,
                    "ms_ssim": 0.9} for i, lmbda in enumerate((0.025, 0.0035))]  # not in λ order: sorted
        bd = [{"codec": "c", "anchor": anchor, "bd_rate_psnr": bd_rate, "overlap_psnr_db": 2.0}
              for anchor in ("avif", "jpeg", "webp")]
        return {"learned": learned, "bd_rate": bd, "psnr_span_db": {"c": 1.0}}

    (tmp_path / "kodak-chain-down-val.json").write_text(json.dumps(chain("neighbour", -10.0, 30.0)))
    (tmp_path / "kodak-chain-up-val.json").write_text(json.dumps(chain("smaller_neighbour", 5.0, 31.0)))
    monkeypatch.setattr(summary, "SUMMARIES", tmp_path)
    lines = summary.render_kodak_chains().splitlines()
    assert lines[2] == ("| `kodak-chain-down-val.json` | c | chained (each λ from the next larger λ's codec) | 1800 | "
                        "1000–1100 | 0.6–0.6 | 1.500 / 0.500 | 1.00 dB | -10.0 %, 2.00 dB | -10.0 %, 2.00 dB | "
                        "-10.0 %, 2.00 dB |")
    assert lines[3].startswith("| `kodak-chain-up-val.json` | c | chained (each λ from the next smaller λ's codec) |")
    assert lines[-4:] == [
        "| c | chained (each λ from the next larger λ's codec) | 0.0035 | 512×512 | 0.200 | 29.00 | 0.9000 |",
        "| c | chained (each λ from the next larger λ's codec) | 0.025 | 512×512 | 0.000 | 30.00 | 0.9000 |",
        "| c | chained (each λ from the next smaller λ's codec) | 0.0035 | 512×512 | 0.200 | 30.00 | 0.9000 |",
        "| c | chained (each λ from the next smaller λ's codec) | 0.025 | 512×512 | 0.000 | 31.00 | 0.9000 |"]


def test_the_spike_guard_runs_stand_side_by_side(tmp_path, monkeypatch):
    arm = {"steps": 1000, "train_seconds": 200.0, "max_train_loss": 12345.6, "worst_val_loss": 20.5,
           "val": {"loss": 1.8, "bpp": 0.49, "psnr": 28.81}}
    (tmp_path / "kodak-spike-guard.json").write_text(json.dumps({
        "codec": "bmshj2018-hyperprior/N48-M64", "lmbda": 0.013, "init": "the chain's lmbda0.025 codec", "factor": 10.0,
        "val_images": 7, "image_size": "512×512",
        "arms": [{**arm, "spike_guard": None, "rollbacks": []},
                 {**arm, "spike_guard": 10.0, "rollbacks": [2379, 4000], "max_train_loss": 46.4}],
        "replayed": [{"run": "kodak-chain-down", "training": "codecs/a/N1/lmbda0.013", "first_rollback": 2375,
                      "highest_ratio_before": 6.5},
                     {"run": "pipeline_speed", "training": "codecs/a/N1/lmbda0.025", "first_rollback": None,
                      "highest_ratio_before": 2.6}]}))
    monkeypatch.setattr(summary, "SUMMARIES", tmp_path)
    lines = summary.RENDERERS["kodak-spike-guard"]().splitlines()
    assert lines[0].startswith("bmshj2018-hyperprior/N48-M64 at λ 0.013, from the chain's lmbda0.025 codec; "
                               "validation: 7 images of 512×512")
    assert lines[4:6] == ["| off | 1000 | 5.0 | none | 1.23e+04 | 20.500 | 1.800 | 0.490 | 28.81 |",
                          "| 10x | 1000 | 5.0 | 2379, 4000 | 46.4 | 20.500 | 1.800 | 0.490 | 28.81 |"]
    assert lines[7].startswith("The guard at 10x replayed on the training losses of runs made without it")
    assert lines[-2:] == ["| kodak-chain-down | codecs/a/N1/lmbda0.013 | 2375 | 6.5 |",
                          "| pipeline_speed | codecs/a/N1/lmbda0.025 | none | 2.6 |"]


def test_the_latent_widths_stand_side_by_side(tmp_path, monkeypatch):
    arm = {"steps": 1000, "train_seconds": 200.0, "val": {"loss": 3.05, "bpp": 0.626, "psnr": 28.945}}
    (tmp_path / "kodak-latent-channels.json").write_text(json.dumps({
        "lmbda": 0.025, "val_images": 7, "image_size": "512×512",
        "arms": [{**arm, "codec": "c/N48-M64"},
                 {"codec": "c/N48-M128", "steps": 900, "train_seconds": 200.0,
                  "val": {"loss": 2.46, "bpp": 0.769, "psnr": 30.45}}]}))
    monkeypatch.setattr(summary, "SUMMARIES", tmp_path)
    lines = summary.RENDERERS["kodak-latent-channels"]().splitlines()
    assert lines[0] == ("λ 0.025 from scratch, side by side, one core each; validation: 7 images of 512×512, bpp from "
                        "the likelihoods.")
    assert lines[2:] == ["| codec | steps | CPU-s of training | steps per CPU-s | validation loss | bpp | PSNR (dB) |",
                         "|---|---|---|---|---|---|---|",
                         "| c/N48-M64 | 1000 | 200 | 5.0 | 3.050 | 0.626 | 28.95 |",
                         "| c/N48-M128 | 900 | 200 | 4.5 | 2.460 | 0.769 | 30.45 |"]


@pytest.mark.parametrize("params, name", [
    ("params", "kodak.json"), ("m64", "kodak-m64.json"), ("independent", "kodak-independent.json"),
    ("chain-down", "kodak-chain-down-val.json"), ("chain-up", "kodak-chain-up-val.json"), ("m64", "kodak-m64-val.json"),
    ("m128", "kodak-m128-val.json"), ("m128-guard", "kodak-m128-guard-val.json")])
def test_a_committed_kodak_summary_was_made_with_the_codec_its_params_name(params, name):
    """Each params file or overlay (merged onto the study's params, as run.sh and chains.sh do) reproduces its committed
    summary's codec and guard (the overlays of runs committed before the study moved to M = 128 name their M = 64
    codec)."""
    study = load_yaml(ROOT / "bench/kodak/params.yaml")
    update_config(study, load_yaml(ROOT / f"bench/kodak/{params}.yaml"))
    (entry,) = study["codec"]["sweep"]["models"]
    learned = json.loads((ROOT / "bench/results-summary" / name).read_text())["learned"]
    assert {row["codec"] for row in learned} == {codec_id(entry)}
    # and its guard, below the largest λ (m128-guard's largest λ is the study's unguarded codec: bench/README.md)
    top = max(float(row["point"]) for row in learned)
    below = {row.get("spike_guard") for row in learned if float(row["point"]) < top}
    assert below == {study["codec"]["train"]["spike_guard"]}


def test_the_variable_rate_study_compares_with_a_single_rate_run_of_its_own_width():
    """bench/variable_rate/run.sh's committed single-rate reference has the codec of the study's single-rate sweep."""
    script = (ROOT / "bench/variable_rate/run.sh").read_text()
    (reference,) = re.findall(r"--single-rate (bench/results-summary/\S+\.json)", script)
    committed = {row["codec"] for row in json.loads((ROOT / reference).read_text())["learned"]}
    models = load_yaml(ROOT / "bench/variable_rate/params.yaml")["codec"]["sweep"]["models"]
    assert committed == {codec_id(entry) for entry in models}
