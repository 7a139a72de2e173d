"""Training potentials (``fastso3 train``): :class:`TrainConfig`, :class:`Trainer`, :func:`train`."""

from .config import TrainConfig
from .trainer import Trainer, evaluate, loss_terms, predict, train

__all__ = ["TrainConfig", "Trainer", "evaluate", "loss_terms", "predict", "train"]
