"""``FullyConnectedNet``: a bias-free MLP with e3nn's variance-preserving normalisation."""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence

import torch

from ..math import normalize2mom
from ..o3 import FactoredWeight

__all__ = ["FullyConnectedNet"]


class _Layer(torch.nn.Module):
    """One layer ``x -> act(x @ W / sqrt(h_in var_in)) sqrt(var_out)`` (or linear, see FullyConnectedNet).

    Shapes and dtypes: ``(..., h_in) -> (..., h_out)``, in the dtype of ``weight`` (``(h_in, h_out)``).
    """

    h_in: int
    h_out: int
    var_in: float
    var_out: float

    def __init__(self, h_in: int, h_out: int, act: Optional[Callable], var_in: float, var_out: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(h_in, h_out))
        self.act = act
        self.h_in = h_in
        self.h_out = h_out
        self.var_in = var_in
        self.var_out = var_out

    def extra_repr(self) -> str:
        return f"{self.h_in}->{self.h_out}, linear={self.act is None}"

    def matrix(self) -> torch.Tensor:
        """The normalised weight ``(h_in, h_out)`` of a linear layer: ``forward(x) == x @ matrix()``."""
        return self.weight / (self.h_in * self.var_in / self.var_out) ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            x = x @ (self.weight / (self.h_in * self.var_in) ** 0.5)
            x = self.act(x)
            if self.var_out != 1:
                x = x * self.var_out**0.5
            return x
        return x @ self.matrix()


class FullyConnectedNet(torch.nn.Sequential):
    r"""Fully-connected network without biases, normalised to preserve the second moment (e3nn's).

    Shapes and dtypes: ``(..., hs[0]) -> (..., hs[-1])``, in the parameters' dtype (torch's default
    dtype at construction).

    Layer ``i`` (``layer{i}``, weight ``(hs[i], hs[i+1])``, initialised ``N(0, 1)``) computes
    ``phi(x @ W / sqrt(h_in var_in)) sqrt(var_out)`` where ``phi`` is ``act`` rescaled by
    :class:`~fastso3.math.normalize2mom` (e3nn's Monte-Carlo constant). Hidden layers use
    ``var_out = 1``; the first layer uses ``var_in = variance_in`` (the next ones 1); the last layer
    uses ``var_out = variance_out`` and is linear, ``x @ W / sqrt(h_in var_in / var_out)``, unless
    ``out_act`` is True. The parameter names, shapes, initialisation order and values are those of
    ``e3nn.nn.FullyConnectedNet``, so e3nn state dicts load as they are (and the same seed gives the
    same weights).

    Args:
        hs: the sizes ``[h_in, h_1, ..., h_out]`` (positive ints; one entry gives the identity).
        act: the activation (an elementwise callable or module), or None for a linear network.
        variance_in: the second moment of the inputs (> 0).
        variance_out: the target second moment of the outputs (> 0).
        out_act: also apply ``act`` on the last layer.
    """

    def __init__(
        self,
        hs: Sequence[int],
        act: Optional[Callable] = None,
        variance_in: float = 1,
        variance_out: float = 1,
        out_act: bool = False,
    ) -> None:
        super().__init__()
        hs = list(hs)
        if len(hs) < 1:
            raise ValueError("hs must have at least one entry (the input size)")
        for h in hs:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
                raise ValueError(f"hs must be positive ints, got {hs}")
        for name, v in (("variance_in", variance_in), ("variance_out", variance_out)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        self.hs = [int(h) for h in hs]
        if act is not None:
            act = normalize2mom(act)
        var_in = variance_in
        for i, (h1, h2) in enumerate(zip(self.hs, self.hs[1:])):
            last = i == len(self.hs) - 2
            var_out = variance_out if last else 1
            layer_act = (act if out_act else None) if last else act
            self.add_module(f"layer{i}", _Layer(h1, h2, layer_act, var_in, var_out))
            var_in = var_out

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != self.hs[0]:
            raise ValueError(f"FullyConnectedNet: expected an input (..., {self.hs[0]}), got {tuple(getattr(x, 'shape', ()))}")
        params = next(self.parameters(), None)
        if params is not None and (x.dtype != params.dtype or x.device != params.device):
            raise TypeError(
                f"FullyConnectedNet: the input is {x.dtype} on {x.device} but the network is {params.dtype} on "
                f"{params.device}; convert one of them (module.to({x.dtype}) or x.to({params.dtype}))"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., hs[0]) -> (..., hs[-1])`` in the network's dtype."""
        self._check_input(x)
        return super().forward(x)

    def factored(self, x: torch.Tensor) -> FactoredWeight:
        """The output as its two factors: ``(..., hs[0]) -> FactoredWeight(hidden (..., hs[-2]), matrix (hs[-2], hs[-1]))``
        with ``hidden @ matrix == self(x)``.

        Pass it as the weights of a tensor product (``tp(x1, x2, net.factored(emb))``): a fully connected
        product applies the last layer inside its kernel and never stores the ``(..., hs[-1])`` weights.

        Raises:
            ValueError: if the network has no layer or its last layer has an activation (``out_act=True``).
        """
        self._check_input(x)
        layers = list(self)
        if not layers or layers[-1].act is not None:
            raise ValueError("factored() needs a linear last layer (at least one layer and out_act=False)")
        hidden = x
        for layer in layers[:-1]:
            hidden = layer(hidden)
        return FactoredWeight(hidden, layers[-1].matrix())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}{self.hs}"
