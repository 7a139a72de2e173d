"""The plots of a training run (matplotlib, written as PNG): the learning curve and parity plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["learning_curve", "parity"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: list[dict], path: Path) -> None:
    """Losses (left) and validation MAEs (right) per epoch, log scale."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.semilogy(epochs, [h["train_loss"] for h in history], label="train")
    left.semilogy(epochs, [h["valid_loss"] for h in history], label="valid")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    left.legend()
    right.semilogy(epochs, [1e3 * h.get("valid_energy_per_atom_mae", np.nan) for h in history], label="energy (meV/atom)")
    right.semilogy(epochs, [1e3 * h.get("valid_forces_mae", np.nan) for h in history], label="forces (meV/A)")
    right.set(xlabel="epoch", ylabel="validation MAE", title="validation errors")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parity(pairs: dict[str, np.ndarray], out: Path) -> None:
    """``parity_energy.png`` and ``parity_forces.png``: prediction against reference on the validation set."""
    plt = _pyplot()
    labels = {"energy_per_atom": ("energy", "energy per atom (eV/atom)", "meV/atom"),
              "forces": ("forces", "force component (eV/A)", "meV/A")}  # fmt: skip
    for key, (name, unit, small) in labels.items():
        if key not in pairs:
            continue
        predicted, reference = pairs[key][:, 0], pairs[key][:, 1]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(reference, predicted, s=4, alpha=0.5)
        lo, hi = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.abs(predicted - reference).mean())
        ax.set(xlabel=f"reference {unit}", ylabel=f"predicted {unit}", title=f"{name}: MAE {1e3 * mae:.3g} {small}")
        fig.tight_layout()
        fig.savefig(out / f"parity_{name}.png", dpi=120)
        plt.close(fig)
