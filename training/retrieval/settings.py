"""Two-tower training settings: importable without TensorFlow (the model module imports
them; training imports the model lazily)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TwoTowerSettings:
    embedding_dim: int = 32
    id_dim: int = 32
    feature_dim: int = 8
    hidden: tuple[int, ...] = (64,)
    learning_rate: float = 0.05
    epochs: int = 3
    batch_size: int = 512
    temperature: float = 0.1
    log_q: bool = True  # subtract log(item frequency): popular items are not over-rewarded
    seed: int = 0
