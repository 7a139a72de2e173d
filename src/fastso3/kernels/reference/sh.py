"""Reference spherical harmonics: the plan's recursion, one dense CG contraction per degree."""

from __future__ import annotations

import torch

from ...core.sh import SHPlan


def spherical_harmonics(x: torch.Tensor, plan: SHPlan, normalize: bool) -> torch.Tensor:
    """x: (..., 3) -> (..., (lmax+1)**2), all degrees 0..lmax in ``plan.normalization``."""
    if normalize:
        r2 = x.pow(2).sum(-1, keepdim=True)
        x = torch.where(r2 > 0, x * torch.rsqrt(torch.where(r2 > 0, r2, 1.0)), 0.0)
    degrees = [torch.ones_like(x[..., :1])]
    for block in plan.recursion_blocks:
        a = torch.tensor(block, dtype=x.dtype, device=x.device)
        degrees.append(torch.einsum("kji,...j,...i->...k", a, degrees[-1], x))
    scale = torch.tensor(plan.scale, dtype=x.dtype, device=x.device)
    return torch.cat(degrees, dim=-1) * scale
