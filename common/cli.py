"""Entry-point helper: user-caused errors end with one clear line, not a traceback."""

from __future__ import annotations

import os
import sys

USER_ERRORS = (KeyError, ValueError, FileNotFoundError, RuntimeError, FloatingPointError)


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
