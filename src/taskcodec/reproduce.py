"""Rerun a tracked pipeline invocation from its commit and exact params, and compare the numbers.

``python -m taskcodec.reproduce RUN_ID`` takes an MLflow run of the pipeline
(the parent run, or one job's child run), reads its git commit and the exact
resolved config (the parent run's ``params.yaml`` artifact), checks the commit
out with ``git worktree add --detach`` into ``--workdir`` (default: a new
temporary folder, kept for inspection; remove it with
``git worktree remove <dir>``), restores the DVC-tracked inputs of that commit
from the project's DVC cache, and runs the whole pipeline there with this
interpreter's Snakemake and the checkout's own code (``PYTHONPATH``). The
reproduction records into the same tracking store and experiment, as a parent
run tagged ``taskcodec.reproduces=<RUN_ID>``; its results go to
``<workdir>/results``. Then every metric of the original child runs (or of the
one child given) is compared with the reproduction's child run of the same
name, except timings; the exit status is 0 only when all agree within
``--rtol``. ``--dry-run`` shows the commit, how the params differ from the
current ``params.yaml`` and the command, and runs nothing.

A DVC experiment reproduces without this module: ``dvc exp apply <exp>`` (or
``dvc exp branch <exp> <branch>`` and check that branch out) restores its code,
``params.yaml`` and ``dvc.lock``; ``bash scripts/pipeline.sh --forceall`` reruns
every job (``dvc repro`` would find the persisted outputs up to date); and
``dvc exp diff <exp>`` compares its params and metrics with the workspace's.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from taskcodec import tracking
from taskcodec.errors import UserError
from taskcodec.stages.cli import run

#: metric names that measure time or speed, which no rerun repeats
TIMING = re.compile(r"seconds|elapsed|time|per_s(?![a-z])|per_second")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id", help="MLflow run id of a pipeline run or of one of its job runs")
    parser.add_argument("--workdir", type=Path,
                        help="new or empty folder for the checkout and its results (default: a new temporary folder)")
    parser.add_argument("--repo", type=Path, help="git repository holding the commit (default: the one of this code)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: as the pipeline resolves it)")
    parser.add_argument("--cores", default="all", help="Snakemake --cores for the rerun")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance for equal metrics")
    parser.add_argument("--dry-run", action="store_true", help="show commit, params changes and command; run nothing")
    return parser


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute, so it means the same store from the checkout."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not Path(uri[len(prefix):]).is_absolute():
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def git(repo: Path, *args: str) -> str:
    """Output of a git command in ``repo``; a failure is a UserError quoting git."""
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


class Original:
    """The tracked run to reproduce: its pipeline (parent) run, commit and params."""

    def __init__(self, client, uri: str, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise UserError(f"run {run_id} is not in the tracking store {uri}; "
                            "check the id or pass --tracking-uri") from None
        parent_id = run.data.tags.get("mlflow.parentRunId")
        self.parent = client.get_run(parent_id) if parent_id else run
        self.child = run if parent_id else None
        self.experiment = client.get_experiment(run.info.experiment_id).name
        tags = self.parent.data.tags
        self.commit = tags.get("git_commit", "unknown")
        self.dirty = tags.get("git_dirty") == "true"
        if self.commit == "unknown":
            raise UserError(f"run {self.parent.info.run_id} records no git commit (its code was not a git "
                            "checkout), so it cannot be reproduced from the repository")
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = client.download_artifacts(self.parent.info.run_id, tracking.PARAMS_ARTIFACT, folder)
            except (MlflowException, OSError):
                raise UserError(f"run {self.parent.info.run_id} has no {tracking.PARAMS_ARTIFACT} artifact (it "
                                "predates it); rerun its commit by hand with the params shown in the MLflow UI") from None
            self.params = yaml.safe_load(Path(path).read_text())


def params_changes(current: dict[str, Any], recovered: dict[str, Any]) -> list[str]:
    """``key: current -> recovered`` for every flattened key whose value differs."""
    old, new = tracking.flatten(current), tracking.flatten(recovered)
    return [f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def snakemake_command(workdir: Path, cores: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"), "--directory",
            str(workdir), "--profile", str(workdir / "workflow" / "profiles" / "local"), "--cores", str(cores)]


def checkout(repo: Path, commit: str, workdir: Path) -> None:
    """A detached worktree of ``commit`` in ``workdir``, with its DVC-tracked inputs from ``repo``'s DVC cache."""
    if workdir.exists() and any(workdir.iterdir()):
        raise UserError(f"--workdir {workdir} is not empty; pass a new folder")
    git(repo, "worktree", "add", "--detach", str(workdir), commit)
    targets = git(workdir, "ls-files", "*.dvc").split()
    if targets:
        dvc = str(Path(sys.executable).parent / "dvc")
        cache = subprocess.run([dvc, "cache", "dir"], cwd=repo, capture_output=True, text=True,
                               check=True).stdout.strip()
        subprocess.run([dvc, "config", "--local", "cache.dir", str(cache)], cwd=workdir, check=True)
        result = subprocess.run([dvc, "checkout", *targets], cwd=workdir, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"the DVC-tracked inputs of commit {commit} are not in {cache}; run "
                            f"`dvc fetch --all-commits` in {repo} and retry (dvc said: {result.stderr.strip()[-300:]})")


def reproduction_of(client, original: Original, since_ms: int):
    """The newest pipeline run tagged as reproducing ``original`` that started after ``since_ms``."""
    wanted = (original.child or original.parent).info.run_id
    runs = client.search_runs([original.parent.info.experiment_id],
                              f"tags.`{tracking.REPRODUCES_TAG}` = '{wanted}' and attributes.start_time >= {since_ms}",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError(f"the rerun recorded no run tagged {tracking.REPRODUCES_TAG}={wanted}; see its output above")
    return runs[0]


def children(client, parent) -> dict[str, Any]:
    """Finished child runs of ``parent`` by run name (the newest of a name, when a job was retried)."""
    found, token = {}, None
    while True:
        page = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time ASC"], page_token=token)
        found.update({run.info.run_name: run for run in page})
        token = page.token
        if not token:
            return found


def same(a: float, b: float, rtol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def compare(originals: dict[str, Any], reproduced: dict[str, Any], rtol: float) -> list[dict[str, Any]]:
    """One row per (run name, metric) of ``originals`` that is not a timing, with the reproduced value."""
    rows = []
    for name, child in sorted(originals.items()):
        again = reproduced.get(name)
        for metric, value in sorted(child.data.metrics.items()):
            if TIMING.search(metric):
                continue
            new = again.data.metrics.get(metric) if again else None
            rows.append({"run": name, "metric": metric, "original": value, "reproduced": new,
                         "match": new is not None and same(value, new, rtol)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Reproduce the run; 0 when every compared metric matches, else 1."""
    import mlflow
    from tabulate import tabulate

    args = build_parser().parse_args(argv)
    uri = absolute_uri(args.tracking_uri or tracking.resolve_uri())
    client = mlflow.MlflowClient(tracking_uri=uri)
    original = Original(client, uri, args.run_id)
    repo = (args.repo or Path(__file__).resolve().parent).resolve()
    repo = Path(git(repo, "rev-parse", "--show-toplevel"))
    if subprocess.run(["git", "cat-file", "-e", f"{original.commit}^{{commit}}"], cwd=repo,
                      capture_output=True).returncode != 0:
        raise UserError(f"commit {original.commit} of run {args.run_id} is not in the repository {repo}; "
                        "fetch it there or pass --repo")
    if original.dirty:
        print(f"warning: run {original.parent.info.run_id} ran with uncommitted changes; commit "
              f"{original.commit[:12]} does not hold its exact code", file=sys.stderr)
    params = {**original.params, "results_dir": "results"}
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix=f"taskcodec-reproduce-{args.run_id[:8]}-"))).resolve()
    command = snakemake_command(workdir, args.cores)
    if args.dry_run:
        current = yaml.safe_load((repo / "params.yaml").read_text()) if (repo / "params.yaml").is_file() else {}
        print(f"run {args.run_id}: pipeline run {original.parent.info.run_id}, commit {original.commit}")
        changes = params_changes(current, params)
        print(f"params.yaml changes ({repo / 'params.yaml'} -> recovered):")
        print("\n".join(f"  {line}" for line in changes) if changes else "  none")
        print("would run: " + " ".join(command))
        return 0

    checkout(repo, original.commit, workdir)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, tracking.URI_ENV: uri, tracking.EXPERIMENT_ENV: original.experiment,
           tracking.REPRODUCES_ENV: (original.child or original.parent).info.run_id,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir / "src"), os.environ.get("PYTHONPATH")]))}
    print(f"reproducing run {args.run_id} (commit {original.commit[:12]}) in {workdir}", flush=True)
    started_ms = int(time.time() * 1000) - 1000
    result = subprocess.run(command, cwd=workdir, env=env)
    if result.returncode != 0:
        raise UserError(f"the rerun of run {args.run_id} failed (Snakemake exit {result.returncode}); "
                        f"see its output above and the logs under {workdir / 'results' / 'logs'}")

    again = reproduction_of(client, original, started_ms)
    originals = ({original.child.info.run_name: original.child} if original.child
                 else children(client, original.parent))
    rows = compare(originals, children(client, again), args.rtol)
    print(tabulate(rows, headers="keys", floatfmt=".10g"))
    mismatches = [row for row in rows if not row["match"]]
    print(f"\nreproduction: pipeline run {again.info.run_id}; {len(rows) - len(mismatches)} of {len(rows)} metrics "
          f"match (rtol {args.rtol:g})")
    for row in mismatches:
        print(f"mismatch: {row['run']} {row['metric']}: {row['original']} -> {row['reproduced']}")
    return 1 if mismatches or not rows else 0


if __name__ == "__main__":
    run(lambda argv: sys.exit(main(argv)))
