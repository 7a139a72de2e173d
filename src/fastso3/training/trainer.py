"""Training a potential on energies, forces and stresses: data, model, loop, metrics, checkpoints, plots.

The loss of a batch of ``B`` structures is ``sum_g w_g [a (dE_g / N_g)^2 + b mean_{i in g} |dF_i|^2 / 3
+ c mean |d sigma_g|^2] / B``: per-structure terms over a fixed ``B`` (training batches are full), so the
gradient of a batch split over ranks and averaged by DDP is the gradient of the whole batch.

Determinism: epoch ``e`` visits the training set in the order of a generator seeded with ``(seed, e)``, so a run
resumed from its last checkpoint (saved after every epoch) repeats the uninterrupted run's losses bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .. import data as fdata
from .. import models
from ..models import forces_and_stress
from ..testing import default_dtype
from .config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "Trainer", "train"]

CHECKPOINT_FORMAT = "fastso3-checkpoint/1"


def _dtype(config: TrainConfig) -> torch.dtype:
    return getattr(torch, config.default_dtype)


def _load_data(config: TrainConfig):
    keys = dict(energy_key=config.energy_key, forces_key=config.forces_key, stress_key=config.stress_key,
                virials_key=config.virials_key)  # fmt: skip
    train_file = config.train_file or fdata.emt_cuau()
    configs = fdata.read_configurations(train_file, **keys)
    if config.valid_file:
        valid = fdata.read_configurations(config.valid_file, **keys)
    else:
        order = np.random.default_rng(config.seed).permutation(len(configs))
        count = int(round(config.valid_fraction * len(configs)))
        valid = [configs[i] for i in order[:count]]
        configs = [configs[i] for i in order[count:]]
    if len(configs) < config.batch_size:
        raise ValueError(f"{train_file}: {len(configs)} training structures, fewer than --batch_size {config.batch_size}")
    return configs, valid


def _build_model(config: TrainConfig, train_set: fdata.GraphDataset, atomic_numbers: list[int]):
    e0 = fdata.atomic_energies_least_squares(train_set.configurations, atomic_numbers)
    scale, shift = fdata.energy_scale_shift(train_set.configurations, atomic_numbers, e0)
    common = dict(atomic_numbers=atomic_numbers, r_max=config.r_max, atomic_energies=e0, scale=scale, shift=shift,
                  avg_num_neighbors=fdata.average_num_neighbors(train_set), hidden_irreps=config.hidden_irreps)  # fmt: skip
    radial = config.radial_widths()
    torch.manual_seed(config.seed)
    with default_dtype(_dtype(config)):
        if config.model == "MACE":
            return models.MACE(**common, num_bessel=config.num_radial_basis, max_ell=config.max_ell,
                               num_interactions=config.num_interactions, correlation=config.correlation,
                               radial_MLP=radial)  # fmt: skip
        if config.model == "NequIP":
            return models.NequIP(**common, lmax=config.max_ell, num_layers=config.num_interactions,
                                 num_basis=config.num_radial_basis, radial_hidden=tuple(radial))  # fmt: skip
        return models.ESCN(**common, num_layers=config.num_interactions, num_basis=config.num_radial_basis)


def predict(model, batch: fdata.Batch, training: bool) -> dict[str, torch.Tensor]:
    """Energies ``(G,)``, forces ``(N, 3)`` and stresses ``(G, 3, 3)`` (NaN without a 3D cell) of ``batch``."""

    def energy(positions, cell):
        return model(positions, batch.numbers, batch.edge_src, batch.edge_dst, batch.shifts, cell, batch.batch,
                     batch.num_graphs)  # fmt: skip

    stress = bool(batch.has_stress.any())
    return forces_and_stress(energy, batch.positions, batch.cell, batch.batch, stress=stress, create_graph=training)


def _per_structure(values: torch.Tensor, batch: fdata.Batch) -> torch.Tensor:
    """``(N,)`` per-atom values -> ``(G,)`` sums per structure."""
    return torch.zeros(batch.num_graphs, dtype=values.dtype, device=values.device).index_add(0, batch.batch, values)


def loss_terms(out: dict, batch: fdata.Batch, config: TrainConfig) -> torch.Tensor:
    """``(G,)`` weighted per-structure loss terms (see the module docstring)."""
    atoms = batch.num_atoms.to(batch.energy.dtype)
    energy = ((out["energy"] - batch.energy) / atoms).square() * batch.has_energy
    forces = _per_structure((out["forces"] - batch.forces).square().sum(1), batch) / (3 * atoms) * batch.has_forces
    terms = config.energy_weight * energy + config.forces_weight * forces
    if "stress" in out:
        stress = torch.nan_to_num(out["stress"] - batch.stress).square().mean((1, 2)) * batch.has_stress
        terms = terms + config.stress_weight * stress
    return batch.weight * terms


class _Errors:
    """Running sums of absolute and squared errors: MAE and RMSE of energy per atom, forces, stress."""

    def __init__(self) -> None:
        self.sums = {}

    def add(self, name: str, diff: torch.Tensor) -> None:
        s = self.sums.setdefault(name, [0.0, 0.0, 0])
        s[0] += float(diff.abs().sum())
        s[1] += float(diff.square().sum())
        s[2] += diff.numel()

    def reduced(self, distributed: bool) -> dict[str, float]:
        names = sorted(self.sums)
        totals = torch.tensor([self.sums[n] for n in names], dtype=torch.float64).reshape(-1, 3)
        if distributed:
            torch.distributed.all_reduce(totals)
        out = {}
        for name, (abs_sum, sq_sum, count) in zip(names, totals.tolist()):
            if count:
                out[f"{name}_mae"] = abs_sum / count
                out[f"{name}_rmse"] = math.sqrt(sq_sum / count)
        return out


def evaluate(model, loader, config: TrainConfig, distributed: bool = False, collect: bool = False):
    """Metrics (eV/atom, eV/A, eV/A^3) of ``model`` over ``loader``; with ``collect``, also the (prediction,
    reference) pairs of energies per atom and force components, for parity plots."""
    errors, pairs = _Errors(), {"energy_per_atom": [], "forces": []}
    for batch in loader:
        batch = batch.to(config.device, _dtype(config))
        out = predict(model, batch, training=False)
        atoms = batch.num_atoms.to(batch.energy.dtype)
        e_mask, f_mask = batch.has_energy, batch.has_forces[batch.batch]
        errors.add("energy_per_atom", ((out["energy"] - batch.energy) / atoms)[e_mask])
        errors.add("forces", (out["forces"] - batch.forces)[f_mask])
        if "stress" in out and batch.has_stress.any():
            errors.add("stress", (out["stress"] - batch.stress)[batch.has_stress])
        if collect:
            pairs["energy_per_atom"].append(torch.stack([out["energy"] / atoms, batch.energy / atoms], 1)[e_mask])
            pairs["forces"].append(torch.stack([out["forces"], batch.forces], -1)[f_mask].reshape(-1, 2))
    metrics = errors.reduced(distributed)
    if collect:
        return metrics, {k: torch.cat(v).cpu().double().numpy() for k, v in pairs.items() if v}
    return metrics


class _Order(torch.utils.data.Sampler):
    """Epoch ``e``'s permutation (generator seeded with ``(seed, e)``), this rank's share of every full batch."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int, world: int) -> None:
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.epoch = 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        full = (self.size // self.batch_size) * self.batch_size  # full batches only: the loss divides by B
        return iter(order[:full].reshape(-1, self.world)[:, self.rank].tolist())

    def __len__(self) -> int:
        return (self.size // self.batch_size) * self.batch_size // self.world


def _ema_update(decay: float):
    """The EMA's update with a warm-up, as mace-torch's (``torch_ema``'s ``use_num_updates``): update ``n`` moves
    the average with decay ``min(decay, (1 + n) / (10 + n))``. A fixed decay from the first step kept the average
    near the untrained weights for hundreds of steps (on 48 structures, 30 epochs: forces MAE 107 against
    39 meV/A without an EMA)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return update


class Trainer:
    """One training run of ``config``: builds data and model, trains, writes checkpoints, metrics and plots.

    ``run()`` returns the final metrics (also written to ``output_dir/metrics.json``). Distributed when launched
    by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA; rank 0 writes every file.
    """

    def __init__(self, config: TrainConfig) -> None:
        config.check()
        self.config = config
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        if config.batch_size % self.world:
            raise ValueError(f"--batch_size {config.batch_size} must be a multiple of the {self.world} ranks")
        self.out = Path(config.output_dir)
        train_configs, valid_configs = _load_data(config)
        numbers = sorted({int(z) for c in train_configs for z in c.numbers})
        unseen = sorted({int(z) for c in valid_configs for z in c.numbers} - set(numbers))
        if unseen:  # the model would hold an untrained embedding and no reference energy for them
            raise ValueError(f"the validation set has elements that no training structure has: Z = {unseen}; "
                             "move structures with them into the training set")  # fmt: skip
        self.train_set = fdata.GraphDataset(train_configs, config.r_max, numbers)
        self.valid_set = fdata.GraphDataset(valid_configs, config.r_max, numbers)
        self.model = _build_model(config, self.train_set, numbers).to(config.device)
        # the compiled module's parameters are the model's, so DDP reduces their gradients as for the model
        self.compiled = models.compile_energy_and_forces(self.model) if config.compile else None
        step_module = self.compiled if self.compiled is not None else self.model
        self.ddp = torch.nn.parallel.DistributedDataParallel(step_module) if self.distributed else step_module
        self.sampler = _Order(len(self.train_set), config.batch_size, config.seed, self.rank, self.world)
        self.train_loader = torch.utils.data.DataLoader(self.train_set, batch_size=config.batch_size // self.world,
                                                        sampler=self.sampler, collate_fn=fdata.collate)  # fmt: skip
        valid_part = list(range(self.rank, len(self.valid_set), self.world))
        self.valid_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(self.valid_set, valid_part),
                                                        batch_size=16, collate_fn=fdata.collate)  # fmt: skip
        optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if config.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, config.max_num_epochs)
        else:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.8, patience=5)
        self.ema = (torch.optim.swa_utils.AveragedModel(self.model, multi_avg_fn=_ema_update(config.ema_decay))
                    if config.ema_decay > 0 else None)  # fmt: skip
        self.history: list[dict] = []
        self.epoch, self.best = 0, math.inf

    # ----------------------------------------------------------------- checkpoints
    def _eval_model(self):
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "model": type(self.model).__name__, "model_config": self.model.config,
                "train_config": dataclasses.asdict(self.config), "epoch": self.epoch, "best": self.best,
                "history": self.history, "model_state": self.model.state_dict(),
                "ema_state": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}  # fmt: skip

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.config.device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a fastso3 training checkpoint")
        if state["model"] != type(self.model).__name__ or state["model_config"] != self.model.config:
            raise ValueError(f"{path}: the checkpoint is of another model ({state['model']} with "
                             f"{state['model_config']}), not of this run's {type(self.model).__name__} "
                             f"({self.model.config}); use another --output_dir or the original settings")  # fmt: skip
        self.model.load_state_dict(state["model_state"])
        if self.ema is not None and state["ema_state"] is not None:
            self.ema.load_state_dict(state["ema_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best, self.history = state["epoch"], state["best"], state["history"]

    def _save(self, name: str) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.out / f".{name}.tmp"
            torch.save(self.state(), tmp)
            tmp.replace(self.out / name)  # atomic: an interrupted write leaves the previous checkpoint

    # ----------------------------------------------------------------- the loop
    def _train_epoch(self, bar) -> float:
        self.model.train()
        self.sampler.epoch = self.epoch
        total, count = 0.0, 0
        for batch in self.train_loader:
            batch = batch.to(self.config.device, _dtype(self.config))
            out = self._compiled_predict(batch) if self.compiled is not None else predict(self.ddp, batch, training=True)
            loss = loss_terms(out, batch, self.config).sum() * self.world
            loss = loss / self.config.batch_size
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            value = float(loss.detach()) / self.world  # this rank's share of the whole batch's loss
            total, count = total + value, count + 1
            bar.update(1)
            bar.set_postfix(epoch=self.epoch, loss=f"{value:.4g}")
        if self.distributed:
            summed = torch.tensor([total], dtype=torch.float64)
            torch.distributed.all_reduce(summed)  # the shares add up to the whole batches' losses
            total = float(summed)
        return total / max(count, 1)

    def _compiled_predict(self, batch: fdata.Batch) -> dict:
        return self.ddp(batch.positions, batch.cell, batch.numbers, batch.edge_src, batch.edge_dst,
                             batch.shifts, batch.batch, batch.num_graphs)  # fmt: skip

    def run(self) -> dict:
        from tqdm.auto import tqdm

        config = self.config
        last = self.out / "last.pt"
        if config.restart_latest and last.exists():
            self.load_state(last)
        start = time.monotonic()
        steps = len(self.train_loader)
        bar = tqdm(total=steps * (config.max_num_epochs - self.epoch), disable=not config.progress or self.rank != 0,
                   desc="training", unit="step", dynamic_ncols=True)  # fmt: skip
        stopped_by_time = False
        while self.epoch < config.max_num_epochs:
            train_loss = self._train_epoch(bar)
            valid = evaluate(self._eval_model(), self.valid_loader, config, self.distributed)
            valid_loss = config.energy_weight * valid.get("energy_per_atom_rmse", 0.0) ** 2 + \
                config.forces_weight * valid.get("forces_rmse", 0.0) ** 2  # fmt: skip
            if config.scheduler == "cosine":
                self.scheduler.step()
            else:
                self.scheduler.step(valid_loss)
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "train_loss": train_loss, "valid_loss": valid_loss,
                                 "lr": self.optimizer.param_groups[0]["lr"], **{f"valid_{k}": v for k, v in valid.items()}})  # fmt: skip
            if valid_loss < self.best:
                self.best = valid_loss
                self._save("best.pt")
            self._save("last.pt")
            if self.rank == 0:
                bar.write(_epoch_line(self.history[-1]))
            if config.time_limit is not None and time.monotonic() - start > 60 * config.time_limit:
                stopped_by_time = True
                break
        bar.close()
        return self._finish(time.monotonic() - start, stopped_by_time)

    def _finish(self, seconds: float, stopped_by_time: bool) -> dict:
        if self.distributed:
            torch.distributed.barrier()  # rank 0 has written best.pt
        best = torch.load(self.out / "best.pt", map_location=self.config.device, weights_only=True)
        self.model.load_state_dict(best["model_state"])
        if self.ema is not None:
            self.ema.load_state_dict(best["ema_state"])
        model = self._eval_model()
        full_train = torch.utils.data.DataLoader(self.train_set, batch_size=16, collate_fn=fdata.collate)
        full_valid = torch.utils.data.DataLoader(self.valid_set, batch_size=16, collate_fn=fdata.collate)
        train_metrics = evaluate(model, full_train, self.config)
        valid_metrics, pairs = evaluate(model, full_valid, self.config, collect=True)
        metrics = {"train": train_metrics, "valid": valid_metrics, "epochs": self.epoch, "best_epoch": best["epoch"],
                   "seconds": seconds, "stopped_by_time_limit": stopped_by_time, "units": {
                       "energy_per_atom": "eV/atom", "forces": "eV/A", "stress": "eV/A^3"}}  # fmt: skip
        if self.rank == 0:
            (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            models.save(model, self.out / "model.pt")
            from .plots import learning_curve, parity

            learning_curve(self.history, self.out / "learning_curve.png")
            parity(pairs, self.out)
        return metrics


def _epoch_line(h: dict) -> str:
    e = h.get("valid_energy_per_atom_mae", float("nan")) * 1e3
    f = h.get("valid_forces_mae", float("nan")) * 1e3
    return (f"epoch {h['epoch']:4d}  train loss {h['train_loss']:.4g}  valid: energy MAE {e:.2f} meV/atom, "
            f"forces MAE {f:.1f} meV/A  lr {h['lr']:.3g}")  # fmt: skip


def train(config: TrainConfig) -> dict:
    """Train a potential as ``config`` says; returns the metrics of ``output_dir/metrics.json``."""
    return Trainer(config).run()
