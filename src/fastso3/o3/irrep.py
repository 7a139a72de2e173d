"""Named irreps: ``irrep.l1o == Irrep("1o")``, as ``e3nn.o3.irrep`` (e3nn 0.6.0, ``e3nn/o3/irrep/__init__.py``).

Any attribute ``l<irrep>`` is the :class:`~fastso3.core.irreps.Irrep` ``<irrep>``: ``l0e``, ``l2o``,
``l3y`` (``y``: the parity of a spherical harmonic, ``(-1)^l``), also through
``from fastso3.o3.irrep import l1o``. Other names raise ``AttributeError``.
"""

from ..core.irreps import Irrep


def __getattr__(name: str) -> Irrep:
    if name.startswith("l") and len(name) > 1:
        try:
            return Irrep(name[1:])
        except (ValueError, TypeError):
            pass
    raise AttributeError(f"module 'fastso3.o3.irrep' has no attribute '{name}' (names are l<irrep>, e.g. l1o)")
