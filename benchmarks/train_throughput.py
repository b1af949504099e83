"""Updates per second: the Lightning game (K updates per step, compiled or not) vs a plain PyTorch loop.

All variants run in this process, interleaved round by round, on MNIST-sized random data (50,000 x 784 on the
device), with the configured nets, batch and the paper's SGD schedule, joint update. The plain loop is the same
update written as a bare PyTorch loop (same losses, same single routed backward, same noise and masks), so each
ratio to it measures what Lightning, or compiling, costs or saves around the update.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--model paper|small] [--batch 100] [--threads N]
        [--steps 400] [--rounds 3] [--ks 8,32] [--compile default,reduce-overhead] [--json out.json] [--clock cpu]

``--clock cpu`` times with this process's CPU time instead of the wall clock: on a CPU shared with other jobs
(more runnable threads than cores) the wall clock mostly measures waiting; with ``--threads 1`` CPU time does not.

Each round ends by timing the plain loop again: on a shared CPU that row's ratio (ideally 1.000) shows how far
apart two runs of the same code land, which bounds what any other ratio can show.

``--model paper`` is conf/model/paper_mnist.yaml; ``small`` is conf/model/small.yaml (what the paper
nets look like to a GPU: overhead-bound).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from advnets import CONF_DIR
from advnets.data import ImageDataModule, InMemory, ShuffledIndexBatches
from advnets.game import AdversarialGame
from advnets.sampling import sample_noise

N_DATA = 50_000
AGAIN = "plain loop again (noise gauge)"
"""The plain loop timed a second time, last in each round: its ratio to the first is this machine's noise."""
clock = time.perf_counter  # --clock cpu: time.process_time (robust on a shared, oversubscribed CPU)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_game(cfg, **game_kw) -> AdversarialGame:
    return instantiate(
        cfg.game,
        generator=instantiate(cfg.model.generator),
        discriminator=instantiate(cfg.model.discriminator),
        g_optimizer=instantiate(cfg.optimizer.generator),
        d_optimizer=instantiate(cfg.optimizer.discriminator),
        schedule=instantiate(cfg.optimizer.schedule),
        **game_kw,
    )


def plain_loop(cfg, data: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` joint updates written as a bare PyTorch loop."""
    device = data.device
    game = build_game(cfg).to(device)
    G, D, schedule = game.generator, game.discriminator, game.schedule
    g_opt = game.g_optimizer(G.parameters())
    d_opt = game.d_optimizer(D.parameters())
    rng = torch.Generator(device=device).manual_seed(0)
    b = cfg.dataset.batch_size
    nb = len(data) // b
    order = torch.randperm(len(data), device=device)[: nb * b].view(nb, b)
    sync(device)
    start = clock()
    for i in range(steps):
        x = data.index_select(0, order[i % nb])
        rng.manual_seed(i)
        z = sample_noise(b, G.noise_dim, "uniform", device, rng)
        masks_real, masks_fake = D.masks(b, rng), D.masks(b, rng)
        loss, _ = game._joint_losses(x, z, masks_real, masks_fake)
        g_opt.zero_grad(set_to_none=True)
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()
        g_opt.step()
        schedule.decay_lr(d_opt)
        schedule.decay_lr(g_opt)
    sync(device)
    return clock() - start


class _Timer(pl.Callback):
    """Wall time of the training batches alone (setup, compilation warm-up epoch and teardown excluded)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.start = clock()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.seconds = clock() - self.start


def lightning_loop(cfg, data: torch.Tensor, steps: int, k: int, compile_mode: str = "none") -> float:
    """Seconds for ``steps`` joint updates through the LightningModule and Trainer (logging on), K per step.

    Two epochs; the first (``steps`` updates too) warms up (and compiles), the second is timed."""
    batch = cfg.dataset.batch_size

    class RandomData(ImageDataModule):
        def setup(self, stage=None) -> None:
            self._train = InMemory(data)
            self._sampler = ShuffledIndexBatches(len(data), batch, 0, group=k, device=data.device)

    timer = _Timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            accelerator="gpu" if data.device.type == "cuda" else "cpu",
            devices=1,
            max_epochs=2,
            limit_train_batches=max(steps // k, 1),
            logger=pl.loggers.CSVLogger(tmp, name="throughput"),
            log_every_n_steps=50,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        trainer.fit(
            build_game(cfg, updates_per_step=k, compile=compile_mode), datamodule=RandomData("digits", batch, 1, 1)
        )
    return timer.seconds * steps / (max(steps // k, 1) * k)


def measure(label: str, fn: Callable[[], float], steps: int, table: dict[str, list[float]]) -> None:
    table.setdefault(label, []).append(steps / fn())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="paper", choices=["paper", "small"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=400, help="updates per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ks", default="8,32", help="updates per Lightning step to try besides 1")
    parser.add_argument("--compile", default="default", help="compile modes to try with the best K ('' for none)")
    parser.add_argument("--json", default=None, help="also write the medians here")
    parser.add_argument(
        "--clock", default="wall", choices=["wall", "cpu"], help="cpu: this process's CPU time (CPU device only)"
    )
    args = parser.parse_args()
    if args.clock == "cpu":
        if args.device != "cpu":
            parser.error("--clock cpu measures CPU time: only with --device cpu")
        global clock
        clock = time.process_time
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    model = {"paper": "paper_mnist", "small": "small"}[args.model]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = ["experiment=paper_mnist", "logger=none", f"model={model}", f"dataset.batch_size={args.batch}"]
        cfg = compose("train", overrides=overrides)
    data = torch.rand(N_DATA, 784, device=device)
    ks = [int(k) for k in args.ks.split(",") if k]
    steps = args.steps
    plain_loop(cfg, data, 20)  # warm-up
    table: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        measure("plain PyTorch loop", lambda: plain_loop(cfg, data, steps), steps, table)
        for k in [1, *ks]:
            measure(f"Lightning K={k}", lambda k=k: lightning_loop(cfg, data, steps, k), steps, table)
        measure(AGAIN, lambda: plain_loop(cfg, data, steps), steps, table)
    med = {label: statistics.median(v) for label, v in table.items()}
    best_k = max([1, *ks], key=lambda k: med[f"Lightning K={k}"])
    header = (
        f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}) "
        f"model={args.model} batch={args.batch} threads={args.threads} updates/run={steps} rounds={args.rounds} "
        f"clock={args.clock} (medians over rounds)"
    )
    report(header, table, med, best_k, args)
    modes = [m for m in args.compile.split(",") if m]
    for mode in modes:
        label = f"Lightning K={best_k} compile={mode}"
        try:
            for _ in range(args.rounds):
                measure(label, lambda mode=mode: lightning_loop(cfg, data, steps, best_k, mode), steps, table)
            med[label] = statistics.median(table[label])
        except Exception as err:  # report a backend that fails here instead of losing the whole benchmark
            print(f"{label}: failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
    if modes:
        report(header, table, med, best_k, args)


def report(header: str, table: dict, med: dict, best_k: int, args: argparse.Namespace) -> None:
    """Print the table (ratios to the plain loop of this run) and, with --json, write it (after each stage, so a
    run stopped while compiling keeps what it measured)."""
    plain = med["plain PyTorch loop"]
    print(header)
    print("ratio: of the medians; paired: median over rounds of (this run / the plain loop of the same round)")
    for label, value in med.items():
        runs = ", ".join(f"{v:.1f}" for v in table[label])
        paired = statistics.median(v / p for v, p in zip(table[label], table["plain PyTorch loop"], strict=False))
        print(
            f"{label:38s}: {value:9.1f} updates/s {1e6 / value:9.1f} us/update  ratio {value / plain:5.3f}  "
            f"paired {paired:5.3f}  ({runs})"
        )
    best = max((label for label in med if label != AGAIN), key=med.get)
    print(f"best: {best} ({med[best]:.1f} updates/s, ratio to plain {med[best] / plain:.3f}); best K={best_k}")
    if args.json:
        summary = {"device": args.device, "model": args.model, "batch": args.batch, "threads": args.threads}
        summary.update({"updates_per_s": med, "best": best, "best_k": best_k})
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
