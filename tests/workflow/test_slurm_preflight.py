"""The checks before a SLURM run (taskcodec.slurm_preflight, called by scripts/slurm/preflight.sh): every job that
asks for more than its partition allows, or for GPUs where its partition has none, is reported in one sentence
naming the key to change, before anything is submitted.

The decisions are tested on recorded ``sinfo`` and ``scontrol`` output (fast, always run); one test submits
through the README's command to the real single-node SLURM of scripts/slurm/start.sh (skipped with the reason
where it cannot start, except under CI=true, as in test_slurm.py).
"""

import copy
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from taskcodec import slurm_preflight
from taskcodec.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "workflow/profiles/slurm"
# `sinfo -h -e -o "%P|%c|%m|%l|%G"` of the CI cluster (scripts/slurm/start.sh), and of a site with a GPU partition
# of two kinds of nodes (neither has both the most cores and the most memory) and a short partition
CI = "cpu*|2|24105|infinite|(null)\n"
SITE = ("cpu*|64|257000|2-00:00:00|(null)\n"
        "gpu|32|128000|1-00:00:00|gpu:a100:4(S:0-1)\n"
        "gpu|16|512000|1-00:00:00|gpu:v100:2\n"
        "short|8|32000|30:00|(null)\n")
SITE_SCONTROL = ("PartitionName=cpu Default=YES MaxTime=2-00:00:00 MaxMemPerNode=UNLIMITED State=UP\n"
                 "PartitionName=gpu Default=NO MaxTime=1-00:00:00 MaxMemPerNode=384000 State=UP\n"
                 "PartitionName=short Default=NO MaxTime=00:30:00 MaxMemPerCPU=4000 State=UP\n")


@pytest.mark.parametrize("limit, minutes", [("infinite", None), ("UNLIMITED", None), ("45", 45), ("30:00", 30),
                                            ("0:30", 0), ("2:00:00", 120), ("1-12", 2160), ("1-00:00:00", 1440)])
def test_time_limits_in_minutes(limit, minutes):
    assert slurm_preflight.minutes(limit) == minutes


@pytest.mark.parametrize("gres, count", [("(null)", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1),mps:400", 4),
                                         ("gpu:a100:4(S:0,1)", 4), ("gpu:tesla:2,gpu:k80:2", 4)])
def test_gpus_of_a_node(gres, count):
    assert slurm_preflight.gpus(gres) == count


def test_partitions_from_sinfo_and_scontrol():
    partitions = slurm_preflight.read_partitions(SITE, SITE_SCONTROL)
    assert [name for name, partition in partitions.items() if partition.default] == ["cpu"]
    gpu = partitions["gpu"]
    assert [gpu.allows(amount) for amount in ("threads", "mem_mb", "runtime", "gpu")] == [32, 384000, 1440, 4]
    assert partitions["short"].allows("runtime") == 30 and partitions["cpu"].allows("gpu") == 0
    assert gpu.fits({"threads": 32, "gpu": 4, "runtime": 1440}) and gpu.fits({"threads": 16, "mem_mb": 384000})
    assert not gpu.fits({"threads": 32, "mem_mb": 256000})  # each fits some node, no node has both
    with pytest.raises(UserError, match="could not read this line"):
        slurm_preflight.read_partitions("cpu*|2|24105\n", "")


def test_rules_take_the_resources_of_their_stage():
    stages, local = slurm_preflight.read_rules(ROOT / "Snakefile")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["resources"]
    assert {stage for stage in params if stage != "device"} <= set(stages.values())
    assert stages["cache_finetuned"] == "cache_latents" and stages["evaluate_finetuned"] == "evaluate_codec"
    assert stages["prepare"] == "prepare" and stages["saliency"] is None and {"report", "summarize", "all"} <= local


def test_a_controller_that_does_not_answer_is_one_sentence():
    failing = ("sh", "-c", "echo 'slurm_load_partitions: Unable to contact slurm controller' >&2; exit 1")
    with pytest.raises(UserError, match="Unable to contact slurm controller.*controller must answer"):
        slurm_preflight.ask_slurm(failing)


@pytest.fixture
def preflight(tmp_path, monkeypatch, capsys):
    """``preflight(sinfo, *argv, resources=..., profile=..., scontrol=...)``: main() on the shipped params.yaml and
    slurm profile, updated with ``resources`` (stage -> keys) and ``profile`` (top-level keys), in ``tmp_path``;
    returns the exit status and stderr."""

    def run(sinfo, *argv, resources=None, profile=None, scontrol=""):
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        for stage, keys in (resources or {}).items():
            params["resources"][stage].update(keys)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        settings = {**yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text()), **(profile or {})}
        (tmp_path / "profile").mkdir(exist_ok=True)
        (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(settings))
        monkeypatch.setattr(slurm_preflight, "ask_slurm", lambda command: sinfo if command[0] == "sinfo" else scontrol)
        status = slurm_preflight.main(["--profile", str(tmp_path / "profile"), "--directory", str(tmp_path),
                                       "--snakefile", str(ROOT / "Snakefile"), *argv])
        return status, capsys.readouterr().err

    return run


def test_the_shipped_settings_fit_without_a_word(preflight):
    assert preflight(CI) == (0, "")
    assert preflight(SITE, scontrol=SITE_SCONTROL) == (0, "")


#: the rules whose jobs take resources.train_codec (codec pretraining, the scalable and the variable-rate codecs')
TRAINING = ("train_codec", "train_scalable", "train_variable_rate")


def test_every_job_that_asks_too_much_is_one_sentence_naming_its_key(preflight, tmp_path):
    status, said = preflight(CI, resources={"train_codec": {"mem_mb": 64000}, "evaluate_classical": {"threads": 4}})
    assert status == 2 and len(said.splitlines()) == 2, said
    assert said.splitlines()[0] == (
        f"taskcodec: resources.train_codec.mem_mb = 64000 in {tmp_path}/params.yaml asks for more memory than "
        "partition cpu allows (at most 24105 MB per node) for rules train_codec, train_scalable, train_variable_rate; "
        "lower it to 24105 or less, or name a partition that allows more with `set-resources: train_codec: "
        f"slurm_partition:` (and the same for train_scalable, train_variable_rate) in {tmp_path}/profile/config.yaml")
    assert "resources.evaluate_classical.threads = 4" in said and "CPU cores" in said and "at most 2 per node" in said
    # a stage's resources cover several rules: one sentence for them all
    status, said = preflight(CI, resources={"cache_latents": {"mem_mb": 64000}})
    assert status == 2 and len(said.splitlines()) == 1 and "for rules cache_latents, cache_finetuned, cache_scalable, cache_variable_rate;" in said
    # the profile's defaults, for the rules that declare no resources
    status, said = preflight("cpu*|2|2000|infinite|(null)\n")
    assert status == 2 and "default-resources: mem_mb = 4000 in" in said and "for rule saliency;" in said


def test_time_limits_and_the_runtime_of_retries(preflight):
    short = {"set-resources": {"train_task": {"slurm_partition": "short"}}}
    status, said = preflight(SITE, resources={"train_task": {"runtime": 45}}, profile=short)
    assert status == 2 and "resources.train_task.runtime = 45" in said and "at most 30 min" in said
    # the base runtime fits, but runtime x attempt outgrows the limit within the profile's retries: a warning only
    status, said = preflight(SITE, resources={"train_task": {"runtime": 20}}, profile=short)
    assert status == 0 and said.startswith("taskcodec: warning: resources.train_task.runtime = 20") \
        and "up to 60 min with retries = 2 in" in said and len(said.splitlines()) == 1, said
    assert preflight(SITE, "--retries", "0", resources={"train_task": {"runtime": 20}}, profile=short) == (0, "")


def test_a_gpu_rule_without_a_gpu_partition_names_the_profile_key(preflight, tmp_path):
    status, said = preflight(CI, resources={"train_codec": {"gpu": 1}})
    assert status == 2 and said == (
        f"taskcodec: rules train_codec, train_scalable, train_variable_rate ask for GPUs (resources.train_codec.gpu = 1 "
        f"in {tmp_path}/"
        "params.yaml), but no partition is configured for it, so it would go to the cluster's default partition "
        "cpu, which has no GPUs (no gpu GRES in sinfo); set `set-resources: train_codec: slurm_partition:` (and the "
        f"same for train_scalable, train_variable_rate) in {tmp_path}/profile/config.yaml to a partition with GPUs "
        "(sinfo shows none on "
        "this cluster), or set resources.train_codec.gpu to 0 to run it on CPUs\n")
    # the profile names a partition without GPUs: that key, and the partitions that have them
    status, said = preflight(SITE, resources={"train_codec": {"gpu": 1}},
                             profile={"set-resources": {rule: {"slurm_partition": "short"} for rule in TRAINING}})
    assert status == 2 and "the partition configured for it, set-resources: train_codec: slurm_partition = short" \
        in said and "set that key to a partition with GPUs (gpu)" in said
    # a GPU partition: fits up to the GPUs of one node
    gpu = {"set-resources": {rule: {"slurm_partition": "gpu"} for rule in TRAINING}}
    assert preflight(SITE, resources={"train_codec": {"gpu": 4}}, profile=gpu, scontrol=SITE_SCONTROL) == (0, "")
    status, said = preflight(SITE, resources={"train_codec": {"gpu": 8}}, profile=gpu)
    assert status == 2 and "more GPUs than partition gpu allows (at most 4 per node)" in said
    status, said = preflight(SITE, resources={"train_codec": {"gpu": 1, "threads": 32, "mem_mb": 256000}},
                             profile=gpu, scontrol=SITE_SCONTROL)
    assert status == 2 and "on one node, which no node of partition gpu has" in said


def test_partitions_that_do_not_exist(preflight):
    status, said = preflight(SITE, "--default-resources", "slurm_partition=bigmem")
    assert status == 2 and len(said.splitlines()) == 1, said
    assert "default-resources: slurm_partition = bigmem on the command line names a partition this cluster does " \
           "not have (sinfo lists cpu, gpu, short)" in said
    status, said = preflight("cpu|2|24105|infinite|(null)\n")
    assert status == 2 and "this cluster has no default one" in said and "`default-resources: slurm_partition:`" \
        in said


def test_the_settings_snakemake_would_use_win(preflight, tmp_path):
    too_much = {"train_codec": {"mem_mb": 64000}}
    assert preflight(CI, "--set-resources", "train_codec:mem_mb=2000", "train_scalable:mem_mb=2000",
                     "train_variable_rate:mem_mb=2000", resources=too_much) == (0, "")
    status, said = preflight(CI, profile={"set-resources": {"train_codec": {"mem_mb": 64000}}})
    assert status == 2 and f"set-resources: train_codec: mem_mb = 64000 in {tmp_path}/profile/config.yaml" in said
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"resources": too_much}))
    status, said = preflight(CI, "--configfile", str(tmp_path / "study.yaml"))
    assert status == 2 and f"resources.train_codec.mem_mb = 64000 in {tmp_path}/study.yaml" in said


# --- the real cluster --------------------------------------------------------------------------------------------

def submitted_jobs() -> set[str]:
    """Every job SLURM knows of, finished ones included (start.sh keeps them visible for MinJobAge)."""
    return set(subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], capture_output=True, text=True,
                              check=True).stdout.split())


def test_on_slurm_a_job_that_does_not_fit_stops_the_run_before_any_submission(slurm, tmp_path):
    started = time.monotonic()
    memory = int(subprocess.run(["sinfo", "-h", "-o", "%m"], capture_output=True, text=True).stdout.split()[0])
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    jobs_before = submitted_jobs()
    for stage, keys, expected in [("train_codec", {"mem_mb": memory + 1000},
                                   f"resources.train_codec.mem_mb = {memory + 1000} in {tmp_path}/params.yaml asks "
                                   f"for more memory than partition cpu allows (at most {memory} MB per node)"),
                                  ("finetune_codec", {"gpu": 1}, "set `set-resources: finetune_codec: slurm_partition:`"
                                   f" in {PROFILE}/config.yaml to a partition with GPUs")]:
        params = copy.deepcopy(shipped)
        params["resources"][stage].update(keys)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        result = subprocess.run(["bash", "scripts/pipeline.sh", "--profile", PROFILE, "--snakefile", "Snakefile",
                                 "--directory", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and expected in result.stderr, result.stdout + result.stderr
        assert "Building DAG" not in result.stdout + result.stderr  # Snakemake never started
    assert submitted_jobs() == jobs_before
    # the shipped params.yaml fits: preflight.sh prints only the extra arguments this cluster needs
    result = subprocess.run(["bash", "scripts/slurm/preflight.sh", "--profile", PROFILE], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.split() in ([], ["--slurm-status-command", "squeue"])
    print(f"preflight on SLURM: {time.monotonic() - started:.1f} s")
