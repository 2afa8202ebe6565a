"""Command-line flags from config dataclasses: the field's docstring is its --help.

One scheme for every command:

- a scalar field `lr` is `--lr`; a bool `progress` is `--progress/--no-progress`; a tuple
  field takes several values (`--task-args a=1 b=2`), numbers where its items are numbers
  (`--demos 50 200`); one whose metadata says "repeat" also gathers the values of a flag
  given again (`--sweep light=0,1 --sweep camera=0,1`);
- a nested dataclass field `train: TrainConfig` gives its fields under its name, in their
  own help group: `--train.lr`, `--train.steps-per-epoch`. The nested defaults shown are the
  command's (the field's default instance), not the nested class's. Fields the command sets
  itself are listed in the field's metadata under "fixed" and get no flag;
- a policy config field, wherever it is nested, is `--policy NAME` plus
  `--policy-args key=value ...` (a command trains one policy). The arguments override the
  default policy's config when NAME is the default kind, and the named policy's defaults
  otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, get_origin, get_type_hints

from apprentice.errors import ApprenticeError
from apprentice.overrides import (
    field_default,
    parse_overrides,
    strip_optional,
    tuple_item_type,
)
from apprentice.policies.base import (
    PolicyConfig,
    config_field_docs,
    policy_config_from_dict,
    policy_names,
)
from apprentice.policies.encoders import CameraConfig


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass's fields, each folded onto one line for --help."""
    return {name: " ".join(doc.split()) for name, doc in config_field_docs(cls).items()}


def _is_policy(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, PolicyConfig)


def _policy_overrides(policy: PolicyConfig) -> list[str]:
    """The key=value items that make `policy` from its kind's defaults (for --help); the
    camera's fields go by name, as --policy-args takes them."""

    def items(config: PolicyConfig) -> dict[str, Any]:
        d = config.to_dict()
        return {**d.pop("camera", {}), **d}

    base = items(type(policy)())
    return [
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in items(policy).items()
        if base.get(k, dataclasses.MISSING) != v
    ]


def _camera_help() -> str:
    """`CameraConfig`'s fields as [NAME=DEFAULT] docstring, for the --policy-args help."""
    docs = field_docs(CameraConfig)
    return " ".join(
        f"[{f.name}={'FILE' if f.default is None else str(f.default).lower()}] "
        f"{docs[f.name].rstrip('.')}."
        for f in dataclasses.fields(CameraConfig)
    )


def _help(text: str, default: Any = None) -> str:
    # argparse formats help with %: a literal one (e.g. "10%") must be doubled.
    if default not in (None, "", ()):
        text = f"{text} (default: {default})"
    return text.replace("%", "%%")


def _add_policy_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    dest: str,
    doc: str,
    default: PolicyConfig,
) -> None:
    parser.add_argument(
        "--policy",
        dest=dest,
        default=default.name,
        choices=policy_names(),
        help=_help(doc or "Policy kind.", default.name),
    )
    overrides = " ".join(_policy_overrides(default))
    parser.add_argument(
        "--policy-args",
        dest=dest + "@args",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=_help(
            "Overrides of the policy config as key=value (a tuple as a,b or [a,b]), e.g. "
            f"hidden_dim=128 head=gmm, or image_keys=agentview_image,eye_in_hand_image. "
            f"The camera settings go by name (or as camera.NAME): {_camera_help()}",
            overrides or None,
        ),
    )


def add_dataclass_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    positional: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    choices: dict[str, list[str]] | None = None,
    _prefix: str = "",
    _defaults: Any = None,
    _group: argparse._ArgumentGroup | None = None,
) -> None:
    """Add a flag per field of `cls` (nested dataclasses too; see the module docstring).
    `positional`, `skip`, `required` and `choices` name fields by their dotted path
    (`train.lr`)."""
    docs = field_docs(cls)
    hints = get_type_hints(cls)
    target = _group or parser
    for f in dataclasses.fields(cls):
        path = _prefix + f.name
        if path in skip:
            continue
        tp, optional = strip_optional(hints[f.name])
        help_text = docs.get(f.name, "")
        default = getattr(_defaults, f.name) if _defaults is not None else field_default(f)
        if _is_policy(tp):
            _add_policy_args(target, path, help_text, default)
            continue
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            group = parser.add_argument_group(f"{f.name} settings (--{path}.*)", help_text or None)
            fixed = tuple(path + "." + n for n in f.metadata.get("fixed", ()))
            add_dataclass_args(
                parser,
                tp,
                skip=skip + fixed,
                required=required,
                choices=choices,
                _prefix=path + ".",
                _defaults=None if default is dataclasses.MISSING else default,
                _group=group,
            )
            continue
        kwargs: dict[str, Any] = {}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif get_origin(tp) is tuple:
            item = tuple_item_type(tp)
            kwargs["type"] = item if item in (int, float) else str
            kwargs["nargs"] = "*"
            if f.metadata.get("repeat"):
                kwargs["action"] = "extend"
        else:
            continue  # a field of another type has no flag: Python callers set it
        if choices and path in choices:
            kwargs["choices"] = choices[path]
        if path in positional:
            if default is not dataclasses.MISSING:
                kwargs.update(nargs="?", default=default)
            target.add_argument(path, help=_help(help_text), **kwargs)
            continue
        flag = "--" + _prefix + f.name.replace("_", "-")
        if default is dataclasses.MISSING or path in required:
            kwargs["required"] = not optional or path in required
            kwargs["help"] = _help(help_text)
        else:
            # argparse extends a copy of the default: a list, where a tuple has no extend.
            kwargs["default"] = list(default) if kwargs.get("action") == "extend" else default
            kwargs["help"] = _help(help_text, None if tp is bool else default)
        target.add_argument(flag, dest=path, **kwargs)


def dataclass_from_args(
    cls: type, ns: argparse.Namespace, *, base: Any = None, **overrides: Any
) -> Any:
    """`cls` from parsed flags (nested dataclasses and the policy too); `overrides` set
    top-level fields directly.

    With `base` (an instance, e.g. a recipe's config) the flags given on the command line
    (`ns.given`, set by `apprentice.cli.main`) override its values and every other field keeps
    base's value, the flags' defaults unused.
    """
    given = None if base is None else frozenset(getattr(ns, "given", ()))
    return _build(cls, vars(ns), "", base, overrides, given)


def _build(
    cls: type,
    values: dict[str, Any],
    prefix: str,
    defaults: Any,
    overrides: dict[str, Any],
    given: frozenset[str] | None = None,
) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        tp, _ = strip_optional(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else field_default(f)
        explicit = given is None or bool(given & {path, path + "@args"})
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif _is_policy(tp) and path in values and explicit:
            name = values[path] if given is None or path in given else default.name
            kwargs[f.name] = _policy_from_flags(name, values[path + "@args"], default)
        elif _is_policy(tp) and given is not None:
            kwargs[f.name] = default
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
            nested_defaults = None if default is dataclasses.MISSING else default
            kwargs[f.name] = _build(tp, values, path + ".", nested_defaults, {}, given)
        elif path in values and explicit:
            v = values[path]
            if get_origin(tp) is tuple and v is not None:
                v = tuple(v)
            kwargs[f.name] = v
        elif default is not dataclasses.MISSING:
            kwargs[f.name] = default
    return cls(**kwargs)


def _policy_from_flags(name: str, items: list[str], default: PolicyConfig) -> PolicyConfig:
    """The policy of `--policy NAME --policy-args k=v ...` (see the module docstring)."""
    base = _chosen_fields(default) if name == default.name else {"name": name}
    args = parse_overrides(items, "--policy-args entry")
    if "name" in args:
        raise ApprenticeError("--policy-args: give the policy kind with --policy, not name=")
    return policy_config_from_dict({**base, **args})


def _chosen_fields(policy: PolicyConfig) -> dict[str, Any]:
    """`policy`'s dict without the fields its kind would fill in with the same values itself:
    its defaults, and values derived from other fields (ACT's seq_len is its chunk_size). An
    override of the field such a value derives from then carries over to it (chunk_size=10
    on an ACT with the default chunk of 20 trains windows of 10, rather than being refused)."""
    chosen = policy.to_dict()
    for key in [k for k in chosen if k != "name"]:
        without = {k: v for k, v in chosen.items() if k != key}
        try:
            same = policy_config_from_dict(without) == policy
        except ApprenticeError:
            same = False
        if same:
            chosen = without
    return chosen
