"""The loss group: hinge and R1 under both update rules equal gradients worked out by hand; a run through the CLI
with them; a loss of one's own from ``loss._target_``; a wrong choice is one line before torch loads."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from advnets.errors import find_user_error
from advnets.losses import HingeLoss, Loss
from advnets.sampling import sample_noise

from conftest import QUICK, assert_user_error, cli_env, run_cli, train_quick
from test_game import assert_step, fit, sizeable_d, small_game, step_draws

GAMMA = 10.0  # large enough that R1's part of D's step is far above assert_step's tolerance (checked below)


def d_by_hand(loss: str, logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    if loss == "hinge":
        return torch.relu(1 - logit_real).mean() + torch.relu(1 + logit_fake).mean()
    return 0.5 * (-torch.log(torch.sigmoid(logit_real)).mean() - torch.log(1 - torch.sigmoid(logit_fake)).mean())


def g_by_hand(loss: str, logit_fake: torch.Tensor) -> torch.Tensor:
    return -logit_fake.mean() if loss == "hinge" else -torch.log(torch.sigmoid(logit_fake)).mean()


def r1_by_hand(D, x: torch.Tensor, masks: list, gamma: float) -> torch.Tensor:
    """gamma/2 * E[||grad_x D(x)||^2], D(x) the logit, on the real batch with D's masks for it."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, masks).sum(), x, create_graph=True)
    return gamma / 2 * (grad**2).sum(dim=1).mean()


def d_step_by_hand(loss: str, gamma: float, D0, x, fake, masks_real, masks_fake, lr: float) -> list[torch.Tensor]:
    """D's first SGD step (v = -lr * g) from its loss plus R1; R1's part is checked to be far above tolerance."""
    params = list(D0.parameters())
    d_loss = d_by_hand(loss, D0(x, masks_real), D0(fake.detach(), masks_fake))
    grads = torch.autograd.grad(d_loss, params, retain_graph=True)
    if gamma:
        r1_grads = torch.autograd.grad(r1_by_hand(D0, x, masks_real, gamma), params, allow_unused=True)
        r1_grads = [torch.zeros_like(p) if r is None else r for p, r in zip(params, r1_grads, strict=True)]
        scale = max(float(g.abs().max()) for g in grads)
        assert max(float(r.abs().max()) for r in r1_grads) > 0.1 * scale  # the check can tell R1 is there
        grads = [g + r for g, r in zip(grads, r1_grads, strict=True)]
    return [-lr * g for g in grads]


class TanhDiscriminator(nn.Module):
    """A smooth D (no dropout): R1's gradient has second-order terms here, which a piecewise linear maxout D lacks,
    so a penalty that leaked into G's loss would move G."""

    def __init__(self, data_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(data_dim, hidden), nn.Linear(hidden, 1)

    def masks(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor | None]:
        return [None]

    def forward(self, x: torch.Tensor, masks: list | None = None) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x))).squeeze(-1)


SMOOTH_D = [
    "model.discriminator._target_=test_losses.TanhDiscriminator",
    *(f"~model.discriminator.{key}" for key in ("units", "pieces", "init_range", "input_keep", "hidden_keep")),
]


@pytest.mark.parametrize(
    "loss,gamma,net",
    [("hinge", 0.0, "maxout"), ("hinge", GAMMA, "maxout"), ("paper", GAMMA, "maxout"), ("paper", GAMMA, "tanh")],
)
def test_joint_step_with_hinge_and_r1_equals_a_reference_by_hand(tmp_path, loss: str, gamma: float, net: str) -> None:
    """One joint update: D steps on its loss plus R1, G on its own loss alone (R1 reaches D only)."""
    overrides = ("optimizer.lr=0.1", f"loss={loss}", f"loss.r1_gamma={gamma}", *(SMOOTH_D if net == "tanh" else []))
    cfg, datamodule, game = small_game(tmp_path, *overrides)
    sizeable_d(game)
    G0, D0 = copy.deepcopy(game.generator), copy.deepcopy(game.discriminator)
    fit(game, datamodule, tmp_path, batches=1)

    batch = next(iter(datamodule.train_dataloader()))
    z, masks_real, masks_fake = step_draws(cfg, D0, len(batch), key=0)
    fake, lr = G0(z), cfg.optimizer.lr
    d_steps = d_step_by_hand(loss, gamma, D0, batch, fake, masks_real, masks_fake, lr)
    g_params = list(G0.parameters())
    g_grads = torch.autograd.grad(g_by_hand(loss, D0(fake, masks_fake)), g_params)
    assert_step(list(game.discriminator.parameters()), list(D0.parameters()), d_steps)
    assert_step(list(game.generator.parameters()), g_params, [-lr * g for g in g_grads])


@pytest.mark.parametrize("loss,gamma", [("hinge", 0.0), ("hinge", GAMMA)])
def test_alternating_steps_with_hinge_and_r1_equal_a_reference_by_hand(tmp_path, loss: str, gamma: float) -> None:
    """Algorithm 1 with k = 1: D's step on its loss plus R1, then G's on fresh noise against D's new weights."""
    overrides = ("optimizer.lr=0.1", "game.update=alternating", f"loss={loss}", f"loss.r1_gamma={gamma}")
    cfg, datamodule, game = small_game(tmp_path, *overrides)
    sizeable_d(game)
    G0, D0 = copy.deepcopy(game.generator), copy.deepcopy(game.discriminator)
    fit(game, datamodule, tmp_path, batches=1)

    batch = next(iter(datamodule.train_dataloader()))
    n, lr = len(batch), cfg.optimizer.lr
    z, masks_real, masks_fake = step_draws(cfg, D0, n, key=0)
    d_steps = d_step_by_hand(loss, gamma, D0, batch, G0(z), masks_real, masks_fake, lr)
    assert_step(list(game.discriminator.parameters()), list(D0.parameters()), d_steps)
    D1, g_params = copy.deepcopy(game.discriminator), list(G0.parameters())
    g_rng = torch.Generator().manual_seed((cfg.seed * 1_000_003 * 10_000_019 + 1) % 2**63)
    g_z = sample_noise(n, G0.noise_dim, "uniform", torch.device("cpu"), g_rng)
    g_grads = torch.autograd.grad(g_by_hand(loss, D1(G0(g_z), D1.masks(n, g_rng))), g_params)
    assert_step(list(game.generator.parameters()), g_params, [-lr * g for g in g_grads])


class LeastSquaresLoss(Loss):
    """A loss of one's own (least squares, Mao et al., 2017), built from ``loss._target_``."""

    def __init__(self, target: float = 1.0, r1_gamma: float = 0.0) -> None:
        super().__init__(r1_gamma)
        self.target = target

    def d_loss(self, logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((logit_real - self.target) ** 2).mean() + 0.5 * (logit_fake**2).mean()

    def g_loss(self, logit_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((logit_fake - self.target) ** 2).mean()


def test_a_loss_of_ones_own_comes_from_its_target(tmp_path) -> None:
    """``loss._target_`` names the class (its keys checked by its signature); the game steps on its losses."""
    own = ["loss._target_=test_losses.LeastSquaresLoss", "~loss.g_loss", "+loss.target=2.0"]
    cfg, datamodule, game = small_game(tmp_path, "optimizer.lr=0.1", *own)
    assert isinstance(game.loss, LeastSquaresLoss) and game.loss.target == 2.0
    sizeable_d(game)
    G0, D0 = copy.deepcopy(game.generator), copy.deepcopy(game.discriminator)
    fit(game, datamodule, tmp_path, batches=1)
    batch = next(iter(datamodule.train_dataloader()))
    z, masks_real, masks_fake = step_draws(cfg, D0, len(batch), key=0)
    fake, d_params = G0(z), list(D0.parameters())
    logit_real, logit_fake = D0(batch, masks_real), D0(fake.detach(), masks_fake)
    d_loss = 0.5 * ((logit_real - 2) ** 2).mean() + 0.5 * (logit_fake**2).mean()
    d_grads = torch.autograd.grad(d_loss, d_params)
    assert_step(list(game.discriminator.parameters()), d_params, [-0.1 * g for g in d_grads])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss._target_=datetime.timedelta", "~loss.g_loss", "~loss.r1_gamma"], "a timedelta is no advnets.losses"),
        (["loss.r1_gamma=1", "game.compile=default"], "loss.r1_gamma=1 with game.compile=default; allowed: game"),
    ],
)
def test_what_the_game_cannot_use_is_one_line(tmp_path, overrides: list[str], message: str) -> None:
    with pytest.raises(Exception) as caught:  # raised in the game's __init__, which Hydra's instantiate wraps
        small_game(tmp_path, *overrides)
    error = find_user_error(caught.value)
    assert error is not None and message in str(error) and "\n" not in str(error), caught.value


def test_hinge_with_r1_trains_through_the_cli(tmp_path: Path) -> None:
    """One quickstart epoch with loss=hinge loss.r1_gamma=1: the run ends and its losses are the hinge loss's (D's
    about 2 and G's about 0 while D's logits are near 0; the paper loss's are both about log 2)."""
    run = train_quick(tmp_path / "run", "loss=hinge", "loss.r1_gamma=1", "trainer.max_epochs=1", "logger=none")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run/epochs"] == 1
    assert abs(metrics["train/d_loss_epoch"] - 2) < 0.05 and abs(metrics["train/g_loss_epoch"]) < 0.05, metrics
    assert torch.isfinite(torch.tensor(metrics["test/parzen_ll"]))


def test_r1_under_ddp_keeps_the_ranks_identical(tmp_path: Path) -> None:
    """Two gloo DDP processes, joint rule, loss=hinge loss.r1_gamma=1: D's gradient, R1's part included, is reduced
    across the ranks (each sees its own half of the data), so both hold the same parameters after every step."""
    run = tmp_path / "run"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1", "evaluate=false"]
    digest = "+callbacks.digest._target_=probes.ParamDigest"
    proc = run_cli(
        "train", *QUICK, *ddp, "loss=hinge", "loss.r1_gamma=1", "logger=none", digest, f"hydra.run.dir={run}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run / f"params_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and ranks[0]["global_step"] == 2 * 6
    assert ranks[0]["sum"] == ranks[1]["sum"] and ranks[0]["abs_sum"] == ranks[1]["abs_sum"]
    assert ranks[0]["first"] == ranks[1]["first"]
    assert abs(json.loads((run / "metrics.json").read_text())["train/d_loss_epoch"] - 2) < 0.05  # hinge's


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["loss=hnge"], ["Could not find 'loss/hnge'", "Available options in 'loss': hinge, paper"]),
        (["loss.g_loss=wgan"], ["loss.g_loss='wgan'; allowed: one of non_saturating, minimax"]),
        (["game.g_loss=minimax"], ["unknown key game.g_loss (it moved: loss.g_loss)"]),
        (["loss.r1_gamma=1", "game.compile=default"], ["loss.r1_gamma=1 with game.compile=default; allowed: game."]),
    ],
)
def test_a_wrong_loss_is_one_line_before_torch_loads(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    """The entry point as the console script runs it, reporting at exit whether torch was loaded; no run folder."""
    probe = (
        "import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)); "
        "from advnets.cli.train import main; sys.argv[0] = 'advnets-train'; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert_user_error(proc, *fragments)
    assert "torch loaded: False" in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_hinge_loss_values() -> None:
    lr, lf = torch.tensor([0.3, -1.5, 2.0]), torch.tensor([-2.0, 0.5, -0.2])
    hinge = HingeLoss()
    torch.testing.assert_close(hinge.d_loss(lr, lf), torch.tensor((0.7 + 2.5 + 0) / 3 + (0 + 1.5 + 0.8) / 3))
    torch.testing.assert_close(hinge.g_loss(lf), torch.tensor((2.0 - 0.5 + 0.2) / 3))
