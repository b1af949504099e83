"""Size and CPU cost of each paper model: parameter counts of G and D, and seconds per joint update.

Each experiment's nets, batch size and optimizer are composed from conf/ exactly as ``advnets-train`` would;
the data are random rows of the dataset's size (no dataset needed). One joint update is the released code's:
one forward, D's gradient from the D loss and G's from the G loss (routed as in ``AdversarialGame``), one
backward, both optimizers step, the lr decays.

    python benchmarks/paper_models.py [--updates 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from advnets import CONF_DIR
from advnets.losses import d_loss_fn, g_loss_fn
from advnets.nets.protocol import MaskedDropoutDiscriminator
from advnets.sampling import sample_noise

EXPERIMENTS = ["paper_mnist", "paper_tfd", "paper_cifar10_fc", "paper_cifar10_conv"]


def frozen_logits(D: MaskedDropoutDiscriminator, fake: torch.Tensor, masks: list) -> torch.Tensor:
    """D's logits with D's parameters detached: the G loss's gradient reaches G only."""
    params = {name: p.detach() for name, p in D.named_parameters()}
    return torch.func.functional_call(D, params, (fake,), {"masks": masks})


def seconds_per_update(cfg, updates: int) -> float:
    G, D = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    g_opt = instantiate(cfg.optimizer.generator)(G.parameters())
    d_opt = instantiate(cfg.optimizer.discriminator)(D.parameters())
    schedule = instantiate(cfg.optimizer.schedule)
    b, rng = cfg.dataset.batch_size, torch.Generator().manual_seed(0)
    times = []
    for i in range(updates + 1):  # the first one warms up
        x = torch.rand(b, cfg.dataset.data_dim)
        start = time.perf_counter()
        fake = G(sample_noise(b, G.noise_dim, cfg.game.noise, torch.device("cpu"), rng))
        masks_real, masks_fake = D.masks(b, rng), D.masks(b, rng)
        masks = [None if m is None else torch.cat([m, n]) for m, n in zip(masks_real, masks_fake, strict=True)]
        logits = D(torch.cat([x, fake.detach()]), masks)
        loss = d_loss_fn(logits[:b], logits[b:]) + g_loss_fn(frozen_logits(D, fake, masks_fake), "non_saturating")
        g_opt.zero_grad(set_to_none=True)
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in (d_opt, g_opt):
            opt.step()
            schedule.decay_lr(opt)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"| experiment | G parameters | D parameters | batch | s / update (CPU, {args.threads} threads) |")
    print("|---|---:|---:|---:|---:|")
    for name in EXPERIMENTS:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={name}", "logger=none"])
        torch.manual_seed(0)
        g_params = sum(p.numel() for p in instantiate(cfg.model.generator).parameters())
        d_params = sum(p.numel() for p in instantiate(cfg.model.discriminator).parameters())
        seconds = seconds_per_update(cfg, args.updates)
        print(f"| `{name}` | {g_params:,} | {d_params:,} | {cfg.dataset.batch_size} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
