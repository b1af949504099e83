"""A SLURM sweep's request, checked before anything is submitted: one task per device on each of
``trainer.num_nodes`` nodes (a mismatch hangs Lightning instead of failing), and no more nodes, CPUs or GPUs per
node than the partition has (asked of ``sinfo`` when SLURM answers; else sbatch decides)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from advnets.errors import UserError

SINFO_TIMEOUT_S = 10


@dataclass(frozen=True)
class Request:
    """What the sweep's sbatch script asks for, from the sweep's own (base) config."""

    nodes: int
    tasks_per_node: int
    cpus_per_task: int
    gpus_per_node: int
    partition: str | None


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    gpus: int


def is_slurm(config: DictConfig) -> bool:
    """Whether this multirun submits its jobs to SLURM (hydra/launcher=slurm or submitit_slurm)."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    return "submitit_launcher" in target and target.endswith("SlurmLauncher")


def _count(value: object, key: str) -> int:
    """A positive whole number of ``value`` (``key`` names it in the message)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise UserError(
            f"{key}={value} with hydra/launcher=slurm; allowed: a number >= 1 (SLURM's resources are fixed at "
            "submission: one task per device)"
        )
    return value


def _devices(value: object) -> int:
    """``trainer.devices`` as a count: a number, or a list of device indices."""
    if isinstance(value, list | tuple) or OmegaConf.is_list(value):
        return len(list(value))  # type: ignore[arg-type]
    return _count(value, "trainer.devices")


def request_of(config: DictConfig) -> Request:
    """The sweep's request (its launcher settings, resolved from the base config)."""
    _devices(OmegaConf.select(config, "trainer.devices"))  # what the launcher's settings come from, named first
    _count(OmegaConf.select(config, "trainer.num_nodes"), "trainer.num_nodes")
    launcher = config.hydra.launcher
    gpus = OmegaConf.select(config, "hydra.launcher.gpus_per_node")
    return Request(
        nodes=_count(launcher.nodes, "hydra.launcher.nodes"),
        tasks_per_node=_count(launcher.tasks_per_node, "hydra.launcher.tasks_per_node"),
        cpus_per_task=_count(launcher.cpus_per_task or 1, "hydra.launcher.cpus_per_task"),
        gpus_per_node=0 if gpus is None else _count(gpus, "hydra.launcher.gpus_per_node"),
        partition=OmegaConf.select(config, "hydra.launcher.partition"),
    )


def job_check(request: Request) -> Callable[[DictConfig], None]:
    """A check of one job's config against the sweep's request: its trainer runs one process per SLURM task."""

    def check(cfg: DictConfig) -> None:
        devices = _devices(OmegaConf.select(cfg, "trainer.devices"))
        nodes = _count(OmegaConf.select(cfg, "trainer.num_nodes"), "trainer.num_nodes")
        if devices != request.tasks_per_node:
            raise UserError(
                f"hydra.launcher.tasks_per_node={request.tasks_per_node} with trainer.devices={devices}; allowed: "
                "tasks_per_node = trainer.devices, one SLURM task per device (leave tasks_per_node unset; a value "
                "swept with -m does not change what is asked of SLURM)"
            )
        if nodes != request.nodes:
            raise UserError(
                f"hydra.launcher.nodes={request.nodes} with trainer.num_nodes={nodes}; allowed: nodes = "
                "trainer.num_nodes (leave hydra.launcher.nodes unset; a value swept with -m does not change what "
                "is asked of SLURM)"
            )

    return check


def _sinfo(*args: str) -> list[str] | None:
    """``sinfo -h ARGS`` lines, or None when SLURM does not answer."""
    if shutil.which("sinfo") is None:
        return None
    try:
        proc = subprocess.run(["sinfo", "-h", *args], capture_output=True, text=True, timeout=SINFO_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _gpus(gres: str) -> int:
    """GPUs in a node's generic resources, e.g. ``gpu:4`` or ``gpu:a100:4(S:0-1)``."""
    return sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def partition_nodes(name: str | None) -> tuple[str, list[Node]] | None:
    """The partition (``name``, or the cluster's default) and its nodes, or None when SLURM does not answer."""
    partitions = _sinfo("-o", "%P")
    if partitions is None:
        return None
    names = [p.rstrip("*") for p in partitions]
    if name is None:
        default = [p.rstrip("*") for p in partitions if p.endswith("*")]
        if not default:
            return None
        name = default[0]
    elif name not in names:
        raise UserError(f"hydra.launcher.partition={name}; allowed: {', '.join(sorted(set(names)))}")
    rows = _sinfo("-N", "-p", name, "-o", "%N|%c|%G")
    if rows is None:
        return None
    nodes = {}
    for row in rows:
        node, cpus, gres = (row.split("|") + ["", ""])[:3]
        nodes[node] = Node(node, int(cpus.rstrip("+") or 0), _gpus(gres))
    return name, list(nodes.values())


def check_partition(request: Request, partition: str, nodes: list[Node]) -> None:
    """Enough nodes in ``partition`` for ``request``: each with the CPUs (and GPUs) of one node's tasks."""
    where = f"partition {partition}"
    if request.nodes > len(nodes):
        raise UserError(f"trainer.num_nodes={request.nodes}; allowed: at most {len(nodes)}, the nodes of {where}")
    if request.gpus_per_node and not any(n.gpus for n in nodes):
        return  # sbatch refuses the GPU request itself, with its own words (advnets.errors says what to pass)
    cpus = request.tasks_per_node * request.cpus_per_task
    fit = [n for n in nodes if n.cpus >= cpus and n.gpus >= request.gpus_per_node]
    if len(fit) >= request.nodes:
        return
    most_cpus = max((n.cpus for n in nodes), default=0)
    if cpus > most_cpus:
        raise UserError(
            f"trainer.devices={request.tasks_per_node} tasks x hydra.launcher.cpus_per_task={request.cpus_per_task} "
            f"= {cpus} CPUs per node; allowed: at most {most_cpus}, the most a node of {where} has (lower "
            "hydra.launcher.cpus_per_task or trainer.devices)"
        )
    most_gpus = max((n.gpus for n in nodes), default=0)
    if request.gpus_per_node > most_gpus:
        raise UserError(
            f"trainer.devices={request.tasks_per_node} GPUs per node; allowed: at most {most_gpus}, the most a node "
            f"of {where} has"
        )
    raise UserError(
        f"trainer.num_nodes={request.nodes} nodes of {cpus} CPUs and {request.gpus_per_node} GPUs; allowed: at most "
        f"{len(fit)}, the nodes of {where} that have as much"
    )


def check_cluster(request: Request) -> None:
    """``request`` against the partition it goes to, when SLURM answers ``sinfo``."""
    found = partition_nodes(request.partition)
    if found is not None:
        check_partition(request, *found)
