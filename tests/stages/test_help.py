"""Every stage's ``--help`` prints its usage: a user's first command must never end in a traceback."""

import pkgutil

import pytest

import taskcodec.stages
from taskcodec.stages import cli

STAGES = sorted(module.name for module in pkgutil.iter_modules(taskcodec.stages.__path__) if module.name != "cli")


@pytest.mark.parametrize("stage", STAGES)
def test_help_prints_the_usage(stage, capsys):
    module = __import__(f"taskcodec.stages.{stage}", fromlist=["main"])
    with pytest.raises(SystemExit) as stopped:
        module.main(["--help"])
    assert stopped.value.code == 0
    assert f"taskcodec.stages.{stage}" in capsys.readouterr().out


def test_the_memory_help_shows_its_percentage():
    import argparse

    parser = argparse.ArgumentParser()
    cli.memory_argument(parser)
    assert "% of it decoded" in parser.format_help()
