"""`vitrine evaluate ranking`: the published teacher and student on the test day, next to
single-task DNN baselines trained here on the teacher's own training rows (the cached set the
teacher's manifest names): a CTR-only DNN on impressions and a CVR-only DNN on clicked rows
(the classic click-space CVR model ESMM is compared with). Same encoder, embedding size,
units, dropout, learning rate and epochs as the teacher; one expert, no FM part, one task.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.ranking.data import RankingData, load_ranking_data, negatives_of
from training.ranking.metrics import report
from training.ranking.pipeline import head_metrics, labelled
from vitrine.config import Home
from vitrine.versions import latest

BASELINE_SETTINGS = ("embedding_dim", "expert_units", "tower_units", "dropout", "learning_rate", "l2", "epochs",
                     "batch_size", "patience", "ema_epochs", "seed")


def train_baselines(encoder, train_f, val_f, test_f, settings, *, progress: bool = False,
                    log=print) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Test-row probabilities of the CTR-only DNN (impressions) and the CVR-only DNN (clicked
    rows): `settings` with one expert, no FM part, one task, no segment weights (and none of the
    multi-task options: no task-specific experts, no per-task linear terms, no CTCVR scaling)."""
    from training.ranking.mmoe import MMoERanker
    from training.ranking.teacher_fit import fit, predict

    base = replace(settings, experts=1, fm=False, adapt_weights=False, segment_weights=(), task_experts=0,
                   task_linear=False, detach_ctr_in_ctcvr=False, ctcvr_weight=1.0, fm_tasks=None, fm_into_experts=False,
                   select_on="ctr")
    train, val, test = labelled(encoder, train_f), labelled(encoder, val_f), labelled(encoder, test_f)
    probs, curves = {}, {}
    for task, rows in (("ctr", None), ("cvr", train.click == 1)):
        s = replace(base, tasks=(task,))
        model = MMoERanker(encoder, s)
        tr = train if rows is None else train.subset(rows)
        va = val if rows is None else val.subset(val.click == 1)
        fitted = fit(model, tr, va, s, encoder.segments, progress=progress)
        probs[task] = predict(model, test.inputs)[f"p_{task}"]
        curves[f"{task.upper()}-only DNN"] = fitted.history
        log(f"{task.upper()}-only DNN: {len(fitted.history)} epochs, {len(tr):,} rows ({fitted.seconds:.0f}s)")
    return probs, curves


def evaluate_ranking(home: Home, redis_url: str, *, fraction: float | None = None, out: Path | None = None,
                     progress: bool = False, data: RankingData | None = None, log=print) -> dict:
    """Metrics of the published models and the baselines on the test day; writes the table
    (Markdown, JSON) and plots to `out` (default `<home>/reports/ranking`)."""
    from ranking.fm import FMStudent
    from ranking.teacher import Teacher
    from training.ranking.mmoe import MMoESettings
    from training.ranking.report import plot_metrics, plot_training, write_metrics

    teacher = Teacher.load(latest(home, "ranker"))
    student = FMStudent.load(latest(home, "coarse"))
    ds = teacher.manifest["dataset"]
    data = data or load_ranking_data(home, redis_url, fraction=fraction if fraction is not None else ds["fraction"],
                             eval_fraction=ds["eval_fraction"], seed=ds["seed"],
                             negatives=negatives_of(ds),
                             services=(teacher.feature_service, student.feature_service))
    train_f, val_f, test_f = data.part("train"), data.part("val"), data.part("test")
    encoder = teacher.encoder
    p_ctr, p_cvr = teacher.score_frame(test_f)
    models = {f"MMoE teacher {teacher.version}": head_metrics(test_f, p_ctr, p_cvr)}

    t = teacher.manifest["settings"]
    # (a setting the version's manifest predates keeps its default)
    base = replace(MMoESettings(), **{k: t[k] for k in BASELINE_SETTINGS if k in t})
    curves = {"teacher": teacher.manifest.get("history", [])}
    probs, histories = train_baselines(encoder, train_f, val_f, test_f, base, progress=progress, log=log)
    curves.update(histories)
    models["CTR-only DNN"] = head_metrics(test_f, probs["ctr"], None)
    models["CVR-only DNN"] = {"cvr": head_metrics(test_f, None, probs["cvr"])["cvr"]}
    models["CTR-only × CVR-only"] = {"ctcvr": head_metrics(test_f, probs["ctr"], probs["cvr"])["ctcvr"]}
    s = 1 / (1 + np.exp(-student.score_frame(test_f)))
    models[f"FM student {student.version}"] = {"ctr": report(test_f["user_id"].to_numpy(),
                                                             test_f["label_click"].to_numpy(), s)}

    out = out or home.reports / "ranking"
    teacher_ctr = models[f"MMoE teacher {teacher.version}"]["ctr"]["auc"]
    bars = {
        "teacher_vs_ctr_dnn_auc": teacher_ctr - models["CTR-only DNN"]["ctr"]["auc"],
        "teacher_vs_cvr_dnn_auc": (models[f"MMoE teacher {teacher.version}"]["cvr"]["auc"]
                                   - models["CVR-only DNN"]["cvr"]["auc"]),
        "student_minus_teacher_ctr_auc": models[f"FM student {student.version}"]["ctr"]["auc"] - teacher_ctr,
    }
    table = write_metrics(out, models, {"dataset": data.describe(), "teacher": teacher.version,
                                        "student": student.version, "differences": bars})
    plot_metrics(models, out / "metrics.png")
    plot_training(curves, out / "evaluation_curves.png")
    log(table)
    log("differences: " + ", ".join(f"{k} {v:+.4f}" for k, v in bars.items()))
    log(f"table, JSON and plots in {out}")
    return {"models": models, "differences": bars, "out": str(out)}


def cli_evaluate(args, home: Home) -> int:
    from vitrine.online.redis_local import redis_url

    evaluate_ranking(home, redis_url(home), fraction=args.fraction, out=args.out, progress=sys.stderr.isatty())
    return 0
