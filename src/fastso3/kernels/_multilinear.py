"""Autograd of ops that contract a multilinear form into a subset of its slots."""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def multilinear_backward(
    saved: Sequence, outputs: Sequence[int], cotangents: Sequence, needs_input_grad: Sequence[bool],
    contract: Callable[[list, list[int]], list[torch.Tensor]], exclusive: Sequence[tuple[int, int]] = (),
) -> list:  # fmt: skip
    """Gradients of the slots of a multilinear form ``F`` for an op that computed the slots ``outputs``.

    Output ``s`` is ``F`` contracted over every slot but ``s``; its derivative w.r.t. slot ``t``, paired with the
    cotangent ``c_s``, is ``F`` contracted over every slot but ``t`` with ``c_s`` in slot ``s``: the same op,
    ``contract(slot_tensors, targets)``, one call per output. ``saved``: the op's slot tensors (None for an
    output slot). ``exclusive``: pairs of slots such that every term of ``F`` (a sum of multilinear terms) holds
    exactly one of the two. The derivative of output ``s`` has only the terms with ``s``, so ``s``'s partners are
    left out (None: the op's absent slot) and get nothing from ``c_s``; two exclusive outputs are differentiated in
    one call, each cotangent in its slot (every term then holds one of them). Returns one gradient (or None) per
    slot.
    """
    grads: list = [None] * len(saved)
    given = {s: c for s, c in zip(outputs, cotangents) if c is not None}
    groups = []
    for pair in exclusive:
        if all(s in given for s in pair) and not any(s in group for group in groups for s in pair):
            groups.append(pair)
    groups += [(s,) for s in given if not any(s in group for group in groups)]
    for group in groups:
        partners = set() if len(group) > 1 else {t for pair in exclusive if group[0] in pair for t in pair} - set(group)
        targets = [t for t in range(len(saved)) if t not in group and t not in partners and needs_input_grad[t]]
        if not targets:
            continue
        args = [None if t in partners else given[t] if t in group else a for t, a in enumerate(saved)]
        for t, d in zip(targets, contract(args, targets)):
            grads[t] = d if grads[t] is None else grads[t] + d
    return grads


def register_multilinear_autograd(op, slots: int, exclusive: Sequence[tuple[int, int]] = ()) -> None:
    """Register the autograd of ``op(*slot_tensors, *constants, outputs, backend)``, which contracts a multilinear
    form of ``slots`` slots into the slots ``outputs``: every derivative is the same op (:func:`multilinear_backward`),
    called with the same constants and backend."""

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:slots])
        ctx.constants, ctx.outputs, ctx.backend = inputs[slots:-2], inputs[-2], inputs[-1]

    def backward(ctx, cotangents):
        grads = multilinear_backward(ctx.saved_tensors, ctx.outputs, cotangents, ctx.needs_input_grad,
                                     lambda args, targets: op(*args, *ctx.constants, targets, ctx.backend),
                                     exclusive)  # fmt: skip
        return *grads, *[None] * (len(ctx.constants) + 2)

    op.register_autograd(backward, setup_context=setup)
