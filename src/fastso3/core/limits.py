"""Guards against accidental huge work: sizes whose cost would run for minutes or exhaust memory.

Each guard raises :class:`TooLarge` up front, stating the estimated size and the override argument that
runs the work anyway. The limits are set well above what models of the field use (degrees <= 8, a few
hundred images) and below what takes more than a few seconds or gigabytes on a small CPU machine.
"""

from __future__ import annotations

__all__ = ["SH_MAX_DEGREE", "TooLarge", "WIGNER_3J_MAX_ENTRIES", "check_work"]

#: ``wigner_3j`` builds an exact dense table of (2l1+1)(2l2+1)(2l3+1) entries: 2e6 entries (l1 = l2 = l3 = 62)
#: take a few seconds on a 2-core CPU; the time grows about as l^3.6 (l = 200: minutes).
WIGNER_3J_MAX_ENTRIES = 2_000_000
#: Spherical harmonics up to this degree build their recursion tables in about a second (time ~ l^2.6).
SH_MAX_DEGREE = 128


class TooLarge(ValueError):
    """A request whose cost would run for minutes or exhaust memory; pass the named override to run it."""


def check_work(what: str, size: float, limit: float, estimate: str, override: str, allowed: bool) -> None:
    """Raise :class:`TooLarge` if ``size > limit`` and the caller did not pass ``override``."""
    if size > limit and not allowed:
        raise TooLarge(f"{what}: {estimate}, above the limit of {limit:g}; pass {override} to run it anyway")
