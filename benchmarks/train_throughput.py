"""Updates per second: the Lightning game vs a plain PyTorch loop of the same nets, batch and update rule.

Both run in this process, interleaved round by round, on MNIST-sized random data (50,000 x 784 in memory,
batch 100, the paper's nets and SGD schedule, the joint update). The plain loop calls the same loss functions
and does the same single routed backward, so the ratio measures what Lightning costs around the step.

    python benchmarks/train_throughput.py [--steps 300] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from advnets import CONF_DIR
from advnets.game import AdversarialGame, d_loss_fn, g_loss_fn, sample_noise


def build_game(cfg) -> AdversarialGame:
    return instantiate(
        cfg.game,
        generator=instantiate(cfg.model.generator),
        discriminator=instantiate(cfg.model.discriminator),
        g_optimizer=instantiate(cfg.optimizer.generator),
        d_optimizer=instantiate(cfg.optimizer.discriminator),
        schedule=instantiate(cfg.optimizer.schedule),
    )


def plain_loop(cfg, data: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` joint updates written as a bare PyTorch loop."""
    game = build_game(cfg)
    G, D, schedule = game.generator, game.discriminator, game.schedule
    g_opt = game.g_optimizer(G.parameters())
    d_opt = game.d_optimizer(D.parameters())
    rng = torch.Generator().manual_seed(0)
    b = cfg.dataset.batch_size
    order = torch.randperm(len(data))
    start = time.perf_counter()
    for i in range(steps):
        idx = order[(i * b) % (len(data) - b) :][:b]
        x = data.index_select(0, idx)
        fake = G(sample_noise(b, G.noise_dim, "uniform", torch.device("cpu"), rng))
        masks_real, masks_fake = D.masks(b, rng), D.masks(b, rng)
        masks = [None if m is None else torch.cat([m, n]) for m, n in zip(masks_real, masks_fake, strict=True)]
        logits = D(torch.cat([x, fake.detach()]), masks)
        d_loss = d_loss_fn(logits[:b], logits[b:])
        g_loss = g_loss_fn(game._g_logits(fake, masks_fake), "non_saturating")
        g_opt.zero_grad(set_to_none=True)
        d_opt.zero_grad(set_to_none=True)
        (d_loss + g_loss).backward()
        d_opt.step()
        g_opt.step()
        schedule.decay_lr(d_opt)
        schedule.decay_lr(g_opt)
    return time.perf_counter() - start


class _Timer(pl.Callback):
    """Wall time of the training batches alone (setup and teardown excluded)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_loop(cfg, data: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` joint updates through the LightningModule and Trainer (logging on)."""
    from advnets.data import ImageDataModule, InMemory, ShuffledIndexBatches

    class RandomData(ImageDataModule):
        def setup(self, stage=None) -> None:
            self._train = InMemory(data)
            self._sampler = ShuffledIndexBatches(len(data), cfg.dataset.batch_size, 0)

    timer = _Timer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=steps,
        logger=pl.loggers.CSVLogger("/tmp/advnets-bench", name="throughput"),
        log_every_n_steps=50,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    dm = RandomData("digits", cfg.dataset.batch_size, 1, 1)
    trainer.fit(build_game(cfg), datamodule=dm)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["logger=none"], return_hydra_config=False)
    data = torch.rand(50_000, 784)
    plain_loop(cfg, data, 20)  # warm-up
    plain, light = [], []
    for _ in range(args.rounds):
        plain.append(args.steps / plain_loop(cfg, data, args.steps))
        light.append(args.steps / lightning_loop(cfg, data, args.steps))
    p, l_ = statistics.median(plain), statistics.median(light)
    print(f"threads={args.threads} steps/round={args.steps} rounds={args.rounds} (median over rounds)")
    print(f"plain PyTorch loop : {p:8.2f} updates/s  ({', '.join(f'{v:.2f}' for v in plain)})")
    print(f"Lightning game     : {l_:8.2f} updates/s  ({', '.join(f'{v:.2f}' for v in light)})")
    print(f"ratio Lightning / plain = {l_ / p:.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
