"""Before a pipeline run submits to SLURM: does every job fit the partition it goes to?

SLURM refuses a job that asks for more than its partition allows only when Snakemake submits it, one job at a
time and possibly hours into a run. ``scripts/slurm/preflight.sh`` therefore runs this with Snakemake's own
arguments (``python -m taskcodec.slurm_preflight --profile workflow/profiles/slurm [--directory D]
[--configfile F] [--set-resources r:k=v] [--default-resources k=v] [--retries n] ...``) and stops the
run before any submission. What each job asks for is read as Snakemake reads it: the ``resources`` section of
``params.yaml`` (in ``--directory``, overridden by the ``--configfile`` files) for the rules that declare
``job_resources(<stage>)`` in the workflow's rule files, the profile's ``default-resources`` for the other
non-local rules, and ``set-resources`` over both (each option given on the command line replaces the profile's;
``--config`` cannot give these numbers, as Snakemake reads a nested value given there as text).
What each partition allows comes from ``sinfo`` (CPUs, memory and GPUs of its nodes, its time limit, the default
partition) and ``scontrol show partition`` (``MaxMemPerNode``).

Every problem is printed as one sentence naming the key to change, and the exit status is then 2; a run that
fits prints nothing. A warning (exit 0) says when the runtime of a retried job, which grows with the attempt
(runtime x attempt), would outgrow its partition's time limit within the profile's ``retries``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from taskcodec.errors import UserError

SINFO = ("sinfo", "-h", "-e", "-o", "%P|%c|%m|%l|%G")  # one line per kind of node of each partition
SCONTROL = ("scontrol", "show", "partition", "-o")  # one line per partition
# what a job asks for: params key (resources.<stage>.<key>) -> (set-resources key, what it is, its unit of a limit)
AMOUNTS = {"threads": ("cpus_per_task", "CPU cores", "per node"), "mem_mb": ("mem_mb", "memory", "MB per node"),
           "runtime": ("runtime", "time", "min"), "gpu": ("gpu", "GPUs", "per node")}
NODE_FIELD = {"threads": "cpus", "mem_mb": "mem_mb", "gpu": "gpus"}
COMMAND_LINE = "the command line"  # the origin of a setting given as a Snakemake argument
RULE = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:|^use\s+rule\s+(\w+)\s+as\s+(\w+)", re.M)


@dataclass(frozen=True)
class Setting:
    """A value a job asks for and where it is set, e.g. ``resources.train_codec.mem_mb = 64000 in params.yaml``."""

    key: str
    value: Any
    origin: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value} {'on' if self.origin == COMMAND_LINE else 'in'} {self.origin}"


@dataclass(frozen=True)
class Node:
    """One kind of node of a partition (a line of ``sinfo -e``)."""

    cpus: int
    mem_mb: int
    gpus: int


@dataclass
class Partition:
    """What one job may ask for in a partition."""

    name: str
    default: bool = False
    max_minutes: int | None = None  # the time limit; None: none
    max_mem_mb: int | None = None  # MaxMemPerNode; None: the nodes' memory
    nodes: list[Node] = field(default_factory=list)

    def allows(self, amount: str) -> int | None:
        """The most one job may ask for of ``amount`` (a key of :data:`AMOUNTS`); None: no limit."""
        if amount == "runtime":
            return self.max_minutes
        return max((self._on(node, amount) for node in self.nodes), default=0)

    def fits(self, asks: dict[str, int]) -> bool:
        """Whether one node has all of ``asks`` (amount -> value) at once."""
        return any(all(value <= self._on(node, amount) for amount, value in asks.items() if amount in NODE_FIELD)
                   for node in self.nodes)

    def _on(self, node: Node, amount: str) -> int:
        """The most one job may ask for of ``amount`` on ``node``."""
        most = getattr(node, NODE_FIELD[amount])
        return min(most, self.max_mem_mb) if amount == "mem_mb" and self.max_mem_mb is not None else most


def minutes(limit: str) -> int | None:
    """A SLURM time limit (``infinite``, ``UNLIMITED``, ``45``, ``30:00``, ``2:00:00``, ``1-12``, ``1-00:00:00``)
    in whole minutes; None for no limit."""
    text = limit.strip().lower()
    if text in ("infinite", "unlimited"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        hours, mins, secs = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # hours:minutes:seconds
        hours, mins, secs = parts
    else:  # minutes[:seconds]
        hours, (mins, secs) = 0, (parts + [0])[:2]
    return ((int(days or 0) * 24 + hours) * 60 * 60 + mins * 60 + secs) // 60


def gpus(gres: str) -> int:
    """The GPUs of a node in ``sinfo``'s GRES field, e.g. ``gpu:a100:4(S:0-1),mps:400`` -> 4, ``(null)`` -> 0."""
    count = 0
    for entry in re.split(r",(?![^(]*\))", gres):
        name, *rest = re.sub(r"\(.*\)$", "", entry.strip()).split(":")
        if name == "gpu":
            count += int(rest[-1]) if rest and rest[-1].isdigit() else 1
    return count


def read_partitions(sinfo: str, scontrol: str) -> dict[str, Partition]:
    """The partitions in the outputs of :data:`SINFO` and :data:`SCONTROL`, by name."""
    partitions: dict[str, Partition] = {}
    for line in sinfo.splitlines():
        if not line.strip():
            continue
        try:
            name, cpus, memory, limit, gres = line.strip().split("|")
            node = Node(int(cpus.rstrip("+")), int(memory.rstrip("+")), gpus(gres))
            partition = partitions.setdefault(name.rstrip("*"), Partition(name.rstrip("*")))
            partition.max_minutes = minutes(limit)
        except ValueError:
            raise UserError(f"could not read this line of `{' '.join(SINFO)}`: {line.strip()}") from None
        partition.default = partition.default or name.endswith("*")
        partition.nodes.append(node)
    for line in scontrol.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("PartitionName") in partitions and fields.get("MaxMemPerNode", "").isdigit():
            partitions[fields["PartitionName"]].max_mem_mb = int(fields["MaxMemPerNode"])
    return partitions


def ask_slurm(command: Sequence[str]) -> str:
    """The output of a SLURM client command; a :class:`UserError` when the controller does not answer."""
    shown = " ".join(command)
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"could not run `{shown}` ({err}), which the checks before submission need") from None
    if result.returncode != 0:
        raise UserError(f"`{shown}` failed ({result.stderr.strip() or f'exit {result.returncode}'}): the cluster's "
                        "controller must answer before jobs can be submitted; try again, or ask your admins")
    return result.stdout


def read_rules(snakefile: Path) -> tuple[dict[str, str | None], set[str]]:
    """The rules of the workflow with the ``params.yaml`` stage whose resources each declares
    (``job_resources(<stage>)``; None: none, so the profile's default-resources apply), and the local rules."""
    texts, pending = [], [snakefile]
    while pending:
        path = pending.pop(0)
        text = path.read_text()
        texts.append(text)
        pending += [path.parent / name for name in re.findall(r"^include:\s*[\"'](.+?)[\"']", text, re.M)]
    stages: dict[str, str | None] = {}
    local: set[str] = set()
    for text in texts:
        matches = list(RULE.finditer(text))
        for match, after in zip(matches, [*matches[1:], None]):
            body = text[match.end():after.start() if after else len(text)]
            body = re.split(r"\n(?=[^\s#])", body, maxsplit=1)[0]  # to the next statement that is not indented
            declared = re.search(r"job_resources\(\s*[\"'](\w+)[\"']\s*\)", body)
            base = stages.get(match[2]) if match[2] else None  # `use rule <base> as <name>` inherits its resources
            stages[match[1] or match[3]] = declared[1] if declared else base
        for block in re.findall(r"^localrules:(.*(?:\n[ \t]+.*)*)", text, re.M):
            local |= set(re.findall(r"\w+", re.sub(r"#.*", "", block)))
    return stages, local


@dataclass
class Run:
    """A pipeline run as Snakemake's arguments describe it: its config files, profile options and rules."""

    configs: list[tuple[str, dict]]  # (where, contents), later ones override earlier ones
    profile: str  # the profile's config.yaml, for messages
    default_resources: dict[str, Setting]
    set_resources: dict[str, dict[str, Setting]]  # rule -> key -> setting
    retries: Setting | None
    stages: dict[str, str | None]
    local: set[str]

    def params(self, stage: str, amount: str) -> Setting | None:
        """``resources.<stage>.<amount>`` of the config, and where it was set last."""
        found = None
        for origin, config in self.configs:
            value = config.get("resources") if isinstance(config, dict) else None
            value = value.get(stage) if isinstance(value, dict) else None
            value = value.get(amount) if isinstance(value, dict) else None
            if value is not None:
                found = Setting(f"resources.{stage}.{amount}", value, origin)
        return found


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"could not read {path}: {err}") from None


def _assignments(entries: Any) -> dict[str, Any]:
    """``key=value`` entries (the command-line and list forms) or a mapping (a profile's), as a mapping."""
    if isinstance(entries, dict):
        return entries
    pairs = [str(entry).partition("=") for entry in entries or []]
    return {key.strip(): _scalar(value) for key, sep, value in pairs if sep}


def _scalar(text: str) -> Any:
    text = text.strip().strip("'\"")
    return int(text) if text.isdigit() else text


def read_run(argv: Sequence[str]) -> Run:
    """The :class:`Run` of Snakemake's arguments ``argv`` (others are ignored)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    parser.add_argument("--profile")
    parser.add_argument("--directory", "-d", type=Path, default=Path("."))
    parser.add_argument("--snakefile", "-s", type=Path, default=Path("Snakefile"))
    parser.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[])
    parser.add_argument("--default-resources", "--default-res", nargs="*")
    parser.add_argument("--set-resources", nargs="+")
    parser.add_argument("--retries", "--restart-times", "-T", type=int)
    args, _ = parser.parse_known_args(argv)
    profile_file = Path(args.profile or "", "config.yaml")
    profile = _load_yaml(profile_file) if args.profile and profile_file.is_file() else {}
    where = str(profile_file) if args.profile else "your profile's config.yaml"

    def option(name: str) -> tuple[Any, str]:
        """An option's value and origin: from the command line if given there, else from the profile."""
        given = getattr(args, name.replace("-", "_"))
        return (given, COMMAND_LINE) if given is not None else (profile.get(name), where)

    params_file = args.directory / "params.yaml"
    configs = [(str(params_file), _load_yaml(params_file))] if params_file.is_file() else []
    configs += [(path, _load_yaml(Path(path))) for path in args.configfile]
    entries, origin = option("default-resources")
    defaults = {key: Setting(f"default-resources: {key}", value, origin)
                for key, value in _assignments(entries).items()}
    entries, origin = option("set-resources")
    if not isinstance(entries, dict):  # rule:key=value entries
        grouped: dict[str, list[str]] = {}
        for entry in entries or []:
            rule, _, assignment = str(entry).partition(":")
            grouped.setdefault(rule, []).append(assignment)
        entries = grouped
    overrides = {rule: {key: Setting(f"set-resources: {rule}: {key}", value, origin)
                        for key, value in _assignments(values).items()} for rule, values in entries.items()}
    retries, origin = option("retries")
    stages, local = read_rules(args.snakefile) if args.snakefile.is_file() else ({}, set())
    return Run(configs, where, defaults, overrides,
               Setting("retries", retries, origin) if isinstance(retries, int) else None, stages, local)


@dataclass(frozen=True)
class Job:
    """What the jobs of one rule ask for."""

    rule: str
    asks: tuple[tuple[str, Setting], ...]  # (amount, setting) for the amounts set as whole numbers
    partition: Setting | None  # None: the cluster's default partition


def jobs(run: Run) -> list[Job]:
    """What the job of every rule that is submitted (not a local rule) asks for."""
    found = []
    for rule, stage in run.stages.items():
        if rule in run.local:
            continue
        overrides = run.set_resources.get(rule, {})
        asks = []
        for amount, (resource, _, _) in AMOUNTS.items():
            setting = overrides.get(resource) or (run.params(stage, amount) if stage else None)
            if stage is None and setting is None and amount in ("mem_mb", "runtime"):
                setting = run.default_resources.get(amount)
            if setting is not None and isinstance(setting.value, int) and not isinstance(setting.value, bool):
                asks.append((amount, setting))
        partition = overrides.get("slurm_partition") or run.default_resources.get("slurm_partition")
        found.append(Job(rule, tuple(asks), partition))
    return found


def problems(job: Job, partitions: dict[str, Partition], retries: Setting | None) -> tuple[list[tuple], list[tuple]]:
    """The errors and warnings of one job, each a tuple that names no rule (so rules with the same problem share
    one sentence): its first item says which, :func:`sentence` words it."""
    if job.partition is not None:
        partition = partitions.get(str(job.partition.value))
        if partition is None:
            return [("unknown", job.partition, tuple(partitions))], []
    else:
        partition = next((candidate for candidate in partitions.values() if candidate.default), None)
        if partition is None:
            return [("no default", tuple(partitions))], []
    errors, warnings = [], []
    asks = dict(job.asks)
    gpu = asks.get("gpu")
    if gpu is not None and gpu.value > 0 and partition.allows("gpu") == 0:
        with_gpus = tuple(name for name, candidate in partitions.items() if candidate.allows("gpu"))
        errors.append(("no gpus", gpu, partition.name, job.partition, with_gpus))
        del asks["gpu"]
    for amount, setting in asks.items():
        limit = partition.allows(amount)
        if limit is not None and setting.value > limit:
            errors.append(("too much", setting, amount, partition.name, limit))
    if not errors and not partition.fits({amount: setting.value for amount, setting in asks.items()}):
        errors.append(("no node", tuple(asks.values()), partition.name))
    runtime, limit = asks.get("runtime"), partition.max_minutes
    if runtime is not None and retries is not None and limit is not None and runtime.value <= limit:
        if runtime.value * (retries.value + 1) > limit:
            warnings.append(("retries", runtime, retries, partition.name, limit))
    return errors, warnings


def sentence(problem: tuple, rules: list[str], profile: str) -> str:
    """One problem of :func:`problems` for ``rules``, as one sentence naming what to change."""
    kind, *details = problem
    named = f"rule {rules[0]}" if len(rules) == 1 else f"rules {', '.join(rules)}"
    verb_s = "s" if len(rules) == 1 else ""  # "rule x asks", "rules x, y ask"
    route = f"`set-resources: {rules[0]}: slurm_partition:`" + (
        f" (and the same for {', '.join(rules[1:])})" if len(rules) > 1 else "") + f" in {profile}"
    if kind == "unknown":
        setting, names = details
        return (f"{setting} names a partition this cluster does not have (sinfo lists {', '.join(names)}) for "
                f"{named}; set it to one of those")
    if kind == "no default":
        (names,) = details
        return (f"{named} name{verb_s} no partition and this cluster has no default one (none marked * in sinfo); set "
                f"`default-resources: slurm_partition:` in {profile} to one of {', '.join(names)}")
    if kind == "no gpus":
        gpu, partition, chosen, with_gpus = details
        where = (f"the partition configured for it, {chosen}," if chosen is not None
                 else f"no partition is configured for it, so it would go to the cluster's default partition "
                      f"{partition}, which")
        choices = f"({', '.join(with_gpus)})" if with_gpus else "(sinfo shows none on this cluster)"
        key = "that key" if chosen is not None and chosen.key.startswith("set-resources") else route
        return (f"{named} ask{verb_s} for GPUs ({gpu}), but {where} has no GPUs (no gpu GRES in sinfo); set {key} to a "
                f"partition with GPUs {choices}, or set {gpu.key} to 0 to run it on CPUs")
    if kind == "too much":
        setting, amount, partition, limit = details
        _, words, unit = AMOUNTS[amount]
        return (f"{setting} asks for more {words} than partition {partition} allows (at most {limit} {unit}) for "
                f"{named}; lower it to {limit} or less, or name a partition that allows more with {route}")
    if kind == "no node":
        settings, partition = details
        return (f"{named} ask{verb_s} for {' and '.join(map(str, settings))} on one node, which no node of partition "
                f"{partition} has; lower them, or name a partition with larger nodes with {route}")
    runtime, retries, partition, limit = details
    return (f"{runtime} fits partition {partition} (at most {limit} min), but a retried job asks for runtime x "
            f"attempt, up to {runtime.value * (retries.value + 1)} min with {retries}, which SLURM would refuse "
            f"for {named}; lower retries or the runtime, or name a partition with a longer time limit with {route}")


def check(run: Run, partitions: dict[str, Partition]) -> tuple[list[str], list[str]]:
    """The errors and the warnings of ``run`` on ``partitions``, as sentences."""
    found: tuple[dict[tuple, list[str]], dict[tuple, list[str]]] = ({}, {})
    for job in jobs(run):
        for kept, listed in zip(found, problems(job, partitions, run.retries)):
            for problem in listed:
                kept.setdefault(problem, []).append(job.rule)
    errors, warnings = ([sentence(problem, rules, run.profile) for problem, rules in kept.items()] for kept in found)
    return errors, warnings


def main(argv: Sequence[str] | None = None) -> int:
    """Check the run of Snakemake's arguments ``argv``; print each problem to stderr; 2 when a job does not fit."""
    try:
        run = read_run(sys.argv[1:] if argv is None else argv)
        errors, warnings = check(run, read_partitions(ask_slurm(SINFO), ask_slurm(SCONTROL)))
    except UserError as err:
        errors, warnings = [str(err)], []
    for line in warnings:
        print(f"taskcodec: warning: {line}", file=sys.stderr)
    for line in errors:
        print(f"taskcodec: {line}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
