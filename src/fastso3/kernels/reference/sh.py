"""Reference spherical harmonics: the plan's recursion, one dense CG contraction per degree."""

from __future__ import annotations

import torch

from ...core.sh import SHPlan


def _unit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u = x / |x| (0 at x = 0), 1 / |x| (0 at x = 0), and the mask x != 0; NaN-free to any order.

    Rescaled by the largest component ``m`` before squaring (no overflow or underflow for any finite
    nonzero x). ``m`` is held constant: ``(x / m) / |x / m|`` and ``m / |x|`` are, as functions of x for
    a fixed m, exactly ``u`` and ``1 / |x|``, so derivatives of every order stay exact.
    """
    m = x.detach().abs().amax(-1, keepdim=True)
    nonzero = m > 0
    m = torch.where(nonzero, m, 1.0)
    y = x / m
    inv_norm_y = torch.where(nonzero, torch.rsqrt(torch.where(nonzero, y.pow(2).sum(-1, keepdim=True), 1.0)), 0.0)
    return y * inv_norm_y, inv_norm_y / m, nonzero


def spherical_harmonics(x: torch.Tensor, plan: SHPlan, normalize: bool) -> torch.Tensor:
    """x: (..., 3) -> (..., (lmax+1)**2), all degrees 0..lmax in ``plan.normalization``."""
    if normalize:
        x = _unit(x)[0]
    degrees = [torch.ones_like(x[..., :1])]
    for block in plan.recursion_blocks:
        a = torch.tensor(block, dtype=x.dtype, device=x.device)
        degrees.append(torch.einsum("kji,...j,...i->...k", a, degrees[-1], x))
    scale = torch.tensor(plan.scale, dtype=x.dtype, device=x.device)
    return torch.cat(degrees, dim=-1) * scale


def normalize_vjp(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cotangent of x for u = x / |x|: ``(g - u (u . g)) / |x|`` (0 at x = 0). x, g: (..., 3)."""
    u, inv_r, _ = _unit(x)
    return (g - u * (u * g).sum(-1, keepdim=True)) * inv_r


def normalize_vjp_grad_x(x: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """d/dx of ``<v, normalize_vjp(x, g)>``, in differentiable torch ops. x, g, v: (..., 3).

    With P w = w - u (u . w) and s = u . g:
    ``-[(v . g) u + s P v + (v . u) P g - (v . u) s u] / |x|^2``.
    """
    u, inv_r, _ = _unit(x)

    def dot(a, b):
        return (a * b).sum(-1, keepdim=True)

    s, vu = dot(u, g), dot(v, u)
    pv, pg = v - u * dot(u, v), g - u * s
    return -(dot(v, g) * u + s * pv + vu * pg - vu * s * u) * inv_r * inv_r
