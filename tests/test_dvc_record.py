"""A finished pipeline run is recorded in DVC only when it is what `dvc repro` runs (taskcodec.dvc_record)."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taskcodec import dvc_record, tracking

PARAMS = {"results_dir": "results", "tracking": {"uri": None}, "resources": {"device": "auto"},
          "codec": {"train": {"steps": 12}}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("DVC_STAGE", tracking.REPRODUCES_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return tmp_path


def changed(key: str, value) -> dict:
    config = copy.deepcopy(PARAMS)
    config[key] = value
    return config


def test_a_whole_run_of_params_yaml_is_recorded_whatever_its_run_settings(project):
    assert dvc_record.should_record(PARAMS, True, project)
    assert dvc_record.should_record(changed("resources", {"device": "cpu"}), True, project)
    assert dvc_record.should_record(changed("tracking", {"uri": "sqlite:///x.db"}), True, project)


@pytest.mark.parametrize("config, whole", [(PARAMS, False), (changed("codec", {"train": {"steps": 5}}), True),
                                          (changed("results_dir", "out"), True)],
                         ids=["some targets", "other params", "other results folder"])
def test_a_run_dvc_repro_would_not_make_is_not_recorded(project, config, whole):
    assert not dvc_record.should_record(config, whole, project)


@pytest.mark.parametrize("variable", ["DVC_STAGE", tracking.REPRODUCES_ENV])
def test_runs_under_dvc_or_in_a_reproduction_are_not_recorded(project, monkeypatch, variable):
    monkeypatch.setenv(variable, "x")
    assert not dvc_record.should_record(PARAMS, True, project)


def test_outside_a_dvc_repository_nothing_is_recorded(project):
    (project / ".dvc").rmdir()
    assert not dvc_record.should_record(PARAMS, True, project)


def test_a_failed_record_says_what_dvc_said_and_what_it_means(project, capsys):
    (project / ".dvc").rmdir()
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, check=True)
    (project / "dvc.yaml").write_text("stages:\n  pipeline:\n    cmd: 'true'\n    outs: [results/codecs]\n")
    dvc_record.record(PARAMS, True, project)
    said = capsys.readouterr().out
    assert said.startswith("taskcodec: warning: DVC could not record this run (") and "results/codecs" in said
    assert said.rstrip().endswith("would replace its outputs with those of dvc.lock; fix that and run "
                                  "`dvc commit pipeline`")


def test_outs_of_a_switched_off_branch_are_created_empty_so_dvc_finds_them(project):
    """With no tasks (or no scalable codecs) no job makes results/task, and `dvc repro` would stop there."""
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pipeline": {"cmd": "x", "outs": [
        {"results/codecs": {"persist": True}}, {"results/task": {"persist": True}}, "results/report"]}}}))
    (project / "results" / "codecs").mkdir(parents=True)
    (project / "results" / "codecs" / "model.pt").write_bytes(b"kept")
    assert dvc_record.create_absent_outs(PARAMS, False, project) == []  # some targets only: not DVC's run
    created = dvc_record.create_absent_outs(PARAMS, True, project)
    assert created == [project / "results" / "task", project / "results" / "report"]
    assert all(path.is_dir() and not any(path.iterdir()) for path in created)
    assert (project / "results" / "codecs" / "model.pt").read_bytes() == b"kept"
    assert dvc_record.create_absent_outs(changed("results_dir", "out"), True, project) == []
