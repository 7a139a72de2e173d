"""fastso3.compat.from_mace / to_mace against mace-torch 0.3.16 itself (run on e3nn 0.6.0): energies, forces and
stresses of converted models to float64 rounding, for both interaction blocks, plain and ScaleShift MACE,
correlation 1-3, pseudo-tensor features and batches; unsupported models raise."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastso3.compat import from_mace, mace_inputs, to_mace
from fastso3.graph import neighbor_list
from fastso3.kernels.cpu.loader import cache_dir
from fastso3.models import MACE, forces_and_stress
from fastso3.testing import default_dtype

modules = pytest.importorskip("mace.modules")
e3nn_o3 = pytest.importorskip("e3nn.o3")
ase_build = pytest.importorskip("ase.build")

ELEMENTS = [29, 79]
PSEUDOTENSOR = dict(hidden="4x0e+4x0o+4x1o+4x1e", layers=1)
# the second layer's convolution has paths on (1, 2, 2), (1, 3, 3), ... (the first one's inputs are scalars)
PSEUDOTENSOR_2 = dict(hidden="4x0e+4x0o+4x1o+4x1e", layers=2)


def mace_model(cls="ScaleShiftMACE", block="RealAgnosticResidualInteractionBlock", hidden="4x0e+4x1o",
               correlation=3, max_ell=3, layers=2, seed=0):  # fmt: skip
    torch.manual_seed(seed)
    kwargs = dict(
        r_max=3.5, num_bessel=6, num_polynomial_cutoff=5, max_ell=max_ell,
        interaction_cls=modules.interaction_classes[block], interaction_cls_first=modules.interaction_classes[block],
        num_interactions=layers, num_elements=2, hidden_irreps=e3nn_o3.Irreps(hidden),
        MLP_irreps=e3nn_o3.Irreps("8x0e"), atomic_energies=np.array([-1.5, -2.5]), avg_num_neighbors=12.0,
        atomic_numbers=ELEMENTS, correlation=correlation, gate=torch.nn.functional.silu, radial_MLP=[8, 8],
        use_reduced_cg=False,
    )  # fmt: skip
    if cls == "ScaleShiftMACE":
        return modules.ScaleShiftMACE(atomic_inter_scale=1.3, atomic_inter_shift=0.2, **kwargs)
    return modules.MACE(**kwargs)


def structures():
    a = ase_build.bulk("Cu", "fcc", a=3.6, cubic=True)
    a.numbers[[1, 3]] = 79
    a.rattle(0.1, seed=1)
    b = ase_build.bulk("Au", "fcc", a=4.0).repeat((2, 1, 1))
    b.numbers[0] = 29
    b.rattle(0.1, seed=2)
    return [a, b]


def graph(atoms_list, r_max):
    """The batched graph both models read: positions, Z, edges, integer shifts, cells, batch."""
    pos, z, src, dst, shifts, cells, batch, offset = [], [], [], [], [], [], [], 0
    for g, atoms in enumerate(atoms_list):
        p, cell = torch.tensor(atoms.positions), torch.tensor(np.asarray(atoms.cell))
        s, d, sh = neighbor_list(p, cell, True, r_max)
        pos.append(p), z.append(torch.tensor(atoms.numbers)), cells.append(cell), shifts.append(sh)
        src.append(s + offset), dst.append(d + offset), batch.append(torch.full((len(atoms),), g))
        offset += len(atoms)
    return [torch.cat(pos), torch.cat(z), torch.cat(src), torch.cat(dst), torch.cat(shifts), torch.stack(cells),
            torch.cat(batch)]  # fmt: skip


def mace_outputs(model, g):
    pos, z, src, dst, shifts, cells, batch = g
    out = model(mace_inputs(model, pos.clone(), z, src, dst, shifts, cells, batch), compute_stress=True, training=False)
    return {k: out[k].detach() for k in ("energy", "forces", "stress")}


def fastso3_outputs(model, g):
    pos, z, src, dst, shifts, cells, batch = g
    graphs = cells.shape[0]
    return forces_and_stress(lambda p, c: model(p, z, src, dst, shifts, c, batch, graphs), pos, cells, batch)


def assert_same_outputs(ours, theirs):
    for key in ("energy", "forces", "stress"):
        scale = theirs[key].abs().max().item()
        assert scale > 1e-6, key  # not trivially zero
        torch.testing.assert_close(ours[key], theirs[key].reshape(ours[key].shape), rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("config", [
    dict(),
    dict(cls="MACE"),
    dict(block="RealAgnosticInteractionBlock", correlation=2),
    dict(hidden="4x0e+4x1o+4x2e", max_ell=2, correlation=1, layers=3),
    PSEUDOTENSOR,
], ids=["scaleshift-residual", "plain", "agnostic-corr2", "L2-corr1-3layers", "pseudotensor-1layer"])  # fmt: skip
def test_converted_models_compute_what_mace_computes(f64, config):
    theirs = mace_model(**config)
    ours = from_mace(theirs)
    assert isinstance(ours, MACE) and ours.atomic_energies.energies.dtype == torch.float64
    g = graph(structures(), float(theirs.r_max))
    assert_same_outputs(fastso3_outputs(ours, g), mace_outputs(theirs, g))


def e3nn_044() -> Path:
    """A folder with e3nn 0.4.4 installed alone (``pip install --target``, once, cached): mace-torch's own pin."""
    target = cache_dir() / "e3nn-0.4.4"
    if not (target / "e3nn" / "__init__.py").exists():
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "e3nn==0.4.4"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"could not install e3nn 0.4.4 ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return target


@pytest.mark.slow
def test_models_trained_under_e3nn_044_keep_their_numbers(f64, tmp_path):
    # The model built and evaluated under e3nn 0.4.4 (a subprocess), converted here under 0.6.0.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(e3nn_044()), os.environ.get("PYTHONPATH", "")]),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # e3nn 0.4.4 torch.loads its own constants.pt (a pickle)
    here = Path(__file__).parent
    done = subprocess.run([sys.executable, str(here / "e3nn044_reference.py"), __file__, str(tmp_path / "044.pt")],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = torch.load(tmp_path / "044.pt", weights_only=True)
    theirs = mace_model(**PSEUDOTENSOR_2)
    theirs.load_state_dict(saved["state"])  # 0.4.4's weights and U buffers
    g = graph(structures(), float(theirs.r_max))
    emulated = fastso3_outputs(from_mace(theirs, trained_with_e3nn="0.4.4"), g)
    assert_same_outputs(emulated, saved["outputs"])
    # without the sign emulation the numbers are 0.6.0's: off by far more than rounding (2.7e-10 eV/A against
    # 3e-16 here; the flipped paths weigh little in this small random model)
    plain = fastso3_outputs(from_mace(theirs), g)
    expected = saved["outputs"]["forces"]
    assert (plain["forces"] - expected).abs().max() > 1e4 * (emulated["forces"] - expected).abs().max()


def test_to_mace_round_trips_the_parameters(f64):
    source, target = mace_model(seed=0), mace_model(seed=1)
    g = graph(structures()[:1], float(source.r_max))
    to_mace(from_mace(source), target)
    assert_same_outputs(mace_outputs(target, g), mace_outputs(source, g))


def test_float32_models_convert_in_float32():
    with default_dtype(torch.float32):
        theirs = mace_model(layers=1)
    ours = from_mace(theirs)
    assert ours.atomic_energies.energies.dtype == torch.float32
    assert ours.node_embedding.linear.weight.dtype == torch.float32


def test_unsupported_models_raise(f64):
    with pytest.raises(TypeError, match="MACE or ScaleShiftMACE"):
        from_mace(torch.nn.Linear(2, 2))
    model = mace_model(layers=1)
    model.pair_repulsion = True
    with pytest.raises(NotImplementedError, match="pair_repulsion"):
        from_mace(model)
    with pytest.raises(ValueError, match="trained_with_e3nn"):
        from_mace(mace_model(layers=1), trained_with_e3nn="0.5")

