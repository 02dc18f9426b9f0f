"""`vitrine train ranking` / `vitrine evaluate ranking`: the MMoE teacher and the distilled FM
student from the home's feature store, as published model versions; and their evaluation
next to single-task baselines trained on the same rows.

Train: point-in-time rows of the rankers' feature services (`ranker_v1` and `coarse_v1` by
default; cached), split by time → optional PSO / random search
→ teacher fitted (early stopping on the validation day) → saved, loaded back and checked to
score identically → published as `ranker` → student distilled from the teacher's CTR logits
on the same training rows → saved, checked, published as `coarse`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ranking.features import TeacherEncoder
from training.ranking.data import STUDENT_SERVICE, TEACHER_SERVICE, TRAIN_FRACTION, RankingData, load_ranking_data
from training.ranking.fm_student import FMSettings
from training.ranking.metrics import report
from training.ranking.negatives import DEFAULT as DEFAULT_NEGATIVES
from training.ranking.negatives import NegativeSettings
from vitrine.config import Home
from vitrine.versions import BadModelVersion, new_version_dir, publish, write_manifest


@dataclass
class RankingRun:
    teacher_dir: Path
    student_dir: Path
    teacher_manifest: dict
    student_manifest: dict
    report_dir: Path


def labelled(encoder: TeacherEncoder, frame: pd.DataFrame):
    from training.ranking.teacher_fit import Labelled

    return Labelled(encoder.encode_frame(frame), frame["label_click"].to_numpy(),
                    frame["label_purchase"].to_numpy(), frame["user_id"].to_numpy())


def head_metrics(frame: pd.DataFrame, p_ctr: np.ndarray | None, p_cvr: np.ndarray | None) -> dict:
    """CTR on impressions; CVR on clicked rows; CTCVR (pCTR·pCVR) on impressions."""
    users, click, buy = frame["user_id"].to_numpy(), frame["label_click"].to_numpy(), frame["label_purchase"].to_numpy()
    out = {}
    if p_ctr is not None:
        out["ctr"] = report(users, click, p_ctr)
    if p_cvr is not None:
        clicked = click == 1
        out["cvr"] = report(users[clicked], buy[clicked], p_cvr[clicked])
    if p_ctr is not None and p_cvr is not None:
        out["ctcvr"] = report(users, buy, p_ctr * p_cvr)
    return out


def _settings_json(settings) -> dict:
    return json.loads(json.dumps(asdict(settings)))


def train_ranking(home: Home, redis_url: str, *, teacher=None, student: FMSettings | None = None,
                  fraction: float = TRAIN_FRACTION, tune: str | None = None, budget: int = 6, progress: bool = False,
                  report_dir: Path | None = None, data: RankingData | None = None,
                  negatives: NegativeSettings = DEFAULT_NEGATIVES, service: str = TEACHER_SERVICE,
                  student_service: str = STUDENT_SERVICE, log=print) -> RankingRun:
    """Train, verify and publish the teacher (`ranker`, inputs from feature service `service`)
    and the student (`coarse`, from `student_service`). `data`: already joined and split rows
    (default: the home's cached set of both services at `fraction`, its negatives per
    `negatives`: logged impressions, else recall candidates)."""
    from ranking.fm import FeatureMap, FMStudent
    from ranking.teacher import Teacher
    from training.ranking.fm_student import train_student
    from training.ranking.mmoe import MMoERanker, MMoESettings, save_teacher
    from training.ranking.report import plot_search, plot_training
    from training.ranking.teacher_fit import fit, predict

    settings = base = teacher or MMoESettings()
    report_dir = report_dir or home.reports / "ranking"
    data = data or load_ranking_data(home, redis_url, fraction=fraction, negatives=negatives,
                                     services=(service, student_service))
    log(f"training set {'(cached) ' if data.cached else ''}{data.path.name}: "
        + ", ".join(f"{k} {v['rows']:,} rows / {v['clicks']:,} clicks / {v['purchases']:,} purchases"
                    for k, v in data.describe().items() if k in ("train", "val", "test")) + f" ({data.seconds:.0f}s)")
    train_f, val_f, test_f = data.part("train"), data.part("val"), data.part("test")
    layout = data.layouts[service]
    log(f"teacher inputs: {layout.describe()}")
    encoder = TeacherEncoder.fit(train_f, layout)
    train, val = labelled(encoder, train_f), labelled(encoder, val_f)
    segments = encoder.segments

    tuning = None
    if tune:
        from training.ranking.tuning import TeacherTrials, search

        log_path = report_dir / f"tuning-{tune}.jsonl"
        log_path.unlink(missing_ok=True)
        result = search(TeacherTrials(encoder, train, val, settings), tune, budget, log_path=log_path)
        best = result.best
        settings = replace(settings, **best.params)
        tuning = {"method": tune, "budget": budget, "best": asdict(best), "trial_log": str(log_path),
                  "best_so_far": result.best_so_far()}
        (report_dir / f"tuning-{tune}-best.json").write_text(json.dumps(tuning, indent=2) + "\n")
        plot_search({tune: [result.best_so_far()]}, report_dir / f"tuning-{tune}.png")
        log(f"{tune} search: {len(result.trials)} trials, best validation AUC {best.score:.4f} with {best.params}")

    def full_fit(s):
        m = MMoERanker(encoder, s)
        return m, fit(m, train, val, s, segments, progress=progress)

    model, fitted = full_fit(settings)
    if tuning is not None and settings != base:
        # trials are small (a subsample, 2 epochs); the base settings get a full fit too and the
        # better one on the whole validation day is kept
        base_model, base_fit = full_fit(base)
        tuning["full_validation_auc"] = {"tuned": fitted.best_val_auc, "base": base_fit.best_val_auc}
        if base_fit.best_val_auc > fitted.best_val_auc:
            model, fitted, settings = base_model, base_fit, base
        tuning["kept"] = "tuned" if settings != base else "base"
        log(f"full fits on the validation day: tuned {tuning['full_validation_auc']['tuned']:.4f}, "
            f"base {tuning['full_validation_auc']['base']:.4f} → keeping the {tuning['kept']} settings")
    test = labelled(encoder, test_f)
    probs = predict(model, test.inputs)
    t_metrics = head_metrics(test_f, probs["p_ctr"], probs["p_cvr"])
    log(f"teacher: {len(fitted.history)} epochs ({fitted.seconds:.0f}s), best epoch {fitted.best_epoch}, "
        f"test CTR AUC {t_metrics['ctr']['auc']:.4f}, CTCVR AUC {t_metrics['ctcvr']['auc']:.4f}")

    t_dir = new_version_dir(home, "ranker")
    save_teacher(model, encoder, t_dir)
    t_manifest = write_manifest(
        t_dir, model="ranker", feature_service=service, data_window=list(data.window),
        dataset=data.describe(), settings=_settings_json(settings), metrics={"test": t_metrics},
        history=fitted.history, best_epoch=fitted.best_epoch, task_weights=fitted.task_weights, tuning=tuning,
        cvr="ESMM: pCTCVR = pCTR x pCVR fitted to purchases on all impressions")
    loaded = Teacher.load(t_dir)
    check = test_f.iloc[:2000]
    again, _ = loaded.score_frame(check)
    if not np.allclose(again, probs["p_ctr"][:len(check)], atol=1e-5):
        raise BadModelVersion(f"{t_dir}: the saved teacher scores differently from the trained one")
    publish(home, "ranker", t_dir)

    teacher_logits = predict(model, train.inputs, logits=True)["ctr"]
    s_settings = student or FMSettings()
    student_fields = FeatureMap.spec_of(data.layouts[student_service])
    trained = train_student(train_f, teacher_logits, val_f, student_fields, settings=s_settings, progress=progress)
    s_logits = trained.logits(test_f)
    s_metrics = {"ctr": report(test_f["user_id"].to_numpy(), test_f["label_click"].to_numpy(),
                               1 / (1 + np.exp(-s_logits)))}
    s_dir = new_version_dir(home, "coarse")
    trained.save(s_dir)
    s_manifest = write_manifest(
        s_dir, model="coarse", feature_service=student_service, data_window=list(data.window),
        dataset=data.describe(), settings=_settings_json(s_settings), teacher_version=t_dir.name,
        fields={k: list(v) for k, v in student_fields.items()}, metrics={"test": s_metrics},
        history=trained.history)
    if not np.allclose(FMStudent.load(s_dir).score_frame(check), s_logits[:len(check)], atol=1e-5):
        raise BadModelVersion(f"{s_dir}: the saved student scores differently from the trained one")
    publish(home, "coarse", s_dir)
    log(f"student: test CTR AUC {s_metrics['ctr']['auc']:.4f} (teacher {t_metrics['ctr']['auc']:.4f}), "
        f"{trained.feature_map.size:,} features × {s_settings.factors} factors")
    plot_training({"teacher": fitted.history, "student": trained.history}, report_dir / "training_curves.png")
    return RankingRun(t_dir, s_dir, t_manifest, s_manifest, report_dir)


def cli_train(args, home: Home) -> None:
    from training.ranking.fm_student import FMSettings as _FM
    from training.ranking.mmoe import MMoESettings
    from vitrine.online.redis_local import redis_url

    teacher = MMoESettings() if args.epochs is None else MMoESettings(epochs=args.epochs)
    student = _FM() if args.epochs is None else _FM(epochs=args.epochs)
    run = train_ranking(home, redis_url(home), teacher=teacher, student=student,
                        fraction=args.fraction if args.fraction is not None else TRAIN_FRACTION, tune=args.tune,
                        budget=args.budget or 6, progress=sys.stderr.isatty(),
                        negatives=NegativeSettings(source=getattr(args, "negatives", None) or "auto"),
                        service=getattr(args, "service", None) or TEACHER_SERVICE,
                        student_service=getattr(args, "student_service", None) or STUDENT_SERVICE)
    print(f"ranker {run.teacher_dir.name} and coarse {run.student_dir.name} published as latest; "
          f"curves in {run.report_dir}")
