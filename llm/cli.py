"""Command lines made from config dataclasses with ``tyro`` (``llm.train`` and ``llm.ics`` share this).

``tyro`` builds the parser from the dataclass: every field becomes ``--section.field`` (nested
dataclasses give dotted flags), its docstring and default become the ``--help`` text, ``Literal``
choices are listed. Precedence: dataclass defaults < ``--config file.yaml`` < flags (the YAML is
loaded into an instance that tyro uses as its defaults, so ``--help`` shows them too).

A small pre-pass keeps the flags this package has always accepted and reports what was given:

* hyphens and underscores are the same (``--max-iters`` = ``--max_iters``; help shows underscores);
* a field whose name is unique across sections also answers to ``--name`` (``--lr`` = ``--optim.lr``),
  plus per-CLI aliases (``--votes``, ``--no_progress``);
* booleans take ``true/false/yes/no/1/0/on/off`` or nothing (bare ``--resume`` means true);
* ``none`` / ``null`` set an optional field to None; a tuple also takes ``a,b``;
* values are checked against the field's type first, so a bad value is a ``ValueError`` naming the
  flag (``--steps expects int, got 'abc'``) rather than an exit from inside the parser.

:func:`parse` returns the built config and the set of dotted field names given on the command line.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import types
import typing
from typing import Any, Callable, Literal

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def leaves(cls, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> type hint of every non-dataclass field of ``cls`` (nested dataclasses walked)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        h = hints[f.name]
        if dataclasses.is_dataclass(h):
            out.update(leaves(h, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = h
    return out


def short_aliases(names) -> dict[str, str]:
    """``field -> section.field`` for every nested field whose name is unique across all leaves."""
    count: dict[str, int] = {}
    for d in names:
        count[d.rsplit(".", 1)[-1]] = count.get(d.rsplit(".", 1)[-1], 0) + 1
    return {d.rsplit(".", 1)[-1]: d for d in names if "." in d and count[d.rsplit(".", 1)[-1]] == 1}


def unwrap_optional(hint) -> tuple[bool, Any]:
    """``(True, T)`` for a type hint ``T | None`` (``Optional[T]``), else ``(False, hint)``."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return True, args[0]
    return False, hint


def _check_scalar(text: str, hint, flag: str) -> str:
    """``text`` rendered for tyro after checking it against ``hint`` (ValueError naming the flag)."""
    if typing.get_origin(hint) is Literal:
        choices = [str(a) for a in typing.get_args(hint)]
        if text not in choices:
            raise ValueError(f"{flag} must be one of {choices}, got {text!r}")
        return text
    if hint is bool:
        t = text.lower()
        if t not in TRUE + FALSE:
            raise ValueError(f"{flag} expects true/false, got {text!r}")
        return "True" if t in TRUE else "False"
    if hint in (int, float):
        try:
            hint(text)
        except ValueError:
            raise ValueError(f"{flag} expects {hint.__name__}, got {text!r}") from None
    return text


def _render(values: list[str], hint, flag: str) -> list[str]:
    """The tokens tyro gets for one flag."""
    optional, hint = unwrap_optional(hint)
    if optional and len(values) == 1 and values[0].lower() in ("none", "null"):
        return ["None"]
    if hint is bool and not values:
        return ["True"]
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        elem = args[0]
        if len(values) == 1 and "," in values[0]:
            values = [v.strip() for v in values[0].split(",")]
        if origin is tuple and Ellipsis not in args and len(values) != len(args):
            raise ValueError(f"{flag} expects {len(args)} values, got {len(values)}: {values}")
        return [_check_scalar(v, elem, flag) for v in values]
    if len(values) != 1:
        raise ValueError(f"{flag} expects one value, got {len(values)}: {values}")
    return [_check_scalar(values[0], hint, flag)]


def _value(tokens: list[str], hint):
    """The Python value of checked tokens (used to rebuild a config whose validation failed)."""
    optional, hint = unwrap_optional(hint)
    if optional and tokens == ["None"]:
        return None
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return origin(_value([t], typing.get_args(hint)[0]) for t in tokens)
    t = tokens[0]
    return t == "True" if hint is bool else hint(t) if hint in (int, float) else t


def build(cls, base, overrides: dict[str, Any]):
    """``cls`` from the fields of ``base`` with dotted ``overrides`` applied (runs its validation)."""
    def make(c, obj, prefix):
        kw = {}
        for f in dataclasses.fields(c):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                v = make(type(v), v, f"{prefix}{f.name}.")
            kw[f.name] = overrides.get(f"{prefix}{f.name}", v)
        return c(**kw)
    return make(cls, base, "")


def normalize(argv: list[str], names: dict[str, Any], aliases: dict[str, Any], *,
              refuse: dict[str, str] | None = None) -> tuple[list[str], dict[str, list[str]], str | None]:
    """(argv for tyro with dotted flags and checked values, {dotted name: its tokens} of the fields
    given, ``--config`` value)."""
    out, given, config, i = [], {}, None, 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-h", "--help"):
            out.append(tok)
            i += 1
            continue
        if not tok.startswith("--"):
            raise ValueError(f"unexpected argument {tok!r}; options look like --name value (see --help)")
        name, eq, inline = tok[2:].partition("=")
        name = name.replace("-", "_")
        j = i + 1
        values = [inline] if eq else []
        while not eq and j < len(argv) and not argv[j].startswith("--") and argv[j] not in ("-h",):
            values.append(argv[j])
            j += 1
        i = j
        if name == "config":
            if len(values) != 1:
                raise ValueError("--config expects one YAML file")
            config = values[0]
            continue
        if refuse and name in refuse:
            raise ValueError(refuse[name])
        target = aliases.get(name, name)
        if isinstance(target, tuple):  # an alias with a fixed value, e.g. --no_progress
            target, fixed = target
            if values:
                raise ValueError(f"--{name} takes no value")
            values = [str(fixed)]
        if target not in names:
            raise ValueError(f"unknown option --{name}; see --help for the options")
        tokens = _render(values, names[target], f"--{target}")
        out += [f"--{target}", *tokens]
        given[target] = tokens
    return out, given, config


def parse(cls, argv: list[str] | None, *, prog: str, description: str, base=None,
          load: Callable[[str], Any] | None = None, aliases: dict[str, Any] | None = None,
          refuse: dict[str, str] | None = None, mirror: dict[str, str] | None = None
          ) -> tuple[Any, frozenset[str]]:
    """Build ``cls`` from the command line (see the module docstring); returns (config, explicit names).

    ``load(path)`` turns ``--config path`` into an instance of ``cls`` (the defaults for the flags);
    ``base`` is the instance used without ``--config``; ``refuse`` maps flag names to error messages;
    ``mirror`` copies a given field to another one (``{"method": "rollout.method"}``)."""
    import sys

    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    names = leaves(cls)
    table = {**short_aliases(names), **(aliases or {})}
    tokens, given, config = normalize(argv, names, table, refuse=refuse)
    explicit = frozenset(given)
    for src, dst in (mirror or {}).items():
        if src in given:
            tokens += [f"--{dst}", *given[src]]
            given[dst] = given[src]
    if config is not None:
        if load is None:
            raise ValueError("--config: this command takes no config file")
        base = load(config)
    if base is None:
        base = cls()
    alias_help = ", ".join(f"--{a}" for a in sorted(table))
    desc = (f"{description}\n\nFlags: --field VALUE (nested: --section.field); hyphens or underscores; "
            f"booleans take true/false or nothing. Short forms: {alias_help}."
            + ("\n--config FILE.yaml: defaults < YAML < flags." if load is not None else ""))
    quiet = "-h" not in tokens and "--help" not in tokens
    try:  # tyro's own error box is replaced by the ValueError below (stderr held back while parsing)
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            cfg = tyro.cli(cls, args=tokens, default=base, prog=prog, description=desc, use_underscores=True,
                           config=(tyro.conf.FlagConversionOff,), console_outputs=not quiet)
    except SystemExit as e:
        if not quiet or not e.code:
            raise
        # tyro exits when the dataclass's own checks fail; rebuild it here to raise that ValueError
        build(cls, base, {k: _value(v, names[k]) for k, v in given.items()})
        raise ValueError(f"{prog}: the command line was rejected (run with --help)") from None
    return cfg, explicit
