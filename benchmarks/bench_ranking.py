"""Ranking on the `demo` home: scoring speed of the FM student vs the MMoE teacher, and the
PSO vs random-search comparison at the same trial budget.

    .venv/bin/python benchmarks/bench_ranking.py --home var/demo speed [--candidates 500] [--record]
    .venv/bin/python benchmarks/bench_ranking.py --home var/demo quality [--seeds 0 1 2] [--record]
        [--teacher task_experts=1 detach_ctr_in_ctcvr=True ...] [--teacher-only]
        [--baseline ema_epochs=1.0 ...] [--baselines-only]
    .venv/bin/python benchmarks/bench_ranking.py --home var/demo search [--budget 12] [--seeds 0 1 2] [--record]

speed: the published `coarse` and `ranker` versions score requests built from real rows of the
cached training set (one user's features, `--candidates` candidates' item features, a request
time and device), through the exact calls the server makes (`FMStudent.score`,
`Teacher.score`), one thread each (NumPy and TensorFlow pinned to 1 thread), in alternating
blocks in one process: median and p99 per request, candidates/s, the ratio.

quality: on the cached training set, for each seed, the teacher (default settings, or with
`--teacher` overrides of `MMoESettings` fields), the CTR-only and CVR-only DNN baselines and the
distilled student are trained on the same rows and scored on the test day; mean ± sd over seeds
per metric (the published versions are one seed). `--teacher-only` skips the baselines and the
student (screening teacher variants against recorded baseline figures); `--baselines-only` trains
only the baselines, with `--baseline` overrides of the settings they share with the teacher
(training-procedure variants must be screened on both sides).
The teacher's validation-day CTR and CVR AUC at its kept epoch (and the selection score,
`MMoESettings.select_on`) are printed and recorded per seed too: variants are picked on those.

search: the teacher trial the tuner uses (a 40k-row subsample of the training days, 2 epochs,
median early stopping) searched by PSO and by random search with the same budget for each
seed; best-so-far validation AUC per trial, the mean over seeds, and a plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
USER_PREFIXES = ("user_behaviour__", "user_preferences__", "user_profile__", "user_realtime__", "als_user_factors__")
ITEM_PREFIXES = ("item_stats__", "item_attributes__", "merchant_stats__")


def _requests(frame, n_candidates: int, count: int, seed: int = 0) -> list[tuple[dict, dict, dict]]:
    """(user, items, request) triples from real rows: a user's row, random candidates' rows."""
    rng = np.random.default_rng(seed)
    users = frame.drop_duplicates("user_id")
    item_cols = [c for c in frame if c.startswith(ITEM_PREFIXES)]
    user_cols = [c for c in frame if c.startswith(USER_PREFIXES)]
    out = []
    for i in rng.choice(len(users), count, replace=len(users) < count):
        row = users.iloc[int(i)]
        cand = frame.iloc[rng.choice(len(frame), n_candidates, replace=False)]
        user = {c: row[c] for c in user_cols}
        items = {c: cand[c].to_numpy() for c in item_cols}
        request = {"request_unix_s": int(row["request_unix_s"]), "device_code": int(row["device_code"])}
        out.append((user, items, request))
    return out


def _time_side_by_side(fns: dict, requests, repeats: int) -> dict[str, list[float]]:
    """Alternating blocks (every request through one scorer, then the other, `repeats` times), so
    drifting load from other processes hits both alike. Not per call: right after a TensorFlow
    call its thread pool is still spinning, which would be charged to the next NumPy call."""
    for user, items, request in requests[:5]:
        for fn in fns.values():
            fn(user, items, request)  # warm up (TF traces, caches)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for user, items, request in requests:
                t = time.perf_counter()
                fn(user, items, request)
                times[name].append(time.perf_counter() - t)
    return times


def speed(args) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from ranking.fm import FMStudent
    from ranking.teacher import Teacher
    from training.ranking.data import load_ranking_data
    from vitrine.config import Home
    from vitrine.online.redis_local import redis_url
    from vitrine.versions import latest

    home = Home.resolve(args.home)
    teacher = Teacher.load(latest(home, "ranker"))
    student = FMStudent.load(latest(home, "coarse"))
    ds = teacher.manifest["dataset"]
    data = load_ranking_data(home, redis_url(home), fraction=ds["fraction"], eval_fraction=ds["eval_fraction"],
                             seed=ds["seed"], services=(teacher.feature_service, student.feature_service))
    test = data.part("test")
    results = {"teacher": teacher.version, "student": student.version, "candidates": {},
               "teacher_numpy": teacher.numpy is not None, "teacher_numpy_problem": teacher.numpy_problem}
    saved_model = dataclasses.replace(teacher, numpy=None)  # the same version through TensorFlow
    scorers = {"student": student, "teacher (NumPy)": teacher, "teacher (SavedModel)": saved_model}
    if teacher.numpy is None:
        del scorers["teacher (NumPy)"]
    for n in args.candidates:
        reqs = _requests(test, n, args.requests)
        rows: dict = {}
        # (a) everything encoded per call; (b) the server's path: item-only inputs encoded once per
        # item table (here: per request, outside the timing), the call encodes what depends on it
        for path in ("full", "server"):
            fns = {}
            for name, model in scorers.items():
                if path == "full":
                    fns[name] = model.score
                else:
                    parts = {id(items): model.item_part(items, n) for _, items, _ in reqs}
                    few = {id(items): {c: items[c] for c in model.request_columns if c in items}
                           for _, items, _ in reqs}
                    fns[name] = (lambda u, items, r, m=model, parts=parts, few=few:
                                 m.score(u, few[id(items)], r, item_part=parts[id(items)]))
            timed = _time_side_by_side(fns, reqs, args.repeats)
            out = {}
            for name, times in timed.items():
                med = statistics.median(times)
                out[name] = {"median_ms": med * 1e3, "p99_ms": float(np.percentile(times, 99)) * 1e3,
                             "candidates_per_s": n / med, "calls": len(times)}
            for name in scorers:
                if name != "student":
                    out[f"student / {name}"] = out["student"]["candidates_per_s"] / out[name]["candidates_per_s"]
            rows[path] = out
            print(f"{n} candidates/request, one thread, {path} encoding:")
            for name in scorers:
                r = out[name]
                print(f"  {name:22s} median {r['median_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
                      f"{r['candidates_per_s']:>12,.0f} candidates/s")
            for name in scorers:
                if name != "student":
                    print(f"  student / {name}: {out[f'student / {name}']:.1f}x")
        results["candidates"][str(n)] = rows
    return results


def search(args) -> dict:
    from ranking.features import TeacherEncoder
    from training.ranking.data import TEACHER_SERVICE, load_ranking_data
    from training.ranking.mmoe import MMoESettings
    from training.ranking.pipeline import labelled
    from training.ranking.report import plot_search
    from training.ranking.tuning import TeacherTrials
    from training.ranking.tuning import search as run_search
    from vitrine.config import Home
    from vitrine.online.redis_local import redis_url

    home = Home.resolve(args.home)
    data = load_ranking_data(home, redis_url(home), fraction=args.fraction)
    train_f, val_f = data.part("train"), data.part("val")
    encoder = TeacherEncoder.fit(train_f, data.layouts[TEACHER_SERVICE])
    trials = TeacherTrials(encoder, labelled(encoder, train_f), labelled(encoder, val_f), MMoESettings())
    out = Path(args.out or home.reports / "ranking")
    curves: dict[str, list[list[float]]] = {"pso": [], "random": []}
    runs = []
    for seed in args.seeds:
        for method in ("pso", "random"):
            t = time.perf_counter()
            result = run_search(trials, method, args.budget, seed=seed, log_path=out / f"search-{method}-{seed}.jsonl")
            curves[method].append(result.best_so_far())
            runs.append({"method": method, "seed": seed, "best": result.best.params, "best_auc": result.best.score,
                         "best_so_far": result.best_so_far(), "stopped_early": sum(t.stopped for t in result.trials),
                         "seconds": round(time.perf_counter() - t, 1)})
            print(f"{method:6s} seed {seed}: best AUC {result.best.score:.4f} after {args.budget} trials "
                  f"({runs[-1]['stopped_early']} stopped early, {runs[-1]['seconds']:.0f}s) {result.best.params}")
    final = {m: float(np.mean([c[-1] for c in curves[m]])) for m in curves}
    print(f"mean best-so-far at {args.budget} trials: PSO {final['pso']:.4f}, random {final['random']:.4f}")
    plot = plot_search(curves, out / "pso_vs_random.png")
    print(f"plot: {plot}")
    return {"budget": args.budget, "seeds": args.seeds, "fraction": args.fraction, "runs": runs,
            "mean_final_best": final, "mean_curves": {m: np.mean(c, axis=0).tolist() for m, c in curves.items()},
            "plot": str(plot)}


def teacher_overrides(pairs: list[str], known: set[str] | None = None) -> dict:
    """`key=value` strings → MMoESettings field values (Python literals: 1, 0.5, True, (1, 2))."""
    import ast
    from dataclasses import fields

    from training.ranking.mmoe import MMoESettings

    known = known or {f.name for f in fields(MMoESettings)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in known or not value:
            raise SystemExit(f"--teacher {pair!r}: expected key=value with key one of {sorted(known)}")
        out[key] = ast.literal_eval(value)
    return out


def _kept_validation(seed: int, curves: dict[str, list]) -> dict:
    """Each baseline's validation AUC at its kept epoch (fit keeps the best epoch)."""
    return {"seed": seed, **{name: max(h["val_auc"] for h in hist) for name, hist in curves.items()}}


def _auc_text(row: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "seed")


def quality(args) -> dict:
    from dataclasses import asdict, replace

    from evaluation.ranking import BASELINE_SETTINGS, train_baselines
    from ranking.features import TeacherEncoder
    from ranking.fm import FeatureMap
    from training.ranking.data import STUDENT_SERVICE, TEACHER_SERVICE, load_ranking_data
    from training.ranking.fm_student import FMSettings, train_student
    from training.ranking.metrics import report
    from training.ranking.mmoe import MMoERanker, MMoESettings
    from training.ranking.pipeline import head_metrics, labelled
    from training.ranking.teacher_fit import fit, predict
    from vitrine.config import Home
    from vitrine.online.redis_local import redis_url

    home = Home.resolve(args.home)
    data = load_ranking_data(home, redis_url(home), fraction=args.fraction)
    train_f, val_f, test_f = data.part("train"), data.part("val"), data.part("test")
    encoder = TeacherEncoder.fit(train_f, data.layouts[TEACHER_SERVICE])
    train, val, test = labelled(encoder, train_f), labelled(encoder, val_f), labelled(encoder, test_f)
    users, clicks = test_f["user_id"].to_numpy(), test_f["label_click"].to_numpy()
    overrides = teacher_overrides(args.teacher)
    base_overrides = teacher_overrides(args.baseline, set(BASELINE_SETTINGS))
    per_seed, fits, base_val = [], [], []
    for seed in args.seeds:
        t = time.perf_counter()
        base_settings = replace(MMoESettings(seed=seed), **base_overrides)  # never the teacher's overrides
        if args.baselines_only:
            base, curves = train_baselines(encoder, train_f, val_f, test_f, base_settings, log=lambda *_: None)
            base_val.append(_kept_validation(seed, curves))
            per_seed.append({"ctr_dnn": head_metrics(test_f, base["ctr"], None),
                             "cvr_dnn": {"cvr": head_metrics(test_f, None, base["cvr"])["cvr"]}})
            print(f"seed {seed} ({time.perf_counter() - t:.0f}s): baselines' validation AUC "
                  + _auc_text(base_val[-1]) + f"; test: CTR-only AUC {per_seed[-1]['ctr_dnn']['ctr']['auc']:.4f}, "
                  f"CVR-only AUC {per_seed[-1]['cvr_dnn']['cvr']['auc']:.4f}", flush=True)
            continue
        settings = replace(MMoESettings(seed=seed), **overrides)
        model = MMoERanker(encoder, settings)
        fitted = fit(model, train, val, settings, encoder.segments)
        best = fitted.history[fitted.best_epoch - 1]  # the kept epoch's validation-day figures
        fits.append({"seed": seed, "epochs": len(fitted.history), "best_epoch": fitted.best_epoch,
                     "seconds": round(fitted.seconds, 1), "select_on": settings.select_on,
                     "val_score": best["val_auc"], "val_ctr_auc": best["val_ctr_auc"],
                     "val_cvr_auc": best["val_cvr_auc"]})
        val_text = (f"validation CTR AUC {best['val_ctr_auc']:.4f}, CVR AUC {best['val_cvr_auc']:.4f} "
                    f"(score {best['val_auc']:.4f}, {settings.select_on})")
        probs = predict(model, test.inputs)
        if args.teacher_only:
            row = {"teacher": head_metrics(test_f, probs["p_ctr"], probs["p_cvr"])}
            per_seed.append(row)
            print(f"seed {seed} ({time.perf_counter() - t:.0f}s, best epoch {fitted.best_epoch} of "
                  f"{len(fitted.history)}): {val_text}; test: teacher CTR AUC {row['teacher']['ctr']['auc']:.4f}, "
                  f"CVR AUC {row['teacher']['cvr']['auc']:.4f}, CTCVR AUC {row['teacher']['ctcvr']['auc']:.4f}",
                  flush=True)
            continue
        logits = predict(model, train.inputs, logits=True)["ctr"]
        base, curves = train_baselines(encoder, train_f, val_f, test_f, base_settings, log=lambda *_: None)
        base_val.append(_kept_validation(seed, curves))
        student = train_student(train_f, logits, val_f, FeatureMap.spec_of(data.layouts[STUDENT_SERVICE]),
                                settings=replace(FMSettings(), seed=seed))
        s = student.logits(test_f)
        row = {"teacher": head_metrics(test_f, probs["p_ctr"], probs["p_cvr"]),
               "ctr_dnn": head_metrics(test_f, base["ctr"], None),
               "cvr_dnn": {"cvr": head_metrics(test_f, None, base["cvr"])["cvr"]},
               "ctr_x_cvr_dnn": {"ctcvr": head_metrics(test_f, base["ctr"], base["cvr"])["ctcvr"]},
               "student": {"ctr": report(users, clicks, 1 / (1 + np.exp(-s)))}}
        per_seed.append(row)
        print(f"seed {seed} ({time.perf_counter() - t:.0f}s): teacher {val_text}; baselines' validation AUC "
              + _auc_text(base_val[-1]) + "; "
              f"test: teacher CTR AUC {row['teacher']['ctr']['auc']:.4f}, "
              f"CTR-only {row['ctr_dnn']['ctr']['auc']:.4f}, student {row['student']['ctr']['auc']:.4f}; "
              f"CVR AUC teacher {row['teacher']['cvr']['auc']:.4f}, CVR-only {row['cvr_dnn']['cvr']['auc']:.4f}",
              flush=True)
    summary: dict = {}
    for model in per_seed[0]:
        for head in per_seed[0][model]:
            for metric in ("auc", "gauc", "logloss"):
                vals = [r[model][head][metric] for r in per_seed]
                summary.setdefault(model, {}).setdefault(head, {})[metric] = (float(np.mean(vals)),
                                                                              float(np.std(vals)))
    validation = {k: (float(np.mean([f[k] for f in fits])), float(np.std([f[k] for f in fits])))
                  for k in ("val_score", "val_ctr_auc", "val_cvr_auc")} if fits else {}
    if fits:
        v = validation
        print(f"\nteacher on the validation day (kept epoch), mean ± sd: CTR AUC {v['val_ctr_auc'][0]:.4f} ± "
              f"{v['val_ctr_auc'][1]:.4f}, CVR AUC {v['val_cvr_auc'][0]:.4f} ± {v['val_cvr_auc'][1]:.4f}, "
              f"selection score {v['val_score'][0]:.4f} ± {v['val_score'][1]:.4f}")
    baseline_validation = {k: (float(np.mean([b[k] for b in base_val])), float(np.std([b[k] for b in base_val])))
                           for k in (base_val[0] if base_val else {}) if k != "seed"}
    for k, (mean, sd) in baseline_validation.items():
        print(f"{k} on the validation day (kept epoch), mean ± sd: AUC {mean:.4f} ± {sd:.4f}")
    print(f"\nmean ± sd over seeds {args.seeds} (test day: {len(test_f):,} rows, {int(clicks.sum()):,} clicks, "
          f"{int(test_f['label_purchase'].sum())} purchases)")
    print("| model | head | AUC | GAUC | logloss |\n|---|---|---:|---:|---:|")
    for model, heads in summary.items():
        for head, m in heads.items():
            print(f"| {model} | {head} | " + " | ".join(f"{m[k][0]:.4f} ± {m[k][1]:.4f}"
                                                       for k in ("auc", "gauc", "logloss")) + " |")
    return {"seeds": args.seeds, "fraction": args.fraction, "dataset": data.describe(),
            "teacher_settings": json.loads(json.dumps(asdict(replace(MMoESettings(), **overrides)))),
            "baseline_overrides": base_overrides,
            "teacher_fits": fits, "teacher_validation": validation, "baseline_validation": baseline_validation,
            "baseline_validation_per_seed": base_val, "per_seed": per_seed, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--home", default="var/demo")
    parser.add_argument("--record", action="store_true", help="write benchmarks/results/ranking-<what>.json")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--candidates", type=int, nargs="+", default=[500, 200, 100])
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--repeats", type=int, default=4)
    r = sub.add_parser("quality")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--fraction", type=float, default=1.0)
    r.add_argument("--teacher", nargs="+", default=[], metavar="KEY=VALUE", help="MMoESettings overrides")
    r.add_argument("--teacher-only", action="store_true", help="no baselines, no student (screening)")
    r.add_argument("--baseline", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides of the baselines' shared settings (training-procedure variants)")
    r.add_argument("--baselines-only", action="store_true", help="only the baselines (screening)")
    q = sub.add_parser("search")
    q.add_argument("--budget", type=int, default=12)
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    q.add_argument("--fraction", type=float, default=0.25)
    q.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.record and args.what == "quality" and (args.teacher_only or args.baselines_only):
        parser.error("--record writes the full quality comparison: not with --teacher-only / --baselines-only")
    results = {"speed": speed, "quality": quality, "search": search}[args.what](args)
    if args.record:
        path = ROOT / "benchmarks" / "results" / f"ranking-{args.what}.json"
        path.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"recorded {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
