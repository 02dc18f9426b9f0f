"""Quality on real logs: `vitrine evaluate pipeline` on every shipped real extract
(data/real: MovieLens 100K, Taobao UserBehavior) and both splits, in homes under
`var/quality/<log>/`. Prints, per log and split, the test cut's served answer, every stage and
the tuned baselines, and writes `benchmarks/results/quality-<log>-<split>.json`; the figures
go to docs/quality.md with this command.

    python benchmarks/bench_quality.py [--logs movielens taobao] [--splits global user]
        [--users 1000] [--trials 40] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADLINE = ("recall@10", "recall@20", "ndcg@20", "map@20", "recall@50", "coverage@20", "ms_p50")


def verdicts(test: dict[str, dict]) -> list[str]:
    """Served against the best baseline of those recorded, on Recall@20 and NDCG@20."""
    from evaluation.baselines import GRIDS

    out = []
    for metric in ("recall@20", "ndcg@20"):
        best = max((b for b in GRIDS if b in test), key=lambda b: test[b][metric])
        ratio = test["served"][metric] / test[best][metric] if test[best][metric] else float("inf")
        out.append(f"served {metric} {test['served'][metric]:.4f} {'≥' if ratio >= 1 else '<'} best baseline "
                   f"{best} {test[best][metric]:.4f}: **{ratio:.4f}×**")
    return out


def render(paths: list[Path]) -> str:
    """Markdown: per log and split, the test table, the verdicts and the chosen policy."""
    cols = ("recall@10", "recall@20", "ndcg@20", "map@20", "recall@50", "coverage@20", "ms_p50")
    out = []
    for path in paths:
        r = json.loads(path.read_text())
        p = r["policy"]
        on = [s for s in ("coarse", "fine", "diversity") if p[s]]
        weights = ", ".join(f"{k} {v:.2f}" for k, v in sorted(p["route_weights"].items(), key=lambda kv: -kv[1]))
        out += [f"### {r['log']}, `{r['split']}` split — test cut, {r['users']:,} users "
                f"({r['cold_users']:,} held-out users without history not scored)", "",
                f"`{r['command']}` ({r['seconds'] / 60:.1f} min)", "",
                "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, row in r["test"].items():
            cells = [f"{row[c]:.2f}" if c == "ms_p50" else f"{row[c]:.4f}" for c in cols]
            bold = "**" if name == "served" else ""
            out.append(f"| {bold}{name}{bold} | " + " | ".join(cells) + " |")
        out += ["", *[f"- {v}" for v in verdicts(r["test"])],
                f"- chosen on validation ({r['validation_users']:,} users): stages on: "
                f"{', '.join(on) or 'recall only'}; "
                f"blend {weights}; route settings {p['route_params']}",
                *[f"- {stage}: {why}" for stage, why in p["reasons"].items()],
                *[f"- warning: {w}" for w in p["warnings"]],
                f"- baselines tuned on validation: {r['baselines']}", ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", nargs="+", default=["movielens", "taobao"])
    parser.add_argument("--splits", nargs="+", default=["global", "user"])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=None, help="two-tower, teacher and student epochs")
    parser.add_argument("--root", type=Path, default=ROOT / "var" / "quality")
    parser.add_argument("--objective", default="recall@20", help="validation objective (evaluation.pipeline)")
    parser.add_argument("--tag", default="", help="suffix of the result files (an experiment beside the default)")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed (the blend's PSO, the user sample)")
    parser.add_argument("--render", action="store_true",
                        help="print the recorded results (benchmarks/results/quality-*.json) as Markdown")
    args = parser.parse_args()
    if args.render:
        print(render(sorted((ROOT / "benchmarks" / "results").glob("quality-*.json"))))
        return 0

    from evaluation.pipeline import PipelineSettings, evaluate_pipeline
    from evaluation.replay import BuildSettings
    from vitrine.config import Home
    from vitrine.console import library_output_to
    from vitrine.data.convert import convert, shipped
    from vitrine.data.ingest import ingest
    from vitrine.online.redis_local import redis_url

    for kind in args.logs:
        home = Home(args.root / kind)
        converted, paths = convert(kind, shipped(kind), home.converted)
        print(converted.render(), flush=True)
        with library_output_to(home.logs / "bench_quality.log"):
            ingest(home, events=[paths["events"]], items=[paths["items"]],
                   users=[paths["users"]] if "users" in paths else ())
            url = redis_url(home)
            for split in args.splits:
                t = time.perf_counter()
                e = args.epochs
                settings = PipelineSettings(split=split, max_users=args.users, trials=args.trials,
                                            objective=args.objective, seed=args.seed,
                                            build=BuildSettings(two_tower_epochs=e, ranker_epochs=e, student_epochs=e))
                report = evaluate_pipeline(home, url, settings, log=lambda m: print(m, flush=True))
                seconds = time.perf_counter() - t
                rows = {name: {m: round(v[m], 4) for m in HEADLINE if m in v}
                        for name, v in report.test.metrics.items()}
                out = {"log": kind, "split": split, "seconds": round(seconds, 1), "users": report.test.users,
                       "cold_users": report.test.cold_users, "validation_users": report.validation.users,
                       "policy": report.policy, "baselines": report.baselines, "test": rows,
                       "validation": {n: round(v["recall@20"], 4) for n, v in report.validation.metrics.items()},
                       "routes": {"validation": report.validation.routes, "test": report.test.routes},
                       "verdicts": report.verdicts(),
                       "command": f"python benchmarks/bench_quality.py --logs {kind} --splits {split} "
                                  f"--users {args.users} --trials {args.trials}"
                                  + (f" --objective {args.objective} --tag {args.tag}" if args.tag else "")
                                  + (f" --seed {args.seed}" if args.seed else "")
                                  + (f" --epochs {e}" if e else "")}
                tag = f"-{args.tag}" if args.tag else ""
                path = ROOT / "benchmarks" / "results" / f"quality-{kind}-{split}{tag}.json"
                path.write_text(json.dumps(out, indent=2, default=str) + "\n")
                print(f"\n{kind} / {split}: {report.test.users:,} test users, {seconds / 60:.1f} min → {path}")
                print(f"{'method':<26}" + "".join(f"{m:>13}" for m in HEADLINE))
                for name, row in rows.items():
                    print(f"{name:<26}" + "".join(f"{row.get(m, float('nan')):>13.4f}" for m in HEADLINE))
                for verdict in report.verdicts():
                    print(verdict)
                print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
