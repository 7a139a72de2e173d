"""Saving and loading models as plain data: ``torch.load(path, weights_only=True)`` reads every file written here.

A file holds ``{"format", "model" (class name), "config" (constructor arguments), "dtype", "state_dict"}``;
``load`` rebuilds the model from its class and arguments and loads the weights, so no pickled code is run.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..testing import default_dtype
from ._potential import Potential
from .escn import ESCN
from .mace import MACE
from .nequip import NequIP

__all__ = ["MODELS", "load", "save"]

FORMAT = "fastso3-model/1"
MODELS = {"NequIP": NequIP, "ESCN": ESCN, "MACE": MACE}


def save(model: Potential, path: str | Path) -> Path:
    """Write ``model`` (a model of :data:`MODELS`) to ``path``; returns the path."""
    name = type(model).__name__
    if name not in MODELS or not model.config:
        raise TypeError(f"save: expected one of the models {sorted(MODELS)}, got {name}")
    dtype = str(model.atomic_energies.energies.dtype).removeprefix("torch.")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "model": name, "config": model.config, "dtype": dtype, "state_dict": state}, path)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> Potential:
    """The model saved at ``path``, in its saved dtype, on ``device``, in eval mode."""
    hint = ("is not a fastso3 model file (written by fastso3.models.save or fastso3 train as model.pt; a run's "
            "best.pt and last.pt are training checkpoints)")  # fmt: skip
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:  # another kind of file: not a torch archive
        raise ValueError(f"load: {path} {hint}; torch.load cannot read it as one") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"load: {path} {hint}")
    if data["model"] not in MODELS:
        raise ValueError(f"load: unknown model {data['model']!r} in {path}; known: {sorted(MODELS)}")
    with default_dtype(getattr(torch, data["dtype"])):
        model = MODELS[data["model"]](**data["config"])
    model.load_state_dict(data["state_dict"])
    return model.to(device).eval()
