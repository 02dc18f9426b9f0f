"""The pipeline evaluation's report: Markdown tables (validation and test), JSON, a plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from evaluation.baselines import GRIDS

COLUMNS = ("recall", "ndcg", "map")


def table(metrics: dict[str, dict[str, float]], ks: tuple[int, ...]) -> str:
    cols = [f"{m}@{k}" for k in ks for m in COLUMNS] + ["coverage@20", "ms_p50", "ms_p95", "degraded"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in metrics.items():
        cells = [f"{row[c]:.4f}" if c.split("@")[0] in (*COLUMNS, "coverage") else
                 (f"{row[c]:.2f}" if c in row and c != "degraded" else f"{row.get(c, 0):.0f}" if c in row else "–")
                 for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def routes_table(routes: dict[str, dict]) -> str:
    lines = ["| route | users it answers | distinct items (top 50 each) |", "|---|---|---|"]
    lines += [f"| {name} | {r['users']:.0%} | {r['items']:,} |" for name, r in routes.items()]
    return "\n".join(lines)


def render(report) -> str:
    p = report.policy
    weights = ", ".join(f"{k} {v:.2f}" for k, v in sorted(p["route_weights"].items(), key=lambda kv: -kv[1]))
    parts = [
        f"# Pipeline evaluation: {report.home}",
        "",
        f"Split `{report.split}`, last {report.fraction:.0%} held out; tuned on the validation cut, reported on "
        f"the test cut. {report.seconds / 60:.1f} min.",
        "",
        "## Published policy (chosen on validation)",
        "",
        f"- recall blend: {weights}",
        *[f"- {route} settings: " + ", ".join(f"{k} {v if isinstance(v, str) else round(v, 3)}"
                                             for k, v in params.items())
          for route, params in p.get("route_params", {}).items()],
        *[f"- {stage}: {reason}" for stage, reason in p["reasons"].items()],
        *[f"- **warning**: {w}" for w in p["warnings"]],
        "- baselines tuned: " + "; ".join(f"{b} {report.baselines[b]}" for b in GRIDS),
        "",
    ]
    for cut in (report.test, report.validation):
        if cut is None:
            continue
        parts += [f"## {cut.cut.capitalize()} cut: {cut.users:,} users with history and held-out items "
                  f"({cut.cold_users:,} held-out users without history not scored)", "",
                  table(cut.metrics, report.ks), "", "Recall routes on their own:", "", routes_table(cut.routes), ""]
    if report.test is not None:
        parts += ["## Verdict (test)", "", *[f"- {v}" for v in report.verdicts()], ""]
    return "\n".join(parts)


def plot(report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, cut in zip(axes, (report.validation, report.test), strict=True):
        names = list(cut.metrics)
        y = np.arange(len(names))
        for offset, metric in ((-0.2, "recall@20"), (0.2, "ndcg@20")):
            ax.barh(y + offset, [cut.metrics[n][metric] for n in names], height=0.4, label=metric)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"{cut.cut} cut ({cut.users:,} users)", xlabel="score")
        ax.legend(fontsize=8)
    fig.suptitle(f"served pipeline vs tuned baselines, split {report.split}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_json(report) -> str:
    return json.dumps(asdict(report), indent=2, default=str) + "\n"


def write_report(report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = f"pipeline-{report.split}"
    (out / f"{name}.md").write_text(render(report) + "\n")
    (out / f"{name}.json").write_text(report_json(report))
    plot(report, out / f"{name}.png")
