"""fastso3.training end to end on a small EMT data file: outputs, a model the calculator loads, bit-for-bit
resume, every model, the command line and its errors, and two-rank DDP against one process."""

import dataclasses
import json
import os
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from fastso3 import cli
from fastso3.calculator import FastSO3Calculator
from fastso3.training import TrainConfig, Trainer, train


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(20):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.standard_normal(), cubic=True)
        atoms.numbers[rng.random(4) < 0.4] = 79
        atoms.rattle(0.1, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                           stress=atoms.get_stress())  # fmt: skip
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "cuau.extxyz"
    ase.io.write(path, frames)
    return str(path)


def small(data_file, out, **changes):
    settings = dict(train_file=data_file, valid_fraction=0.2, hidden_irreps="4x0e+4x1o", max_ell=1,
                    num_interactions=1, radial_MLP="[8]", r_max=3.5, batch_size=4, max_num_epochs=2,
                    output_dir=str(out), progress=False, default_dtype="float64")  # fmt: skip
    settings.update(changes)
    return TrainConfig(**settings)


def test_a_run_writes_metrics_plots_checkpoints_and_a_model(data_file, tmp_path):
    metrics = train(small(data_file, tmp_path))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["valid"]["energy_per_atom_mae"] == metrics["valid"]["energy_per_atom_mae"] > 0
    assert {"forces_mae", "forces_rmse", "stress_mae", "energy_per_atom_rmse"} <= set(written["train"])
    for name in ("learning_curve.png", "parity_energy.png", "parity_forces.png"):
        assert (tmp_path / name).stat().st_size > 1000
    for name in ("best.pt", "last.pt", "model.pt"):
        assert isinstance(torch.load(tmp_path / name, weights_only=True), dict)
    atoms = ase.io.read(data_file, index="0")
    calc = FastSO3Calculator(tmp_path / "model.pt")
    assert np.isfinite(calc.get_potential_energy(atoms)) and calc.get_forces(atoms).shape == (4, 3)


def test_resuming_repeats_the_uninterrupted_losses(data_file, tmp_path):
    whole = Trainer(small(data_file, tmp_path / "whole", max_num_epochs=3))
    whole.run()
    interrupted = tmp_path / "parts"
    Trainer(small(data_file, interrupted, max_num_epochs=3, time_limit=0.0)).run()  # stops after one epoch
    resumed = Trainer(small(data_file, interrupted, max_num_epochs=3, restart_latest=True))
    resumed.run()
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in whole.history]
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_model_is_refused(data_file, tmp_path):
    Trainer(small(data_file, tmp_path, max_num_epochs=1)).run()
    other = Trainer(small(data_file, tmp_path, max_num_epochs=1, hidden_irreps="8x0e+8x1o", restart_latest=True))
    with pytest.raises(ValueError, match="checkpoint is of another model"):
        other.run()


def test_the_ema_warms_up_as_mace_torchs():
    from fastso3.training.trainer import _ema_update

    update = _ema_update(0.99)
    for n, decay in ((1, 2 / 11), (10, 11 / 20), (10_000, 0.99)):  # min(0.99, (1 + n) / (10 + n))
        averaged = [torch.zeros(3, dtype=torch.float64)]
        update(averaged, [torch.ones(3, dtype=torch.float64)], torch.tensor(n))
        torch.testing.assert_close(averaged[0], torch.full((3,), 1 - decay, dtype=torch.float64))


def test_an_element_only_in_the_validation_set_is_refused(data_file, tmp_path):
    silver = bulk("Ag", "fcc", a=4.1)
    silver.calc = EMT()
    silver.calc = SinglePointCalculator(silver, energy=silver.get_potential_energy(), forces=silver.get_forces(),
                                        stress=silver.get_stress())  # fmt: skip
    valid = tmp_path / "valid.extxyz"
    ase.io.write(valid, [silver])
    with pytest.raises(ValueError, match=r"no training structure has: Z = \[47\]"):
        Trainer(small(data_file, tmp_path, valid_file=str(valid)))


@pytest.mark.parametrize("model", ["NequIP", "ESCN"])
def test_every_model_trains(data_file, tmp_path, model):
    metrics = train(small(data_file, tmp_path, model=model, max_num_epochs=1, hidden_irreps="4x0e+4x1o+4x2e"))
    assert np.isfinite(metrics["valid"]["forces_mae"])
    assert torch.load(tmp_path / "model.pt", weights_only=True)["model"] == model  # the model asked for


def test_command_line_and_yaml(data_file, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"train_file: {data_file}\nhidden_irreps: 4x0e+4x1o\nmax_ell: 1\nnum_interactions: 1\n"
                      f"radial_MLP: '[8]'\nr_max: 3.5\nbatch_size: 4\noutput_dir: {tmp_path / 'cli'}\n")  # fmt: skip
    assert cli.main(["train", "--config", str(config), "--max_num_epochs", "1", "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "energy MAE (meV/atom)" in out and (tmp_path / "cli" / "model.pt").exists()
    assert cli.main(["train", "--train_file", str(tmp_path / "missing.xyz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["train", "--model", "Allegro"]) == 2
    assert "--model must be one of" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "--config" in (err := capsys.readouterr().err) and "no such file" in err
    if not torch.cuda.is_available():
        assert cli.main(["train", "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    for widths in ("32,32", "[32, -1]", "[true]"):  # a bare JSON error before; now the flag and its form
        assert cli.main(["train", "--radial_MLP", widths]) == 2
        assert "--radial_MLP must be a JSON list of positive widths such as [32, 32]" in capsys.readouterr().err


def _two_ranks(config, out):
    """``torchrun --nproc_per_node=2 -m fastso3 train`` with ``config``'s settings into ``out``: its last checkpoint."""
    flags = [f"--{k}={v}" for k, v in dataclasses.asdict(config).items() if v is not None]
    flags = [f for f in flags if not f.startswith("--output_dir")] + [f"--output_dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "fastso3", "train", *flags], capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "last.pt", weights_only=True)


def test_two_ranks_with_gloo_train_as_one_process(data_file, tmp_path):
    """``torchrun --nproc_per_node=2 -m fastso3 train``: the losses and parameters after an epoch equal one process's."""
    one = small(data_file, tmp_path / "one", max_num_epochs=1, ema_decay=0.0)
    Trainer(one).run()
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = _two_ranks(one, tmp_path / "two")
    assert [h["train_loss"] for h in b["history"]] == pytest.approx([h["train_loss"] for h in a["history"]], rel=1e-12)
    a, b = a["model_state"], b["model_state"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-12, atol=1e-12)
    initial = Trainer(one).model.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in a.items())  # it trained


@pytest.mark.compile
@pytest.mark.slow
def test_two_compiled_ranks_train_as_one_eager_process(data_file, tmp_path):
    """``--compile`` under DDP: the compiled module's parameters are the model's, so DDP averages their gradients;
    the losses and parameters after an epoch equal one eager process's."""
    one = small(data_file, tmp_path / "one", max_num_epochs=1, ema_decay=0.0)
    eager = Trainer(one)
    eager.run()
    two = _two_ranks(dataclasses.replace(one, compile=True), tmp_path / "two")
    assert [h["train_loss"] for h in two["history"]] == pytest.approx([h["train_loss"] for h in eager.history], rel=1e-9)
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(two["model_state"][key], value, rtol=1e-9, atol=1e-10)


@pytest.mark.compile
@pytest.mark.slow
def test_compiled_training_repeats_the_eager_losses(data_file, tmp_path):
    runs = [Trainer(small(data_file, tmp_path / name, max_num_epochs=1, compile=flag))
            for name, flag in (("eager", False), ("compiled", True))]  # fmt: skip
    for run in runs:
        run.run()
    eager, compiled = ([h["train_loss"] for h in run.history] for run in runs)
    assert compiled == pytest.approx(eager, rel=1e-9)
