"""The ranks of a multi-task SLURM job meet before Lightning's process group does, within a bounded time.

Lightning's SLURM environment takes the first node of the job (``MASTER_ADDR``) and a port from the job id
(``MASTER_PORT``), and torch's store waits up to the process group's timeout (half an hour) for the ranks to
connect, then dies with a C++ stack trace. Here every rank resolves that address first (a name no node can
resolve fails at once), then the ranks meet at it: rank zero listens there and waits for the others, the
others connect to it, each for at most ``ADVNETS_RENDEZVOUS_TIMEOUT_S`` seconds (default 60). A rendezvous that
cannot happen is one ``UserError`` naming the address. Rank zero's store stays open (``multi_tenant``): the
process group Lightning creates next on the same address and port shares its server, so the port is never
closed and opened again between the two."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from advnets.errors import UserError

TIMEOUT_ENV = "ADVNETS_RENDEZVOUS_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0
RESOLVE_TIMEOUT_S = 10.0
"""At most this long for the address to resolve (a name server that does not answer)."""

_open_store: list[object] = []  # rank zero's store, serving the process group too until the process ends


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of one job meet."""

    address: str
    port: int
    rank: int
    world_size: int

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port} (MASTER_ADDR:MASTER_PORT)"


def slurm_rendezvous() -> Rendezvous | None:
    """The rendezvous of this task when it is one of several tasks of a SLURM job step (srun), else None: the
    address and port exactly as Lightning's ``SLURMEnvironment`` will pick them."""
    if "SLURM_NTASKS" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    world = int(os.environ["SLURM_NTASKS"])
    if world < 2 or "SLURM_PROCID" not in os.environ:
        return None
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if "MASTER_ADDR" in os.environ:
        address = os.environ["MASTER_ADDR"]
    else:
        address = SLURMEnvironment.resolve_root_node_address(os.environ.get("SLURM_NODELIST", "127.0.0.1"))
    if "MASTER_PORT" in os.environ:
        port = int(os.environ["MASTER_PORT"])
    elif "SLURM_JOB_ID" in os.environ:
        port = int(os.environ["SLURM_JOB_ID"][-4:]) + 15000
    else:
        port = 12910
    return Rendezvous(address, port, int(os.environ["SLURM_PROCID"]), world)


def timeout_s() -> float:
    """How long one rank waits for the others (``ADVNETS_RENDEZVOUS_TIMEOUT_S``)."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV}={text}; allowed: a number of seconds > 0")
    return value


def resolve(point: Rendezvous, within: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """The IP addresses ``point.address`` resolves to, asked for at most ``within`` seconds."""
    found: list[list[str] | BaseException] = []

    def ask() -> None:
        try:
            infos = socket.getaddrinfo(point.address, point.port, type=socket.SOCK_STREAM)
            found.append(sorted({str(info[4][0]) for info in infos}))
        except OSError as err:
            found.append(err)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(within)
    answer = found[0] if found else TimeoutError(f"no answer in {within:g} s")
    if isinstance(answer, BaseException):
        reason = getattr(answer, "strerror", None) or str(answer)
        raise UserError(
            f"DDP rendezvous {point.where}: {point.address} does not resolve on this node ({reason}); every node must "
            "resolve the job's first node by name (DNS or /etc/hosts), or set MASTER_ADDR to its IP address"
        )
    return answer


def _is_local(ip: str) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, 0))
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def _connect(ips: list[str], port: int, deadline: float) -> bool:
    """Connect to ``port`` at one of ``ips`` (and close again), retrying until ``deadline``; True when it worked."""
    while True:
        for ip in ips:
            try:
                with socket.create_connection((ip, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                    return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def meet(point: Rendezvous, within: float) -> None:
    """All ranks meet at ``point`` within ``within`` seconds, at a store that rank zero opens there and keeps
    open; else one UserError naming the address."""
    from torch.distributed import DistError, TCPStore

    ips = resolve(point)
    start = time.monotonic()
    if point.rank == 0:
        if not any(_is_local(ip) for ip in ips):
            raise UserError(
                f"DDP rendezvous {point.where}: {point.address}"
                + ("" if ips == [point.address] else f" ({', '.join(ips)})")
                + " is not an address of this node, "
                "where rank 0 runs; MASTER_ADDR must name the job's first node"
            )
        try:
            store = TCPStore(
                point.address, point.port, point.world_size, True, timedelta(seconds=within), multi_tenant=True
            )
        except DistError as err:
            if "EADDRINUSE" in str(err) or "address already in use" in str(err):
                raise UserError(
                    f"DDP rendezvous {point.where}: port {point.port} is in use on this node (another job?); set "
                    "MASTER_PORT to a free port"
                ) from None
            joined = re.search(r"(\d+)/(\d+) clients joined", str(err))
            arrived = f"{joined[1]} of {joined[2]} ranks arrived" if joined else str(err)
            raise UserError(
                f"DDP rendezvous {point.where}: rank 0 waited {within:.0f} s and {arrived} (a "
                f"firewall between the nodes, or ranks that did not start: their logs say why); {TIMEOUT_ENV} sets "
                "the wait"
            ) from None
        _open_store.append(store)
        return
    if not _connect(ips, point.port, start + within):
        raise UserError(
            f"DDP rendezvous {point.where}: rank {point.rank} could not connect for {within:.0f} s (closed port, a "
            f"firewall between the nodes, or rank 0 did not start: its log says why); {TIMEOUT_ENV} sets the wait"
        )
    try:
        # rank 0 listens: joining its store takes milliseconds
        store = TCPStore(point.address, point.port, point.world_size, False, timedelta(seconds=max(10.0, within)))
    except DistError as err:
        raise UserError(f"DDP rendezvous {point.where}: rank {point.rank} could not join ({err})") from None
    del store


def _in_multirun_job() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_rendezvous() -> None:
    """In a task of a multi-task SLURM job: the ranks meet before Lightning's process group (``meet``). A sweep
    reports rank zero's mistake; each task's own log (and the run's train.log) says why that task stopped."""
    point = slurm_rendezvous()
    if point is None:
        return
    try:
        meet(point, timeout_s())
    except UserError as err:
        if _in_multirun_job():
            logging.getLogger(__name__).error("advnets: error: rank %d: %s", point.rank, err)
        raise
