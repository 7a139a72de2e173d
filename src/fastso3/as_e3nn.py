"""``python -m fastso3.as_e3nn SCRIPT [ARGS...]`` (or ``-m MODULE [ARGS...]``): run a program written for
e3nn 0.6.0 on fastso3, with :func:`fastso3.compat.alias_e3nn` switched on first.

``sys.argv`` and ``sys.path[0]`` are set as ``python SCRIPT ARGS...`` (``python -m MODULE ARGS...``)
would set them; the exit status is the program's.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Optional, Sequence

from .compat_e3nn import alias_e3nn

USAGE = "usage: python -m fastso3.as_e3nn SCRIPT [ARGS...]  or  python -m fastso3.as_e3nn -m MODULE [ARGS...]"


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs ``argv`` (default ``sys.argv[1:]``): ``[SCRIPT, ARGS...]`` or ``["-m", MODULE, ARGS...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv == ["-m"]:
        print(USAGE, file=sys.stderr if not argv or argv == ["-m"] else sys.stdout)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    alias_e3nn()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]  # runpy replaces argv[0] with the module's file, as python -m does
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return
    script = argv[0]
    if not os.path.exists(script):
        raise SystemExit(f"fastso3.as_e3nn: can't open file {script!r}: no such file")
    sys.argv = argv
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
