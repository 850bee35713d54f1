"""Entry-point helper: user-caused errors end with one clear line, not a traceback."""

from __future__ import annotations

import json
import os
import sys

from common.io import DiskFullError

USER_ERRORS = (KeyError, ValueError, FileNotFoundError, RuntimeError, FloatingPointError, DiskFullError)


def run(main, argv=None) -> None:
    """Run `main(argv)`; print a user error as `error: <cause and fix>` and exit 2 (KT_DEBUG=1 re-raises)."""
    try:
        main(argv)
    except USER_ERRORS as e:
        if os.environ.get("KT_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def out_args_main(description: str, from_dict, run_fn, out_help: str = "run directory"):
    """The ``main(argv)`` of a runner taking ``--out DIR --args MAPPING``: ``run_fn(from_dict(mapping), out)``."""
    def main(argv=None):
        import argparse

        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--out", required=True, help=out_help)
        ap.add_argument("--args", required=True, help="RunArgs as YAML/JSON (module docstring)")
        a = ap.parse_args(argv)
        run_fn(from_dict(parse_mapping(a.args)), a.out)
    return main


def parse_mapping(text: str, what: str = "--args") -> dict:
    """A mapping given on the command line as JSON (what the pipeline writes) or YAML (what people type).

    JSON is tried first: YAML 1.1 reads JSON's ``1e-05`` as a *string*, which would reach the learner as
    a learning rate of '1e-05'.
    """
    import yaml

    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{what}: neither JSON nor YAML ({e})") from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a mapping such as '{{game: Pong, seed: 0}}', got {text!r}")
    return d


def mapping_with_overrides(text: str, overrides: list[str]) -> dict:
    """``--args`` (parse_mapping) with ``--set KEY=VALUE`` overrides applied on top (VALUE read as YAML)."""
    import yaml

    d = parse_mapping(text)
    for kv in overrides:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got '{kv}'")
        d[k] = yaml.safe_load(v)
    return d


def add_run_options(ap, out_help: str, args_help: str) -> None:
    """A runner's ``--out DIR`` (required), ``--args MAPPING`` (YAML/JSON, default ``{}``) and repeated
    ``--set KEY=VALUE`` on the parser `ap`; :func:`run_mapping` reads the mapping back."""
    ap.add_argument("--out", required=True, help=out_help)
    ap.add_argument("--args", default="{}", help=args_help)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field")


def run_mapping(a) -> dict:
    """The parsed ``--args`` of :func:`add_run_options` with its ``--set`` overrides applied."""
    return mapping_with_overrides(a.args, a.set)
