"""The workflow follows the Snakemake catalog's conventions: `snakemake --lint` reports nothing."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def lint(snakefile: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
                           str(workdir), "--lint"], capture_output=True, text=True, cwd=workdir)


def test_the_workflow_has_no_lints():
    result = lint(ROOT / "Snakefile", ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in output


def test_lint_finds_what_this_workflow_avoids(tmp_path):
    """The check above can fail: the same command flags a rule built the way the rules were before."""
    (tmp_path / "Snakefile").write_text('OUT = "out"\n\n\nrule bad:\n    output:\n        OUT + "/logs/x.txt",\n'
                                        '    shell:\n        "echo {OUT} > {output}"\n')
    result = lint(tmp_path / "Snakefile", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for lint_title in ("Path composition with '+'", 'Absolute path "/logs/x.txt"',
                       "Shell command directly uses variable OUT from outside of the rule",
                       "Specify a conda environment or container for each rule"):
        assert lint_title in output, output


def test_every_shell_rule_names_the_conda_environment_of_the_project():
    rule_files = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
    shell_rules = sum(len(re.findall(r"^rule \w+:", path.read_text(), flags=re.M)) for path in rule_files)
    conda_directives = sum(path.read_text().count("    conda:\n        CONDA_ENV\n") for path in rule_files)
    assert shell_rules == conda_directives == 17
    assert 'CONDA_ENV = "../../environment.yml"' in (ROOT / "workflow" / "rules" / "common.smk").read_text()


def test_the_conda_environment_holds_the_dependencies_of_pyproject():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [re.sub(r"\s", "", item) for item in pip] == [re.sub(r"\s", "", item) for item in project["dependencies"]]
    assert f"python={sys.version_info.major}.{sys.version_info.minor}" in environment["dependencies"]
