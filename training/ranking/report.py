"""Ranking reports: the metrics table (Markdown + JSON) and plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

HEADS = (("ctr", "CTR (impressions → click)"), ("cvr", "CVR (clicks → purchase)"),
         ("ctcvr", "CTCVR (impressions → purchase)"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def metrics_table(models: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown: one row per model, AUC / GAUC / logloss per head (– where a model has no such head)."""
    head = "| model | " + " | ".join(f"{h} AUC | {h} GAUC | {h} logloss" for h, _ in HEADS) + " |"
    sep = "|---|" + "---:|" * (3 * len(HEADS))
    rows = [head, sep]
    for name, m in models.items():
        cells = []
        for h, _ in HEADS:
            r = m.get(h, {})
            cells += [_fmt(r.get("auc")), _fmt(r.get("gauc")), _fmt(r.get("logloss"))]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def write_metrics(out: Path, models: Mapping[str, Mapping], extra: Mapping | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = metrics_table(models)
    (out / "metrics.md").write_text(table)
    (out / "metrics.json").write_text(json.dumps({"models": models, **(extra or {})}, indent=2, default=str) + "\n")
    return table


def plot_training(curves: Mapping[str, Sequence[dict]], path: Path) -> Path:
    """Train loss and validation AUC per epoch, one line per model."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in curves.items():
        epochs = [h["epoch"] for h in history]
        a.plot(epochs, [h["train_loss"] for h in history], marker="o", label=name)
        b.plot(epochs, [h["val_auc"] for h in history], marker="o", label=name)
    a.set(title="training loss", xlabel="epoch")
    b.set(title="validation CTR AUC", xlabel="epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(models: Mapping[str, Mapping[str, Mapping[str, float]]], path: Path) -> Path:
    """AUC and GAUC per head, grouped bars per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(HEADS), figsize=(4 * len(HEADS), 4))
    names = list(models)
    for ax, (h, title) in zip(axes, HEADS, strict=True):
        for k, metric in enumerate(("auc", "gauc")):
            vals = [models[n].get(h, {}).get(metric, np.nan) for n in names]
            ax.bar(np.arange(len(names)) + 0.4 * k, np.nan_to_num(vals), width=0.4, label=metric.upper())
        ax.set_xticks(np.arange(len(names)) + 0.2, names, rotation=30, ha="right")
        ax.set_ylim(0.5, 1.0)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_search(curves: Mapping[str, Sequence[Sequence[float]]], path: Path) -> Path:
    """Best-so-far validation AUC against trial count: one thin line per seed, the mean bold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (method, runs) in enumerate(curves.items()):
        color = f"C{k}"
        for run in runs:
            ax.plot(range(1, len(run) + 1), run, color=color, alpha=0.3, lw=1)
        width = min(len(r) for r in runs)
        mean = np.mean([r[:width] for r in runs], axis=0)
        ax.plot(range(1, width + 1), mean, color=color, lw=2.5, label=f"{method} (mean of {len(runs)} seeds)")
    ax.set(xlabel="trials", ylabel="best validation CTR AUC so far", title="PSO vs random search")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
