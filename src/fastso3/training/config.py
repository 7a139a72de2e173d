"""The training configuration: one dataclass, read from YAML and command-line flags (MACE's names where it has them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrainConfig", "add_arguments", "config_from_args"]

MODEL_NAMES = ("MACE", "NequIP", "ESCN")


@dataclass
class TrainConfig:
    """Every setting of ``fastso3 train`` (units: A, eV, minutes). ``train_file=None``: the embedded EMT Cu/Au set.
    ``compile``: training steps through ``models.compile_energy_and_forces`` (about a minute to compile)."""

    model: str = "MACE"
    train_file: str | None = None
    valid_file: str | None = None
    valid_fraction: float = 0.1
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virials_key: str = "virials"
    r_max: float = 4.5
    hidden_irreps: str = "16x0e+16x1o"
    max_ell: int = 2
    num_interactions: int = 2
    correlation: int = 2
    num_radial_basis: int = 8
    radial_MLP: str = "[32, 32]"
    energy_weight: float = 30.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    ema_decay: float = 0.99
    clip_grad: float = 10.0
    max_num_epochs: int = 80
    batch_size: int = 4
    seed: int = 0
    device: str = "cpu"
    default_dtype: str = "float32"
    time_limit: float | None = None
    output_dir: str = "fastso3_run"
    restart_latest: bool = False
    compile: bool = False
    progress: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` naming the setting that cannot work."""
        choices = {"model": MODEL_NAMES, "optimizer": ("adam", "adamw"), "scheduler": ("cosine", "plateau"),
                   "default_dtype": ("float32", "float64")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = ("r_max", "lr", "batch_size", "max_num_epochs")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"--valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema_decay must be in [0, 1) (0 disables the EMA), got {self.ema_decay}")
        self.radial_widths()
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"--device {self.device}: CUDA is not available to this torch "
                                 f"({torch.__version__}); use --device cpu")  # fmt: skip

    def radial_widths(self) -> list[int]:
        """The hidden widths of ``radial_MLP`` (a JSON list of positive ints); ``ValueError`` naming the flag."""
        try:
            widths = json.loads(self.radial_MLP)
        except json.JSONDecodeError:
            widths = None
        if not isinstance(widths, list) or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                                     for w in widths):  # fmt: skip
            raise ValueError(f"--radial_MLP must be a JSON list of positive widths such as [32, 32], "
                             f"got {self.radial_MLP!r}")  # fmt: skip
        return widths


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# What each flag sets (``fastso3 train --help``); units: A, eV, minutes.
_HELP = {
    "model": "the potential: " + ", ".join(MODEL_NAMES),
    "train_file": "extxyz (or any ASE-readable) training structures; unset: the embedded EMT Cu/Au set",
    "valid_file": "validation structures; unset: --valid_fraction of the training file",
    "valid_fraction": "share of the training structures held out for validation when there is no --valid_file",
    "energy_key": "key of the energies (info or calculator results)",
    "forces_key": "key of the forces (arrays or calculator results)",
    "stress_key": "key of the stresses, eV/A^3",
    "virials_key": "key of the virials, eV (used where there is no stress)",
    "r_max": "cutoff radius, A",
    "hidden_irreps": "irreps of the hidden features, e.g. 64x0e+64x1o",
    "max_ell": "highest degree of the edge spherical harmonics",
    "num_interactions": "number of interaction layers",
    "correlation": "body order of MACE's symmetric contraction",
    "num_radial_basis": "Bessel functions of the radial embedding",
    "radial_MLP": "hidden widths of the radial MLP, a JSON list such as [64, 64]",
    "energy_weight": "loss weight of the energy per atom",
    "forces_weight": "loss weight of the forces",
    "stress_weight": "loss weight of the stress",
    "optimizer": "adam or adamw",
    "lr": "learning rate",
    "weight_decay": "weight decay of the optimizer",
    "scheduler": "cosine (over --max_num_epochs) or plateau",
    "ema_decay": "decay of the exponential moving average of the weights, warmed up as mace-torch's; 0: none",
    "clip_grad": "gradient-norm clipping",
    "max_num_epochs": "number of epochs",
    "batch_size": "structures per step (a multiple of the number of ranks)",
    "seed": "random seed (data order, initial weights)",
    "device": "cpu or cuda",
    "default_dtype": "float32 or float64",
    "time_limit": "stop after this many MINUTES of training (the best model so far is kept)",
    "output_dir": "where the model, checkpoints, metrics and plots go",
    "restart_latest": "resume from the latest checkpoint in --output_dir",
    "compile": "training steps through models.compile_energy_and_forces (about a minute to compile)",
    "progress": "show progress bars",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--name`` flag per :class:`TrainConfig` field, plus ``--config FILE.yaml``; defaults stay unset so a
    YAML file's values win over the built-in defaults and flags win over both."""
    parser.add_argument("--config", help="a YAML file of TrainConfig settings (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "bool": _parse_bool}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"{_HELP[f.name]} (default: {f.default})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed flags (and the YAML file of ``--config``), checked."""
    values = {}
    if args.config:
        import yaml

        if not Path(args.config).is_file():
            raise FileNotFoundError(f"--config {args.config}: no such file")
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{args.config}: unknown settings {unknown}")
        values.update(loaded)
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name) is not None})  # fmt: skip
    config = TrainConfig(**values)
    config.check()
    return config
