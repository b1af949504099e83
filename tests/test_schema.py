"""One schema for the whole config: every key known, every value typed and in range, checked before anything is
built or written; one line naming key, value and what is allowed."""

from __future__ import annotations

import collections.abc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from advnets import CONF_DIR
from advnets.errors import UserError
from advnets.schema import EVALUATE, TRAIN, validate

from conftest import QUICK, assert_user_error, cli_env, compose_cfg, run_refused


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.noise_dim=0", "model.noise_dim=0; allowed: an integer >= 1"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc'; allowed: an integer >= 1"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5; allowed: an integer >= 1"),
        ("dataset.batch_size=0", "dataset.batch_size=0; allowed: an integer >= 1"),
        ("model.discriminator.input_keep=0", "model.discriminator.input_keep=0; allowed: a probability in (0, 1]"),
        ("model.discriminator.hidden_keep=1.5", "hidden_keep=1.5; allowed: a probability in (0, 1]"),
        ("model.generator.hidden=[100,0]", "model.generator.hidden=[100, 0]; allowed: a list of at least 1 items"),
        ("game.noise=cauchy", "game.noise='cauchy'; allowed: one of uniform, gaussian"),
        ("game.update=never", "game.update='never'; allowed: one of joint, alternating (advnets.game.AdversarialGame"),
        ("loss.g_loss=wgan", "loss.g_loss='wgan'; allowed: one of non_saturating, minimax (advnets.losses.PaperLoss"),
        ("loss.r1_gamma=-1", "loss.r1_gamma=-1; allowed: a finite number >= 0"),
        ("+game.g_loss=minimax", "unknown key game.g_loss (it moved: loss.g_loss): not a parameter of advnets.game"),
        ("game.compile=fast", "game.compile='fast'; allowed: one of none, default, reduce-overhead"),
        ("game.k=true", "game.k=True; allowed: an integer >= 1"),
        ("eval.checkpoint=worst", "eval.checkpoint='worst'; allowed: one of best, last"),
        ("eval.grid=[]", "eval.grid=[]; allowed: a list of at least 1 items"),
        ("optimizer.schedule.lr_decay=0.5", "optimizer.schedule.lr_decay=0.5; allowed: a finite number >= 1"),
        ("optimizer.generator.momentum=1.0", "optimizer.generator.momentum=1.0; allowed: a finite number >= 0 and < 1"),
        ("callbacks.parzen_monitor.n_samples=-5", "callbacks.parzen_monitor.n_samples=-5; allowed: an integer >= 1"),
        ("threads=0", "threads=0; allowed: auto, null or an integer >= 1"),
        ("threads=two", "threads='two'; allowed: auto, null or an integer >= 1"),
        ("evaluate=maybe", "evaluate='maybe'; allowed: true or false"),
        ("trainer.precision=17", "trainer.precision=17; allowed: 64, 32, 16 or"),
        ("trainer.deterministic=[1]", "trainer.deterministic=[1]; allowed: bool or"),
        ("+model.extra=1", "unknown key model.extra; known here: noise_dim, output_bias_from_data"),
        ("+game.sped=1", "unknown key game.sped (did you mean game.seed?): not a parameter of advnets.game"),
        ("+game.colour=1", "unknown key game.colour: advnets.game.AdversarialGame takes generator,"),
        ("+trainer.max_epoch=3", "unknown key trainer.max_epoch (did you mean trainer.max_epochs?): not a parameter"),
        ("+colour=red", "unknown key colour; known here:"),
        ("+callbacks.mine._target_=no.such.Callback", "callbacks.mine._target_='no.such.Callback'; allowed: an"),
        ("+callbacks.mine._target_=no.such.Callback", "(no module named no: is its package installed, or its folder"),
        ("+callbacks.mine._target_=advnets.callbacks.ParzenMonitr", "no ParzenMonitr (did you mean ParzenMonitor?)"),
        ("model.generator._target_=advnets.nets.Gen", "advnets.nets has no Gen; it has Discriminator, Generator,"),
        ("+callbacks.mine=3", "callbacks.mine=3; allowed: a node with _target_, or null"),
    ],
)
def test_a_bad_value_names_key_value_and_what_is_allowed(override: str, message: str) -> None:
    cfg = compose_cfg(["experiment=paper_mnist", override])  # the paper's SGD: its schedule and momentum
    with pytest.raises(UserError) as caught:
        validate(cfg, TRAIN)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_target_whose_module_fails_on_import_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_nets.py").write_text("raise RuntimeError('a bug in my module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg(["experiment=paper_mnist", "model.generator._target_=broken_nets.Generator"])
    with pytest.raises(UserError, match=r"importing broken_nets fails: RuntimeError: a bug in my module\)$"):
        validate(cfg, TRAIN)


def test_the_games_choices_live_in_its_signature_alone() -> None:
    """update, noise and compile (the game's) and g_loss (the paper loss's): one Literal each (advnets.choices), the
    annotation of the signature and the schema's rule alike, so a bad choice is refused before torch loads."""
    import typing

    from advnets.game import AdversarialGame
    from advnets.losses import PaperLoss

    hints = {**typing.get_type_hints(AdversarialGame.__init__)}
    hints["g_loss"] = typing.get_type_hints(PaperLoss.__init__)["g_loss"]
    choices = {name: typing.get_args(hints[name]) for name in ("update", "g_loss", "noise", "compile")}
    assert choices == {
        "update": ("joint", "alternating"),
        "g_loss": ("non_saturating", "minimax"),
        "noise": ("uniform", "gaussian"),
        "compile": ("none", "default", "reduce-overhead"),
    }
    for name, options in choices.items():
        key = "loss.g_loss" if name == "g_loss" else f"game.{name}"
        assert TRAIN[key].allowed.startswith("one of " + ", ".join(options))
    for override, message in [
        ("game.update=never", "game.update='never'; allowed: one of joint, alternating"),
        ("loss.g_loss=never", "loss.g_loss='never'; allowed: one of non_saturating, minimax"),
    ]:
        with pytest.raises(UserError, match=message):
            validate(compose_cfg([override]), TRAIN, targets=False)  # the plain pass, before torch loads


def test_a_missing_required_argument_of_a_target_is_not_the_schemas_business() -> None:
    # CSVLogger's save_dir is required; the schema checks keys and values, instantiate reports missing ones
    validate(compose_cfg(["+logger.csv2._target_=pytorch_lightning.loggers.CSVLogger"]), TRAIN)


@pytest.mark.parametrize(
    "overrides",
    [[f"experiment={name}"] for name in ("quickstart", "paper_mnist")]
    + [[f"{group}={option}"] for group, option in [("trainer", "ddp"), ("logger", "csv")]]
    + [["hydra/launcher=slurm"], ["+callbacks.digest._target_=probes.ParamDigest"], ["optimizer=adam"]],
)
def test_the_shipped_configs_pass(overrides: list[str]) -> None:
    validate(compose_cfg(overrides), TRAIN)


def test_a_new_target_class_is_checked_by_its_signature() -> None:
    """A new model (or any _target_-built node) needs no schema change: keys and types come from its signature."""
    cfg = compose_cfg(["experiment=quickstart"])
    cfg.model.generator = OmegaConf.create({"_target_": "probes.ConvGenerator", "noise_dim": 16, "channels": [8, 4]})
    validate(cfg, TRAIN)
    cfg.model.generator.channels = "eight"
    with pytest.raises(UserError, match=r"model.generator.channels='eight'; allowed: list\[int\]"):
        validate(cfg, TRAIN)
    cfg.model.generator.channels = [8]
    with open_dict(cfg):
        cfg.model.generator.depth = 3
    with pytest.raises(UserError, match="unknown key model.generator.depth: probes.ConvGenerator takes"):
        validate(cfg, TRAIN)


def test_cli_one_line_exit_2_and_no_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_refused("train", *QUICK, "model.noise_dim=0", f"hydra.run.dir={run_dir}")
    assert_user_error(proc, "model.noise_dim=0", "an integer >= 1")
    assert proc.stderr.strip().splitlines() == ["advnets: error: model.noise_dim=0; allowed: an integer >= 1"]
    assert not run_dir.exists()


def test_cli_refuses_a_bad_sweep_before_any_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_refused("train", "-m", *QUICK, "seed=1,-2", f"hydra.sweep.dir={sweep}")
    assert_user_error(proc, "sweep job", "seed=-2", "seed=-2; allowed: an integer >= 0")
    assert not sweep.exists()


def test_eval_config_is_checked_too(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt_path=x.ckpt", "paths.output_dir=/tmp/x"])
    validate(cfg, EVALUATE)
    proc = run_refused("evaluate", "ckpt_path=x.ckpt", "eval.n_samples=0", f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(proc, "eval.n_samples=0; allowed: an integer >= 1")
    assert not (tmp_path / "e").exists()


# -- the nets' signatures are the rules of their keys, read before torch loads ------------------------------
OWN_NETS = """
from pathlib import Path
from typing import Annotated
from collections.abc import Sequence

from advnets.choices import Positive, Range

Path(__file__).with_name("nets imported").touch()
Width = Annotated[int, Range(ge=1)]  # a name of its own: its source alone does not say what it is


class TinyGenerator:
    def __init__(self, noise_dim: Positive, hidden: Sequence[Positive] = (8,), width: Width = 4) -> None:
        self.noise_dim, self.hidden, self.width = noise_dim, hidden, width
"""


def own_nets(root: Path, package: str) -> Path:
    """A user's package of nets, annotated with advnets.choices, that marks each import of it by a file."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(
        'from pathlib import Path\nPath(__file__).with_name("imported").touch()\n'
    )
    (root / package / "nets.py").write_text(textwrap.dedent(OWN_NETS))
    return root / package


def own_generator(target: str, **keys: object) -> list[str]:
    """Overrides that replace the generator's node by ``target`` and ``keys``."""
    node = ",".join([f"_target_:{target}", *(f"{k}:{v}" for k, v in keys.items())])
    return ["~model.generator", f"+model.generator={{{node}}}"]


def train_refused_probe(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``advnets-train ARGS`` as the console script runs it, reporting at exit whether torch was loaded."""
    probe = (
        "import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)); "
        "from advnets.cli.train import main; sys.argv[0] = 'advnets-train'; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=120
    )


def test_a_nets_range_is_its_signatures_and_refused_before_torch_loads(tmp_path: Path) -> None:
    """No hand-listed net keys: Discriminator's ``input_keep: Probability`` is the rule, read from its source."""
    assert not [key for key in TRAIN if key.startswith(("model.generator.", "model.discriminator."))]
    proc = train_refused_probe(
        *QUICK, "model.discriminator.input_keep=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert_user_error(proc, "model.discriminator.input_keep=0; allowed: a probability in (0, 1]", "Discriminator's")
    assert "torch loaded: False" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_users_own_net_is_refused_by_its_signature_before_its_module_is_imported(tmp_path: Path) -> None:
    package = own_nets(tmp_path / "lib", "own_nets_early")
    overrides = own_generator("own_nets_early.nets.TinyGenerator", noise_dim=0)
    env = {"PYTHONPATH": f"{cli_env()['PYTHONPATH']}:{tmp_path / 'lib'}"}
    proc = train_refused_probe(*QUICK, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, **env)
    expected = "model.generator.noise_dim=0; allowed: an integer >= 1 (own_nets_early.nets.TinyGenerator's noise_dim)"
    assert_user_error(proc, expected)
    assert "torch loaded: False" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "nets.py"]  # neither package nor module ran


def test_an_annotation_its_source_does_not_spell_readably_is_checked_after_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = own_nets(tmp_path, "own_nets_late")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg([*QUICK, *own_generator("own_nets_late.nets.TinyGenerator", noise_dim=4, width=0)])
    validate(cfg, TRAIN, targets=False)  # Width is the module's own name: no rule before import
    assert not (package / "nets imported").exists()
    with pytest.raises(UserError) as caught:
        validate(cfg, TRAIN)
    assert (
        str(caught.value)
        == "model.generator.width=0; allowed: an integer >= 1 (own_nets_late.nets.TinyGenerator's width)"
    )
    assert (package / "nets imported").exists()


def test_the_source_is_read_as_its_module_binds_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain, aliased and quoted spellings are read; a name of the module's own or a call is left to the import."""
    (tmp_path / "spelt_nets.py").write_text(
        textwrap.dedent(
            """
            import collections.abc
            import typing
            import advnets.choices as c

            class Net:
                def __init__(self, a: "c.Positive", b: typing.Optional[c.Probability], d: collections.abc.Sequence[int],
                             e: Local, f: typing.NewType("Id", int), g=1) -> None: ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from advnets.choices import Positive, Probability
    from advnets.schema import source_annotations

    assert source_annotations("spelt_nets.Net") == {
        "a": Positive,
        "b": Probability | None,
        "d": collections.abc.Sequence[int],
    }
    assert source_annotations("spelt_nets.Missing") == {} and source_annotations("no_such_module.Net") == {}
