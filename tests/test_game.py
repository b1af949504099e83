"""The game: one joint step equals a by-hand reference, Algorithm 1's k, losses, noise and schedules."""

from __future__ import annotations

import copy
import math
import time

import pytest
import pytorch_lightning as pl
import torch

from advnets.losses import d_loss_fn, g_loss_fn
from advnets.sampling import sample_noise
from advnets.schedules import PaperSchedule
from advnets.training import build

from conftest import compose_cfg, quiet_trainer


def small_game(tmp_path, *overrides: str):
    cfg = compose_cfg(["experiment=quickstart", "optimizer=paper_sgd", "logger=none", *overrides], tmp_path)
    datamodule, game, _ = build(cfg)
    return cfg, datamodule, game


def fit(game, datamodule, tmp_path, batches: int, epochs: int = 1) -> pl.Trainer:
    trainer = quiet_trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        default_root_dir=tmp_path,
    )
    trainer.fit(game, datamodule=datamodule)
    return trainer


def sizeable_d(game, scale: float = 0.3) -> None:
    """D's weights drawn much wider than the paper's init (0.005): G's gradient, which flows through D's weights,
    is then large enough for a comparison to see G's step (at the paper's init G moves by ~1e-10)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in game.discriminator.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * scale)


def step_draws(cfg, D, n: int, key: int) -> tuple[torch.Tensor, list, list]:
    """The noise and the two dropout-mask sets the game draws at optimizer step ``key`` (rank 0, CPU)."""
    rng = torch.Generator().manual_seed((cfg.seed * 1_000_003 * 10_000_019 + key) % 2**63)
    z = sample_noise(n, cfg.model.noise_dim, "uniform", torch.device("cpu"), rng)
    return z, D.masks(n, rng), D.masks(n, rng)


def assert_step(new: list[torch.Tensor], old: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    """Each parameter's delta ``new - old`` equals its expected step to 0.1% of the step's largest entry plus the
    float32 rounding of the parameter, which is at most 2% of that entry: a skipped step (delta 0) or a flipped
    gradient (delta -expected) misses by 100% or 200%."""
    eps = torch.finfo(torch.float32).eps
    for p_new, p_old, step in zip(new, old, expected, strict=True):
        scale, rounding = float(step.abs().max()), 2 * eps * float(p_old.abs().max())
        assert scale > 100 * rounding, (scale, rounding)  # the step is far above rounding: the check can see it
        torch.testing.assert_close(p_new.detach() - p_old.detach(), step, atol=1e-3 * scale + rounding, rtol=1e-3)


@pytest.mark.parametrize("g_loss", ["non_saturating", "minimax"])
def test_joint_step_equals_a_reference_by_hand(tmp_path, g_loss: str) -> None:
    """One joint update: D's gradient from the D loss, G's from the configured G loss, both against D's old
    weights."""
    cfg, datamodule, game = small_game(tmp_path, "optimizer.lr=0.1", f"loss.g_loss={g_loss}")
    sizeable_d(game)
    G0, D0 = copy.deepcopy(game.generator), copy.deepcopy(game.discriminator)
    fit(game, datamodule, tmp_path, batches=1)

    # the same batch, noise and dropout masks the game drew (its stream at optimizer step 0)
    batch = next(iter(datamodule.train_dataloader()))
    z, masks_real, masks_fake = step_draws(cfg, D0, len(batch), key=0)
    fake = G0(z)
    logit_real, logit_fake = D0(batch, masks_real), D0(fake, masks_fake)
    d_params, g_params = list(D0.parameters()), list(G0.parameters())
    d_grads = torch.autograd.grad(d_loss_fn(logit_real, logit_fake), d_params, retain_graph=True)
    g_grads = torch.autograd.grad(g_loss_fn(logit_fake, g_loss), g_params)

    lr = cfg.optimizer.lr  # the first classic-momentum step: v = -lr * g
    assert_step(list(game.discriminator.parameters()), d_params, [-lr * g for g in d_grads])
    assert_step(list(game.generator.parameters()), g_params, [-lr * g for g in g_grads])


@pytest.mark.parametrize("k,g_loss", [(1, "non_saturating"), (2, "non_saturating"), (1, "minimax")])
def test_alternating_steps_equal_a_reference_by_hand(tmp_path, k: int, g_loss: str) -> None:
    """Algorithm 1: k D steps, then one G step on fresh noise (optimizer step k's draws) against D's new weights,
    from the configured G loss."""
    overrides = ("optimizer.lr=0.1", "game.update=alternating", f"game.k={k}", f"loss.g_loss={g_loss}")
    cfg, datamodule, game = small_game(tmp_path, *overrides)
    sizeable_d(game)
    G0, D0 = copy.deepcopy(game.generator), copy.deepcopy(game.discriminator)
    fit(game, datamodule, tmp_path, batches=k)
    batches = list(datamodule.train_dataloader())
    n, lr = len(batches[0]), cfg.optimizer.lr
    g_params = list(G0.parameters())
    if k == 1:  # D's one step, from the D loss at D's old weights, with G's old samples
        z, masks_real, masks_fake = step_draws(cfg, D0, n, key=0)
        d_params = list(D0.parameters())
        d_loss = d_loss_fn(D0(batches[0], masks_real), D0(G0(z).detach(), masks_fake))
        d_grads = torch.autograd.grad(d_loss, d_params)
        assert_step(list(game.discriminator.parameters()), d_params, [-lr * g for g in d_grads])
    # G's step: against D after its k steps (D does not step again in this run), with step k's draws
    D_k = copy.deepcopy(game.discriminator)
    g_rng = torch.Generator().manual_seed((cfg.seed * 1_000_003 * 10_000_019 + k) % 2**63)
    g_z = sample_noise(n, G0.noise_dim, "uniform", torch.device("cpu"), g_rng)
    g_grads = torch.autograd.grad(g_loss_fn(D_k(G0(g_z), D_k.masks(n, g_rng)), g_loss), g_params)
    assert_step(list(game.generator.parameters()), g_params, [-lr * g for g in g_grads])


@pytest.mark.parametrize("update", ["joint", "alternating"])
def test_minimax_and_non_saturating_move_g_differently(tmp_path, update: str) -> None:
    """The same weights, batch and seed, one update with each G loss: D steps alike (its loss is the same), G's
    steps differ by far more than the by-hand tests' tolerance (minimax's per-sample G gradient is non-saturating's
    scaled by D(G(z)) / (1 - D(G(z))))."""

    def one_update(g_loss: str) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        torch.manual_seed(0)  # the same initial weights for both
        _, datamodule, game = small_game(tmp_path, "optimizer.lr=0.1", f"game.update={update}", f"loss.g_loss={g_loss}")
        sizeable_d(game)
        g0 = [p.detach().clone() for p in game.generator.parameters()]
        fit(game, datamodule, tmp_path, batches=1)
        g_step = [p.detach() - q for p, q in zip(game.generator.parameters(), g0, strict=True)]
        return g0, g_step, [p.detach().clone() for p in game.discriminator.parameters()]

    g0_ns, step_ns, d_ns = one_update("non_saturating")
    g0_mm, step_mm, d_mm = one_update("minimax")
    assert all(torch.equal(a, b) for a, b in zip(g0_ns, g0_mm, strict=True))  # the same start
    assert all(torch.equal(a, b) for a, b in zip(d_ns, d_mm, strict=True))  # D's update ignores the G loss
    norm_ns = sum(float(s.norm() ** 2) for s in step_ns) ** 0.5
    norm_mm = sum(float(s.norm() ** 2) for s in step_mm) ** 0.5
    diff = sum(float((a - b).norm() ** 2) for a, b in zip(step_ns, step_mm, strict=True)) ** 0.5
    assert norm_mm > 0 and norm_ns > 0
    assert diff > 0.05 * max(norm_ns, norm_mm), (diff, norm_ns, norm_mm)


@pytest.mark.parametrize("k", [1, 3])
def test_alternating_takes_k_d_steps_per_g_step(tmp_path, k: int) -> None:
    cfg, datamodule, game = small_game(tmp_path, "game.update=alternating", f"game.k={k}")
    G0 = copy.deepcopy(game.generator)
    batches = 6
    trainer = fit(game, datamodule, tmp_path, batches=batches)
    g_steps = batches // k
    assert trainer.global_step == batches + g_steps
    g_opt, d_opt = game.optimizers()
    decay, lr = 1.000004, cfg.optimizer.lr
    assert math.isclose(d_opt.param_groups[0]["lr"], lr / decay**batches, rel_tol=1e-12)
    assert math.isclose(g_opt.param_groups[0]["lr"], lr / decay**g_steps, rel_tol=1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(G0.parameters(), game.generator.parameters(), strict=True))


def test_losses_match_their_definitions() -> None:
    lr, lf = torch.tensor([0.3, -1.0]), torch.tensor([2.0, -0.5])
    d_real, d_fake = torch.sigmoid(lr), torch.sigmoid(lf)
    expected_d = 0.5 * (-torch.log(d_real).mean() - torch.log(1 - d_fake).mean())
    torch.testing.assert_close(d_loss_fn(lr, lf), expected_d)
    torch.testing.assert_close(g_loss_fn(lf, "non_saturating"), -torch.log(d_fake).mean())
    torch.testing.assert_close(g_loss_fn(lf, "minimax"), torch.log(1 - d_fake).mean())


def test_noise_priors() -> None:
    g = torch.Generator().manual_seed(0)
    u = sample_noise(20000, 10, "uniform", torch.device("cpu"), g)
    assert float(u.abs().max()) <= math.sqrt(3) and abs(float(u.var()) - 1) < 0.03
    n = sample_noise(20000, 10, "gaussian", torch.device("cpu"), g)
    assert float(n.abs().max()) > math.sqrt(3) and abs(float(n.var()) - 1) < 0.03


def test_momentum_ramp_and_lr_decay() -> None:
    s = PaperSchedule(1.000004, 1e-6, 0.5, 0.7, 250)
    assert s.momentum(0) == 0.5 and math.isclose(s.momentum(249), 0.7) and math.isclose(s.momentum(1000), 0.7)
    assert math.isclose(s.momentum(124.5), 0.6)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-6, momentum=0.5)
    s.decay_lr(opt)
    assert math.isclose(opt.param_groups[0]["lr"], 2e-6 / 1.000004)
    for _ in range(300000):
        s.decay_lr(opt)
    assert opt.param_groups[0]["lr"] == 1e-6  # the floor


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer.lr=-0.1", "lr=-0.1"),
        ("optimizer.lr=0", "lr=0"),
        ("game.update=sometimes", "game.update='sometimes'"),
        ("game.k=0", "game.k=0"),
        ("game.noise=cauchy", "game.noise='cauchy'"),
    ],
)
def test_bad_game_values_are_refused_by_name(tmp_path, override: str, message: str) -> None:
    """By the job's checks (the schema reads the game's choices from its signature) or, failing them, the build."""
    from advnets.errors import find_user_error
    from advnets.training import check_config

    cfg = compose_cfg(["experiment=quickstart", "optimizer=paper_sgd", "logger=none", override], tmp_path)
    with pytest.raises(Exception) as info:
        check_config(cfg)
        build(cfg)
    assert message in str(find_user_error(info.value)) and "allowed" in str(find_user_error(info.value))


class CountingScaler(torch.amp.GradScaler):
    """A CPU gradient scaler that doubles its scale at every update and records the scale of every unscale."""

    def __init__(self) -> None:
        super().__init__("cpu", init_scale=2.0**10, growth_interval=1)
        self.unscaled: list[float] = []
        self.updates = 0

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        self.unscaled.append(float(self.get_scale()))
        super().unscale_(optimizer)

    def update(self, new_scale: float | None = None) -> None:
        self.updates += 1
        super().update(new_scale)


@pytest.mark.parametrize("update,k,per_step", [("joint", 1, 1), ("joint", 1, 3), ("alternating", 2, 1)])
def test_16_mixed_unscales_each_optimizer_with_its_backwards_scale(tmp_path, update: str, k: int, per_step: int):
    """Under a gradient scaler: one scale update per backward (joint: one backward for both nets), and every
    optimizer's gradients unscaled with the scale that backward used."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    _, datamodule, game = small_game(
        tmp_path, f"game.update={update}", f"game.k={k}", f"game.updates_per_step={per_step}"
    )
    scaler = CountingScaler()
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=6 // per_step, plugins=[MixedPrecision("16-mixed", "cpu", scaler)]
    )
    trainer.fit(game, datamodule=datamodule)
    assert game.updates == 6 and trainer.global_step == game.optimizer_steps(6)
    backwards = 6 if update == "joint" else 6 + 6 // k
    assert scaler.updates == backwards and len(scaler.unscaled) == trainer.global_step
    if update == "joint":  # D's and G's gradients of one backward: one scale, then the next update's (doubled)
        assert scaler.unscaled[0::2] == scaler.unscaled[1::2] == [2.0**10 * 2**i for i in range(6)]
    assert bool(game.losses_finite)


def test_losses_finite_is_this_ranks_own_not_a_buffer(tmp_path) -> None:
    """DDP broadcasts buffers from rank 0 at every forward: a buffer would hide another rank's divergence."""
    _, datamodule, game = small_game(tmp_path)
    fit(game, datamodule, tmp_path, batches=2)
    assert "losses_finite" not in dict(game.named_buffers()) and bool(game.losses_finite)
    assert game.losses_finite.device == game.device


def test_training_time_adds_up_over_resumes(tmp_path) -> None:
    """A resumed run's checkpoint and results hold every start's training time, not only the last start's."""
    _, datamodule, game = small_game(tmp_path)
    fit(game, datamodule, tmp_path, batches=2)
    first: dict = {}
    game.on_save_checkpoint(first)
    assert first["advnets_train_seconds"] > 0
    _, _, again = small_game(tmp_path)
    again.on_load_checkpoint({"advnets_updates": 2, "advnets_train_seconds": 1000.0})
    again._fit_start = time.perf_counter()  # what on_fit_start records when the resumed fit begins
    second: dict = {}
    again.on_save_checkpoint(second)
    assert 1000.0 < second["advnets_train_seconds"] < 1000.0 + 60
