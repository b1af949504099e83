"""One schema for the whole config, checked before anything is built or written.

Every key of the composed config must be known, and every value must fit:

- ``RULES`` (one line per key, dotted path, ``*`` matches one level) gives a type and range: ``integer(1)``,
  ``number(gt=0)``, ``probability()``, ``choice(...)``, ``list_of(...)``, ``optional(...)``, ``text()``,
  ``boolean()``. ``GROUP`` marks a plain group (its keys must have rules), ``TARGET`` a node built from
  ``_target_``, ``ENTRIES`` a mapping of named ``_target_`` nodes (callbacks, loggers; ``null`` switches one off).
- A ``_target_`` node is checked against its class: the target must import; every key must be a parameter
  (unless it takes ``**kwargs``) and fit the parameter's type annotation (a ``RULES`` line instead, where one
  names the key). Ranges live in the annotations (``advnets.choices``: ``Positive``, ``Probability``, ...), so
  a new keyword of a built class (or a new class, e.g. a new model) is validated by its signature with no
  schema change; a new key of a plain group is one line in ``RULES``.
- The plain pass (``targets=False``, before torch loads) imports no target: it reads the annotations that a
  target's source spells with ``advnets.choices``, ``typing`` and ``collections.abc`` names alone
  (``source_annotations``); the full pass checks the rest after import.

A mistake is one ``UserError`` line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import ast
import collections.abc
import functools
import importlib.machinery
import importlib.util
import inspect
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from advnets import choices
from advnets.errors import UserError
from advnets.metrics import registry

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


@dataclass(frozen=True)
class Rule:
    """What a key allows: ``test(value)`` is true for a good value; ``allowed`` says it in words."""

    allowed: str
    test: Callable[[Any], bool]
    kind: str = "leaf"  # leaf | group | target | entries


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    words = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")
    return Rule(words, lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi))


def number(gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None) -> Rule:
    bounds = [(gt, ">", lambda v, b: v > b), (ge, ">=", lambda v, b: v >= b)]
    bounds += [(lt, "<", lambda v, b: v < b), (le, "<=", lambda v, b: v <= b)]
    used = [(b, sign, ok) for b, sign, ok in bounds if b is not None]
    words = "a finite number " + " and ".join(f"{sign} {b:g}" for b, sign, _ in used)
    return Rule(words.strip(), lambda v: _is_number(v) and all(ok(v, b) for b, _, ok in used))


def probability() -> Rule:
    return Rule("a probability in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)


def boolean() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def text() -> Rule:
    return Rule("a string", lambda v: isinstance(v, str))


OBJECTIVES = Rule(
    "a validation metric of advnets.metrics.registry: " + ", ".join(f"val/{name}" for name in registry.METRICS),
    lambda v: isinstance(v, str) and v.startswith("val/") and v[4:] in registry.METRICS,
)
"""``objective``: what the best checkpoint and a sweep follow; never a test metric."""


def game_choice(name: str, options: Any, owner: str = "advnets.game.AdversarialGame") -> Rule:
    """A setting's ``Literal`` choices (advnets.choices), named as the signature of ``owner`` names them."""
    rule = choice(*typing.get_args(options))
    return Rule(f"{rule.allowed} ({owner}'s {name})", rule.test)


def choice(*options: Any) -> Rule:
    return Rule("one of " + ", ".join(map(str, options)), lambda v: isinstance(v, str | int) and v in options)


def list_of(item: Rule, min_len: int = 1) -> Rule:
    return Rule(
        f"a list of at least {min_len} items, each {item.allowed}",
        lambda v: isinstance(v, list) and len(v) >= min_len and all(item.test(x) for x in v),
    )


def one_or_list(rule: Rule) -> Rule:
    """A value, or a list of such values (e.g. one activation per layer)."""
    return Rule(f"{rule.allowed}, or a list of them", lambda v: rule.test(v) or list_of(rule).test(v))


def optional(rule: Rule) -> Rule:
    return Rule(f"null or {rule.allowed}", lambda v: v is None or rule.test(v), rule.kind)


def anything() -> Rule:
    return Rule("anything", lambda v: True)


GROUP = Rule("a group of keys", lambda v: isinstance(v, dict), "group")
TARGET = Rule("a node with _target_", lambda v: isinstance(v, dict) and "_target_" in v, "target")
ENTRIES = Rule("named _target_ nodes (null switches one off)", lambda v: v is None or isinstance(v, dict), "entries")

POSITIVE = integer(1)
EPOCHS_EVERY = integer(0)  # every N epochs; 0 switches it off

COMMON: dict[str, Rule] = {
    "name": text(),
    "seed": integer(0),
    "paths": GROUP,
    "paths.log_dir": text(),
    "paths.data_dir": text(),
    "paths.output_dir": text(),
    "dataset": TARGET,
    "dataset.name": text(),
    "dataset.root": optional(text()),
    "dataset.download": boolean(),
    "dataset.batch_size": POSITIVE,
    "dataset.n_train": optional(POSITIVE),  # null: the whole set (TFD's folds fix their own sizes)
    "dataset.n_valid": optional(POSITIVE),
    "dataset.data_dim": optional(POSITIVE),
    "dataset.seed": integer(0),
    "eval": GROUP,
    "eval.n_samples": POSITIVE,
    "eval.n_valid": POSITIVE,
    "eval.grid": list_of(number(gt=0)),
    "eval.sigma": optional(number(gt=0)),
    "eval.seed": integer(0),
    "eval.precision": choice("float32", "float64"),
    "eval.checkpoint": choice("best", "last"),
    "eval.interpolation_rows": integer(0),
    "eval.interpolation_steps": integer(2),
    "eval.metrics": list_of(text(), 0),  # names checked against advnets.metrics.registry.SUITE (check_names)
    "eval.reference": boolean(),
    "eval.suite": GROUP,
    "eval.suite.pr_k": POSITIVE,
    "eval.suite.dc_k": POSITIVE,
    "eval.suite.kid_subsets": POSITIVE,
    "eval.suite.kid_subset_size": integer(2),
    "eval.suite.is_splits": POSITIVE,
    "eval.extra_metrics": ENTRIES,  # metrics of one's own: each built from its _target_ (advnets.metrics.registry)
}

TRAIN: dict[str, Rule] = {
    **COMMON,
    "ckpt_path": optional(text()),
    "threads": Rule("auto, null or an integer >= 1", lambda v: v is None or v == "auto" or POSITIVE.test(v)),
    "evaluate": boolean(),
    "allow_config_change": boolean(),
    "objective": OBJECTIVES,  # and logged by its monitor: check_objective
    "model": GROUP,
    "model.noise_dim": POSITIVE,
    "model.output_bias_from_data": boolean(),
    "model.generator": TARGET,  # its keys' ranges: the net's signature (advnets.choices annotations)
    "model.discriminator": TARGET,
    "optimizer": GROUP,
    "optimizer.lr": number(gt=0),
    "optimizer.g_lr": number(gt=0),
    "optimizer.d_lr": number(gt=0),
    "optimizer.max_norm": optional(number(gt=0)),
    "optimizer.beta1": number(ge=0, lt=1),
    "optimizer.beta2": number(ge=0, lt=1),
    "optimizer.generator": TARGET,
    "optimizer.discriminator": TARGET,
    "optimizer.*.lr": number(gt=0),
    "optimizer.*.momentum": number(ge=0, lt=1),
    "optimizer.*.betas": list_of(number(ge=0, lt=1), 2),
    "optimizer.schedule": optional(TARGET),
    "optimizer.schedule.lr_decay": number(ge=1),
    "optimizer.schedule.min_lr": number(ge=0),
    "optimizer.schedule.momentum_start": number(ge=0, lt=1),
    "optimizer.schedule.momentum_final": number(ge=0, lt=1),
    "optimizer.schedule.momentum_saturate_epoch": POSITIVE,
    "game": TARGET,  # and its signature's Literal choices (advnets.choices), also checked before torch loads:
    "game.update": game_choice("update", choices.Update),
    "game.noise": game_choice("noise", choices.Noise),
    "game.compile": game_choice("compile", choices.CompileMode),
    "game.k": POSITIVE,
    "game.seed": integer(0),
    "game.n_fixed_samples": POSITIVE,
    "game.updates_per_step": POSITIVE,
    "loss": TARGET,  # advnets.losses (conf/loss/); one's own: loss._target_=mypkg.MyLoss
    "loss.g_loss": game_choice("g_loss", choices.GLoss, "advnets.losses.PaperLoss"),
    "loss.r1_gamma": number(ge=0),
    "trainer": TARGET,
    "trainer.max_epochs": POSITIVE,
    "trainer.num_nodes": POSITIVE,
    "trainer.log_every_n_steps": POSITIVE,
    "logger": ENTRIES,
    "callbacks": ENTRIES,
    "callbacks.*.every_n_epochs": EPOCHS_EVERY,
    "callbacks.*.n_samples": POSITIVE,
    "callbacks.*.n_valid": POSITIVE,
    "callbacks.sample_grid.nrow": POSITIVE,
    "slurm": anything(),  # the SLURM launcher's lookup table (conf/hydra/launcher/slurm.yaml)
}
"""``advnets-train``: every key of ``conf/train.yaml`` and its groups."""

MOVED = {"game.g_loss": "loss.g_loss"}
"""Keys that moved: an old name is refused with its new one (``did_you_mean``)."""

EVALUATE: dict[str, Rule] = {
    **COMMON,
    "dataset": optional(TARGET),
    "ckpt_path": text(),
    "run_config": optional(text()),
    "device": Rule(
        "auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", v))
    ),
    "export_to": optional(text()),
    "threads": optional(POSITIVE),
    "logger": ENTRIES,
}
"""``advnets-eval``: ``conf/evaluate.yaml``."""


def _rule_for(rules: dict[str, Rule], key: str) -> Rule | None:
    if key in rules:
        return rules[key]
    parts = key.split(".")
    for pattern, rule in rules.items():
        pattern_parts = pattern.split(".")
        if "*" in pattern_parts and len(pattern_parts) == len(parts):
            if all(p in ("*", k) for p, k in zip(pattern_parts, parts, strict=True)):
                return rule
    return None


def _fail(key: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{key}={value!r}; allowed: {allowed}")


# -- _target_ nodes: the target's signature is the schema of its keys ---------------------------------------
def _locate(key: str, target: Any) -> Any:
    from advnets.internals import locate

    if not isinstance(target, str):
        raise _fail(f"{key}._target_", target, "the dotted name of a class or function")
    try:
        return locate(target)
    except Exception as err:
        raise _fail(
            f"{key}._target_", target, f"an importable class or function ({why_not_imported(target, err)})"
        ) from None


def why_not_imported(target: str, err: Exception) -> str:
    """Why the dotted name ``target`` does not import: no such module, a module that fails on import, or a module
    without that name (with the classes and functions it has)."""
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ModuleNotFoundError as missing:
        if missing.name and module_name.startswith(missing.name):
            return f"no module named {missing.name}: is its package installed, or its folder on PYTHONPATH?"
        return f"importing {module_name} fails: {missing}"
    except Exception as broken:
        return f"importing {module_name} fails: {type(broken).__name__}: {broken}"
    if module is None or hasattr(module, name):
        return f"{type(err).__name__}: {err}"
    has = sorted(
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(v) or inspect.isfunction(v))
        and getattr(v, "__module__", "").startswith(module_name)
    )
    hint = did_you_mean(name, has)
    return f"{module_name} has no {name}{hint}" + (f"; it has {', '.join(has)}" if has and not hint else "")


def _signature(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(parameters, resolved annotations, takes **kwargs) of a class or function."""
    try:
        params = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}, {}, True
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    except Exception:
        hints = {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return params, hints, var_kw


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.MutableSequence)


def _constraint(annotation: Any) -> Rule | None:
    """The rule of ``Annotated[base, Range(...)]`` or ``Annotated[Sequence[item], MinLen(n)]`` (advnets.choices),
    worded as the ``RULES`` helpers word it; None for other metadata."""
    base, *meta = typing.get_args(annotation)
    for bound in meta:
        if isinstance(bound, choices.Range):
            if base is int and bound.gt is None and bound.lt is None:
                return integer(bound.ge, bound.le)  # type: ignore[arg-type]
            if bound == choices.Range(gt=0, le=1):
                return probability()
            return number(bound.gt, bound.ge, bound.lt, bound.le)
        if isinstance(bound, choices.MinLen):
            item = (typing.get_args(base) or (Any,))[0]
            return Rule(
                f"a list of at least {bound.n} items, each {_words(item)}",
                lambda v, n=bound.n, item=item: isinstance(v, list) and len(v) >= n and all(_fits(x, item) for x in v),
            )
    return None


def _fits(value: Any, annotation: Any) -> bool:
    """Can a YAML value stand for ``annotation``? Unknown annotations accept; classes need a _target_ node."""
    if annotation in (Any, inspect.Parameter.empty) or isinstance(annotation, typing.TypeVar | str):
        return True
    if isinstance(value, dict) and "_target_" in value:
        return True  # built by Hydra; its own node is checked separately
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is typing.Annotated:
        rule = _constraint(annotation)
        return _fits(value, args[0]) and (rule is None or rule.test(value))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value) or (isinstance(value, float) and math.isinf(value))
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(x, args[0]) for x in value)
        return not args or (len(args) == len(value) and all(_fits(x, a) for x, a in zip(value, args, strict=True)))
    if origin in _SEQUENCES or annotation in (list, tuple):
        return isinstance(value, list) and (not args or all(_fits(x, args[0]) for x in value))
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        return isinstance(value, dict)
    if inspect.isclass(annotation):
        if issubclass(annotation, os.PathLike):
            return isinstance(value, str)
        return False  # a class that YAML cannot spell without _target_
    return True


def _words(annotation: Any, alone: bool = True) -> str:
    """An annotation in words: ``int or null``; a ``Literal`` alone ``one of a, b`` (as ``choice`` says it),
    within a union ``'a', 'b'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        one, many = args[0], args[-1]
        if len(args) == 2 and typing.get_origin(many) in _SEQUENCES and typing.get_args(many) == (one,):
            return f"{_words(one)}, or a list of them"  # one value, or one per layer
        return " or ".join(dict.fromkeys(_words(a, alone=False) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args)) if alone else ", ".join(map(repr, args))
    if origin is typing.Annotated:
        rule = _constraint(annotation)
        return rule.allowed if rule else _words(args[0], alone)
    if annotation is type(None):
        return "null"
    if origin is not None and args:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_words(a, alone=False) for a in args)}]"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# -- a target's annotations from its source, its module not imported ---------------------------------------
_READABLE = {"advnets.choices": choices, "typing": typing, "collections.abc": collections.abc}
_BUILTINS = {t.__name__: t for t in (int, float, str, bool, list, dict, tuple)} | {"None": None}
_SPELLING = (
    ast.Expression,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.Constant,
    ast.Load,
    ast.BinOp,
    ast.BitOr,
)


def _source_file(module: str) -> str | None:
    """The ``.py`` file of ``module``, found without running any ``__init__`` of its packages (or the module)."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: finds, imports nothing
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return None
            locations = list(spec.submodule_search_locations)
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), locations)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def _readable_names(tree: ast.Module) -> dict[str, Any]:
    """The names a module binds from advnets.choices, typing and collections.abc (and the builtin types)."""
    names: dict[str, Any] = dict(_BUILTINS)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in _READABLE:
            source = _READABLE[node.module]
            names |= {a.asname or a.name: getattr(source, a.name) for a in node.names if hasattr(source, a.name)}
        elif isinstance(node, ast.Import):
            for alias in (a for a in node.names if a.name in _READABLE):
                top = alias.name.partition(".")[0]  # ``import collections.abc`` binds ``collections``
                names[alias.asname or top] = _READABLE[alias.name] if alias.asname else sys.modules[top]
    return names


def _evaluate(node: ast.expr, names: dict[str, Any]) -> Any:
    """An annotation spelt with ``names`` alone (a quoted one parsed first); ``Any`` where it is not."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return Any
    tree = ast.Expression(node)
    if not all(isinstance(n, _SPELLING) for n in ast.walk(tree)):
        return Any  # a call, a lambda, ...: left to the full pass
    try:
        return eval(compile(tree, "<annotation>", "eval"), {"__builtins__": {}}, names)  # noqa: S307
    except Exception:
        return Any


@functools.cache
def source_annotations(target: str) -> dict[str, Any]:
    """The parameter annotations of ``target`` (a class's ``__init__``, or a function) that its module's source
    spells with advnets.choices, typing and collections.abc names alone, read without importing the module; a
    parameter whose annotation is spelt otherwise (or a target defined elsewhere) is left out."""
    module, _, name = target.rpartition(".")
    path = _source_file(module) if module else None
    if path is None:
        return {}
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return {}
    defined = [n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == name]
    function = defined[-1] if defined else None
    if isinstance(function, ast.ClassDef):
        inits = [n for n in function.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
        function = inits[-1] if inits else None
    if function is None:
        return {}
    names = _readable_names(tree)
    params = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    annotations = {p.arg: _evaluate(p.annotation, names) for p in params if p.annotation is not None}
    return {arg: annotation for arg, annotation in annotations.items() if annotation is not Any}


# -- the walk ----------------------------------------------------------------------------------------------
def did_you_mean(key: str, known: list[str]) -> str:
    """`` (did you mean trainer.max_epochs?)`` for a misspelt ``key`` among the ``known`` dotted keys, or ``""``:
    the known names under the same parent that are spelt closest, or the new name of a key that moved (MOVED)."""
    import difflib

    if key in MOVED:
        return f" (it moved: {MOVED[key]})"
    parent, _, name = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = [siblings[c] for c in difflib.get_close_matches(name, list(siblings), n=3, cutoff=0.75)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a plain config tree, dotted (``trainer.max_epochs``), lists not entered."""
    keys: list[str] = []
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{prefix}{name}"
            keys.append(key)
            keys += dotted_keys(value, f"{key}.")
    return keys


class _Checker:
    """The walk over a config; ``targets=False`` imports no class (``source_annotations`` stand for signatures)."""

    def __init__(self, rules: dict[str, Rule], targets: bool = True) -> None:
        self.rules, self.targets = rules, targets

    def group(self, node: dict, prefix: str) -> None:
        for name, value in node.items():
            self.key(f"{prefix}{name}", value, None)

    def key(self, key: str, value: Any, known_by: str | None) -> None:
        rule = _rule_for(self.rules, key)
        if rule is None:
            if known_by is None:
                parent = key.rpartition(".")[0]
                siblings = [k.rpartition(".")[2] for k in self.rules if k.rpartition(".")[0] == parent and "*" not in k]
                hint = did_you_mean(key, [f"{parent}.{k}" if parent else k for k in siblings])
                raise UserError(f"unknown key {key}{hint}; known here: {', '.join(siblings) or 'none'}")
            if isinstance(value, dict) and "_target_" in value:
                self.target(key, value)
            return
        if not rule.test(value):
            raise _fail(key, value, rule.allowed)
        if value is None:
            return
        if rule.kind == "group":
            self.group(value, f"{key}.")
        elif rule.kind == "target":
            self.target(key, value)
        elif rule.kind == "entries":
            for name, entry in value.items():
                if entry is None:
                    continue
                if not (isinstance(entry, dict) and "_target_" in entry):
                    raise _fail(f"{key}.{name}", entry, "a node with _target_, or null to switch it off")
                self.target(f"{key}.{name}", entry)

    def target(self, key: str, node: dict) -> None:
        if self.targets:
            params, hints, var_kw = _signature(_locate(key, node["_target_"]))
        else:  # unknown keys wait for the import; the annotations its source spells readably are checked now
            target = node["_target_"]
            params, hints, var_kw = {}, source_annotations(target) if isinstance(target, str) else {}, True
        for name, value in node.items():
            if name in HYDRA_KEYS:
                continue
            sub = f"{key}.{name}"
            if name not in params and not var_kw:
                known = [p for p in params if p not in ("self", "args", "kwargs")]
                hint = did_you_mean(sub, [f"{key}.{p}" for p in known])
                if hint:
                    raise UserError(f"unknown key {sub}{hint}: not a parameter of {node['_target_']}")
                raise UserError(f"unknown key {sub}: {node['_target_']} takes {', '.join(known)}")
            annotation = hints.get(name, params[name].annotation if name in params else Any)
            if _rule_for(self.rules, sub) is None and not _fits(value, annotation):
                raise _fail(sub, value, f"{_words(annotation)} ({node['_target_']}'s {name})")
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and "_target_" in item:
                        self.target(f"{sub}[{i}]", item)
            self.key(sub, value, known_by=node["_target_"])


def resolved(cfg: DictConfig) -> dict:
    """The config without ``hydra`` as plain data, every interpolation resolved; a broken one is a UserError."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)  # type: ignore[union-attr]
    try:
        return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)  # type: ignore[return-value]
    except Exception as err:
        key = getattr(err, "full_key", None)
        first = str(err).splitlines()[0]
        raise UserError(f"{key}: {first}" if key else first) from None


def check_train_together(cfg: DictConfig) -> None:
    """``advnets-train``'s values that are each allowed but not together (``validate`` checks each alone): the
    first such pair raises one UserError line."""
    data = resolved(cfg)
    loss, game = data.get("loss") or {}, data.get("game") or {}
    conflict = choices.r1_with_compile(loss.get("r1_gamma") or 0, str(game.get("compile", "none")))
    if conflict:
        raise UserError(conflict)


ROOTS = ("objective",)
"""Keys that other values interpolate (``${advnets_mode:${objective}}``): checked before anything resolves."""


def validate(cfg: DictConfig | dict, rules: dict[str, Rule], targets: bool = True) -> None:
    """Check every key and value of ``cfg`` against ``rules``; the first mistake raises one UserError line.

    ``targets=False``: only what ``rules`` says, without importing the classes of ``_target_`` nodes (their
    unknown keys and annotations are checked by the full pass)."""
    if isinstance(cfg, DictConfig):
        for key in ROOTS:  # said as themselves, not as the interpolations built from them
            if key in rules and key in cfg and not OmegaConf.is_interpolation(cfg, key):
                _Checker(rules, targets).key(key, cfg[key], None)
    data = resolved(cfg) if isinstance(cfg, DictConfig) else {k: v for k, v in cfg.items() if k != "hydra"}
    _Checker(rules, targets).group(data, "")
