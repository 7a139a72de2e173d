"""Benchmark ``so2``: eSCN SO(2) convolutions (``fastso3.so2``), float32.

Cases (the FastSo3 README's table shapes): ``b = 1000`` edges, ``c = 128`` channels, ``hidden = c``,
``L = 1..6``, forward, for

* ``conv_e``: ``SO2_conv_e`` alone (features already in the edge frame), and
* ``message``: ``get_message`` (edge frames, Wigner blocks, rotation in and out, ``SO2_conv_e``);

plus ``b = 100000`` at ``L = 2`` and ``6``, forward and forward+backward (gradients w.r.t. features, gates,
edge vectors and parameters). ``--quick``: ``c = 16`` and ``b = 100 / 2000``, ``L`` in (1, 6).

Providers, same parameters and inputs:

* ``fastso3`` (eager) and ``fastso3-compiled`` (``torch.compile(fullgraph=True)``);
* ``per-m-loop``: ``fastso3.so2.reference`` (Euler-angle Wigner blocks, Python loop over ``m`` touching only
  the valid degrees, as the official eSCN code); the reference of the speed-up column;
* ``fastso3-style``: FastSo3's padded formulation (flip/cat of the weights every call, einsums over the
  padded ``2L`` axis, dense padded Wigner matrices from Euler angles);
* ``matmul``: one float32 matmul ``(M, 512) @ (512, 512)`` with the layer's useful FLOP count (eSCN's
  ``c h (L+1)(4+8L)`` per edge, plus ``4 c sum(2l+1)^2`` for the two rotations of ``message``); the ratio
  ``matmul/fastso3-compiled`` is the fraction of the machine's matmul throughput the layer reaches;
* ``in-frame`` (``message`` cases): the same eager ``SO2_conv_e`` on the same features taken as already in the
  edge frame (no edge frames, no Wigner blocks, no rotation): ``1 - in-frame/fastso3`` is what the rotation adds
  to the eager message, its share of the message time (``get_message`` fuses the rotation into the layer's
  matmuls, so it has no time of its own there);
* ``rotation`` (``message`` cases): edge frames + Wigner blocks + the standalone rotation in and out
  (``rotate``, ``rotate_back``), no convolution; ``rotation/fastso3`` compares it with the fused message.

Each case's ``gflop_forward`` is the useful FLOP count of its layer (or message): the work of the fastso3,
baseline and matmul providers; ``in-frame`` and ``rotation`` do a part of it, only their times are compared.

``checks`` records the agreement of the providers and the machine's large-matmul GFLOP/s (2048^3, float32).

``conv`` cases (issue 16): one message-passing convolution at equal channels, ``C x 0e + C x 1o + ... + C x L``
(parities ``(-1)^l``) in and out, ``C`` in (32, 64), ``L`` in (2, 3, 4, 6), 1000 nodes, 16000 random edges
(positions spread so that every edge is inside the cutoff), forward and forward+backward (gradients w.r.t. the
node features, the positions and every parameter). Edge vectors are computed from the positions in both.

* ``so2``: ``SO2Convolution(irreps, irreps, hidden=C)`` (edge frames and Wigner blocks, radial gates from an MLP
  8 -> 64 -> (L+1) C, the SO(2) bottleneck, the sum into the receivers); its default path (node tables for
  L <= 3);
* ``so2-per-edge`` (L <= 3): the same module on its fused per-edge path (``tables = False``);
* ``channelwise``: NequIP's route, spherical harmonics of the edges (``l <= L``), the radial MLP
  8 -> 64 -> weight_numel on the same Bessel basis, ``fastso3.ops.tensor_product_conv`` (every ``uvu`` path
  into degrees ``<= L`` of the right parity) and the ``o3.Linear`` from its ``paths x C`` outputs back to the
  irreps (the SO(2) layer's channel mixing); the reference of the ``channelwise/so2`` ratio.

``FASTSO3_BENCH_SO2_ONLY="conv:forward:so2,channelwise:2,3"`` keeps those conv cases only (``--quick``: C = 8, 100
nodes, 1600 edges, L in (2, 4)).

Run: ``fastso3 bench so2 [--quick]``. For machines too small for the full run (a padded feature tensor is 4 GB at
b = 100000, L = 6), environment variables narrow it: ``FASTSO3_BENCH_SO2_BIG=10000`` replaces the large edge count;
``FASTSO3_BENCH_SO2_ONLY="conv_e:forward:fastso3-compiled,matmul"`` keeps one kind, one measure and those
providers (large-b cases only), e.g. with ``--out`` to keep the main results; a fourth field keeps those degrees
(``...:matmul:2``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, main

MEASURES = ("forward", "forward+backward")


def _conv_flops(c: int, h: int, L: int) -> int:
    return c * h * (L + 1) * (4 + 8 * L)


def _rotation_flops(c: int, L: int) -> int:
    return 4 * c * sum((2 * l + 1) ** 2 for l in range(1, L + 1))


def _setup(b: int, c: int, L: int, seed: int = 0):
    from fastso3.so2 import SO2_conv_e, get_mask

    torch.manual_seed(seed)
    conv = SO2_conv_e(c, c, c, L, c, c)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(b, c, L, 2 * L + 1, generator=gen) * get_mask(L)
    x0 = torch.randn(b, c, generator=gen)
    w = torch.randn(b, c, 2 * L, generator=gen)
    w0 = torch.randn(b, c, generator=gen)
    v = torch.randn(b, 3, generator=gen)
    return conv, (x, x0, w, w0, v)


def _fastso3_style_conv(conv, x, x0, w, w0):
    """FastSo3's formulation of ``SO2_conv_e``: weights flipped and concatenated over the padded 2L axis per call."""
    L = conv.L
    x_minus, x_m0, x_plus = x.split([L, 1, L], -1)
    gate_a = torch.cat([w[..., L:].flip(-1), w[..., L:]], -1)
    gate_b = torch.cat([w[..., :L], w[..., :L].flip(-1)], -1)
    y0 = (torch.cat([x0, x_m0.flatten(1)], 1) @ conv.en0) * w0 @ conv.de0
    x_l = torch.cat([x_minus, x_plus], -1)

    def path(en, de, gate):
        h = torch.einsum("clhm,bclm->bhm", torch.cat([en.flip(-1), en], -1), x_l) * gate
        return torch.einsum("hclm,bhm->bclm", torch.cat([de.flip(-1), de], -1), h)

    a, bb = path(conv.en1, conv.de1, gate_a), path(conv.en2, conv.de2, gate_b)
    y_plus = a[..., L:] - bb[..., :L].flip(-1)
    y_minus = a[..., :L] + bb[..., L:].flip(-1)
    y_m0 = y0[:, conv.c_L0_out :].reshape(len(y0), conv.c_out, L, 1)
    return torch.cat([y_minus, y_m0, y_plus], -1) * conv.Mask_out, y0[:, : conv.c_L0_out]


def _fastso3_style_message(conv, x, x0, w, w0, v):
    from fastso3.so2.reference import edge_wigner_euler

    L = conv.L
    pad = torch.nn.functional.pad
    W = torch.stack([pad(D, (L - l,) * 4) for l, D in enumerate(edge_wigner_euler(v, L), 1)], 1)
    y, y0 = _fastso3_style_conv(conv, torch.einsum("blde,bcle->bcld", W, x), x0, w, w0)
    return torch.einsum("bled,bcle->bcld", W, y), y0


def _in_frame(x, v, L):
    from fastso3.so2 import EdgeRotation, rotate

    return rotate(EdgeRotation(L)(v), x).contiguous()  # the standard layout, as a user's input


def _fn(kind: str, provider: str, conv, L: int):
    """The callable ``(x, x0, w, w0, v) -> outputs`` of a provider."""
    from fastso3.so2 import EdgeRotation, get_message, rotate, rotate_back
    from fastso3.so2.reference import message_reference, so2_reference

    if provider in ("fastso3", "fastso3-compiled"):
        f = (
            (lambda x, x0, w, w0, v: conv(x, x0, w, w0))
            if kind == "conv_e"
            else (lambda x, x0, w, w0, v: get_message(x, x0, w, w0, v, conv, L))
        )
        if provider == "fastso3-compiled":
            torch._dynamo.reset()  # one code object for every case: a fresh cache, not the recompile limit
            return torch.compile(f, fullgraph=True)
        return f
    if provider == "per-m-loop":
        if kind == "message":
            return lambda x, x0, w, w0, v: message_reference(x, x0, w, w0, v, conv)

        def conv_loop(x, x0, w, w0, v):
            ys, y0 = so2_reference(conv, [x[:, :, l - 1, L - l : L + l + 1] for l in range(1, L + 1)], x0, w, w0)
            return [*ys, y0]

        return conv_loop
    if provider == "fastso3-style":
        if kind == "message":
            return lambda x, x0, w, w0, v: _fastso3_style_message(conv, x, x0, w, w0, v)
        return lambda x, x0, w, w0, v: _fastso3_style_conv(conv, x, x0, w, w0)
    if provider == "in-frame":
        return lambda x, x0, w, w0, v: conv(x, x0, w, w0)
    if provider == "rotation":
        rotation = EdgeRotation(L)

        def rot(x, x0, w, w0, v):
            W = rotation(v)
            return rotate_back(W, rotate(W, x))

        return rot
    raise ValueError(provider)


def _outputs(out):
    return [t for t in (out if isinstance(out, (tuple, list)) else [out]) if t.requires_grad or t.is_floating_point()]


def _factory(kind: str, provider: str, b: int, c: int, L: int, measure: str):
    def factory():
        conv, (x, x0, w, w0, v) = _setup(b, c, L)
        if kind == "conv_e":
            x = _in_frame(x, v, L)
        if provider == "matmul":
            flops = b * (_conv_flops(c, c, L) + (_rotation_flops(c, L) if kind == "message" else 0))
            a = torch.randn(max(1, round(flops / (2 * 512 * 512))), 512)
            m = torch.randn(512, 512)
            if measure == "forward":
                return lambda: a @ m
            a.requires_grad_()
            m.requires_grad_()

            def mm():
                a.grad = m.grad = None
                (a @ m).backward(torch.ones(len(a), 512))

            return mm
        fn = _fn(kind, provider, conv, L)
        if measure == "forward":

            def run():
                with torch.no_grad():
                    return fn(x, x0, w, w0, v)

            run()
            return run
        leaves = [t.clone().requires_grad_() for t in (x, x0, w, w0, v)]
        grads = None

        def run_bwd():
            nonlocal grads
            for t in leaves:
                t.grad = None
            conv.zero_grad(set_to_none=True)
            outs = _outputs(fn(*leaves))
            if grads is None:
                grads = [torch.randn_like(o) for o in outs]
            torch.autograd.backward(outs, grads)

        run_bwd()
        return run_bwd

    return factory


CONV_PROVIDERS = ("so2", "so2-per-edge", "channelwise")


def _conv_setup(provider: str, c: int, L: int, nodes: int, edges: int):
    """``(fn(x, pos) -> (nodes, irreps.dim), leaves x, pos, modules)`` for one conv provider (float32)."""
    from fastso3 import nn, o3
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
    from fastso3.models.blocks import RadialEmbedding
    from fastso3.ops import tensor_product_conv
    from fastso3.so2 import SO2Convolution

    torch.manual_seed(0)
    irreps = o3.Irreps([(c, (l, (-1) ** l)) for l in range(L + 1)])
    gen = torch.Generator().manual_seed(1)
    # about 5 Angstrom apart on average, all edges inside the cutoff: every edge does work in both
    pos = torch.rand(nodes, 3, generator=gen) * nodes ** (1 / 3) * 2.0
    src, dst = torch.randint(0, nodes, (2, edges), generator=gen)
    x = torch.randn(nodes, irreps.dim, generator=gen)
    r_max = float(pos.max() * 2)
    if provider.startswith("so2"):
        conv = SO2Convolution(irreps, irreps, hidden=c, r_max=r_max)
        if provider == "so2-per-edge":
            conv.tables = False
        edge_index = torch.stack([src, dst])
        return (lambda x, pos: conv(x, edge_index, pos[dst] - pos[src])), x, pos, [conv]
    sh_irreps = o3.Irreps.spherical_harmonics(L)
    spec = channelwise_tensor_product_spec(irreps, sh_irreps, irreps)
    tp = o3.TensorProduct(irreps, sh_irreps, spec["irreps_out"], spec["instructions"], shared_weights=False,
                          internal_weights=False)  # fmt: skip
    radial = nn.FullyConnectedNet([8, 64, tp.weight_numel], torch.nn.functional.silu)
    embed, linear = RadialEmbedding(r_max, 8), o3.Linear(tp.irreps_out, irreps)

    def cw(x, pos):
        vec = pos[dst] - pos[src]
        sh = o3.spherical_harmonics(sh_irreps, vec, normalize=True, normalization="component")
        weights = radial(embed(torch.linalg.vector_norm(vec, dim=-1)))
        return linear(tensor_product_conv(x, src, dst, sh, weights, tp, nodes))

    return cw, x, pos, [radial, linear]


def _conv_factory(provider: str, c: int, L: int, nodes: int, edges: int, measure: str):
    def factory():
        fn, x, pos, modules = _conv_setup(provider, c, L, nodes, edges)
        if measure == "forward":

            def run():
                with torch.no_grad():
                    return fn(x, pos)

            run()
            return run
        leaves = [x.clone().requires_grad_(), pos.clone().requires_grad_()]
        grad = None

        def run_bwd():
            nonlocal grad
            for t in leaves:
                t.grad = None
            for m in modules:
                m.zero_grad(set_to_none=True)
            out = fn(*leaves)
            grad = torch.randn_like(out) if grad is None else grad
            out.backward(grad)

        run_bwd()
        return run_bwd

    return factory


def _conv_cases(quick: bool, measures, providers, degrees) -> list:
    channels, (nodes, edges) = ((8,), (100, 1600)) if quick else ((32, 64), (1000, 16000))
    degrees = degrees or ((2, 4) if quick else (2, 3, 4, 6))
    cases = []
    for measure in measures:
        for c in channels:
            for L in degrees:
                names = [p for p in providers if p != "so2-per-edge" or L <= 3]
                cases.append(
                    Case(
                        name=f"{measure} conv C={c} L={L}",
                        params={"measure": measure, "kind": "conv", "c": c, "L": L, "nodes": nodes, "edges": edges},
                        providers={p: _conv_factory(p, c, L, nodes, edges, measure) for p in names},
                    )
                )
    return cases


def _matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, m = torch.randn(n, n), torch.randn(n, n)
    a @ m
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ m
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _checks(c: int):
    def checks():
        from fastso3.so2 import get_message
        from fastso3.so2.reference import message_reference

        out = {"matmul_gflops_2048": _matmul_gflops()}
        for L in (1, 6):
            conv, (x, x0, w, w0, v) = _setup(50, c, L)
            with torch.no_grad():
                y = get_message(x, x0, w, w0, v, conv, L)[0]
                r = message_reference(x, x0, w, w0, v, conv)[0]
                s = _fastso3_style_message(conv, x, x0, w, w0, v)[0]
            scale = float(r.abs().max())
            out[f"rel_diff_per_m_loop_L{L}"] = float((y - r).abs().max()) / scale
            out[f"rel_diff_fastso3_style_L{L}"] = float((y - s).abs().max()) / scale
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    c = 16 if quick else 128
    b_small, b_big = (100, 2000) if quick else (1000, int(os.environ.get("FASTSO3_BENCH_SO2_BIG", 100_000)))
    ls_small, ls_big = ((1, 6), (2, 6)) if quick else (tuple(range(1, 7)), (2, 6))
    providers = ["fastso3", "fastso3-compiled", "per-m-loop", "fastso3-style", "matmul"]
    kinds, measures = ("conv_e", "message"), MEASURES
    plan = [("forward", b, L) for L in ls_small for b in (b_small,)]
    only = os.environ.get("FASTSO3_BENCH_SO2_ONLY")
    conv_measures, conv_providers, conv_degrees = MEASURES, CONV_PROVIDERS, None
    if only:
        kind, measure, names, *degrees = only.split(":")
        kinds, measures, providers, plan = (kind,), (measure,), names.split(","), []
        ls_big = tuple(int(L) for L in degrees[0].split(",")) if degrees else ls_big
        if kind == "conv":
            kinds, measures = (), ()
            conv_measures, conv_providers, conv_degrees = (measure,), tuple(names.split(",")), ls_big if degrees else None
        else:
            conv_measures = ()
    cases = []
    plan += [(measure, b_big, L) for measure in measures for L in ls_big]
    for measure, b, L in plan:
        for kind in kinds:
            names = providers + (["in-frame", "rotation"] if kind == "message" and not only else [])
            flops = b * (_conv_flops(c, c, L) + (_rotation_flops(c, L) if kind == "message" else 0))
            cases.append(
                Case(
                    name=f"{measure} {kind} b={b} L={L}",
                    params={
                        "measure": measure,
                        "kind": kind,
                        "b": b,
                        "c": c,
                        "hidden": c,
                        "L": L,
                        "gflop_forward": flops / 1e9,
                    },
                    providers={p: _factory(kind, p, b, c, L, measure) for p in names},
                )
            )
    cases += _conv_cases(quick, conv_measures, conv_providers, conv_degrees)
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 5, "max_repeats": 30, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="so2",
        description="eSCN SO(2) convolution (SO2_conv_e) and get_message, float32: fastso3 eager/compiled vs a "
        "per-m loop and FastSo3's padded formulation; matmul with the same FLOPs as the roofline; one "
        "message-passing convolution, SO2Convolution vs the channel-wise tensor_product_conv at equal channels",
        cases=cases,
        reference="per-m-loop",
        ratios=[
            ("per-m-loop/fastso3-compiled", "per-m-loop", "fastso3-compiled"),
            ("fastso3-style/fastso3-compiled", "fastso3-style", "fastso3-compiled"),
            ("matmul/fastso3-compiled (matmul efficiency)", "matmul", "fastso3-compiled"),
            ("in-frame/fastso3 (1 - rotation share, eager)", "in-frame", "fastso3"),
            ("rotation/fastso3 (standalone rotation vs fused message, eager)", "rotation", "fastso3"),
            ("channelwise/so2 (conv: SO(2) speed-up over the channel-wise convolution)", "channelwise", "so2"),
            ("so2-per-edge/so2 (conv: node tables' speed-up)", "so2-per-edge", "so2"),
        ],
        settings={"dtype": "float32", "quick": quick, "channels": c, "hidden": c, "c_L0": c, "b_big": b_big},
        plot_panels="kind",
        checks=_checks(c),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
