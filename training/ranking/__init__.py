"""Ranking training: the data (point-in-time rows, recall-conditioned negatives), the MMoE teacher
and its fit loop, the distilled FM student, tuning, metrics, reports and the `vitrine train ranking` pipeline."""
