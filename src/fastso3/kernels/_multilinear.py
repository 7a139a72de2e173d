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
    output slot). ``exclusive``: pairs of slots that no term of ``F`` holds together (``F`` a sum of multilinear
    terms, linear in each pair jointly): the derivative of output ``s`` has none of the terms without ``s``, so
    its partner is left out (None: the op's absent slot) and gets nothing from ``c_s``. Returns one gradient (or
    None) per slot.
    """
    grads: list = [None] * len(saved)
    for s, c in zip(outputs, cotangents):
        partners = {t for pair in exclusive if s in pair for t in pair if t != s}
        targets = [t for t in range(len(saved)) if t != s and t not in partners and needs_input_grad[t]]
        if c is None or not targets:
            continue
        args = [None if t in partners else a for t, a in enumerate(saved)]
        args[s] = c
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
