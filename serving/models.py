"""The model versions being served, and their hot reload.

The retriever is built from the feature tables even before a two-tower version is published
(item-CF, content, ALS, category, hot and new routes), on the server's item catalogue
(`serving.items`); the rankers need published versions.

`ModelSet.current` is an immutable snapshot (retriever, FM student, MMoE teacher, versions);
a request takes the reference once and uses it to the end, so a reload never mixes versions
inside a request. `reload()` looks at each model's `latest` pointer; when it moved, the new
version is loaded (the loaders verify the manifest checksums and raise `BadModelVersion`)
and swapped in by one reference assignment. A version that fails to load is refused, logged
and counted, and the old one keeps serving; the same pointer is not retried until it moves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from serving.metrics import Metrics
from vitrine.config import Home
from vitrine.policy import Policy
from vitrine.versions import models_dir, verify

log = logging.getLogger("serving.models")

MODELS = ("two_tower", "coarse", "ranker", "pipeline")
OPTIONAL = ("two_tower", "pipeline")  # served without a published version (routes from tables; default policy)


@dataclass(frozen=True)
class Loaded:
    retriever: Any = None  # retrieval.service.Retriever
    student: Any = None  # ranking.fm.FMStudent (coarse)
    teacher: Any = None  # ranking.teacher.Teacher (fine)
    policy: Policy = field(default_factory=Policy)  # the published serving policy (vitrine.policy)
    versions: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # model → why it is not being served

    def version_string(self) -> str:
        return ",".join(f"{m}={self.versions[m]}" for m in MODELS if m in self.versions) or "none"


def _load_retriever(home: Home, directory, catalogue: Callable[[], Any] | None = None) -> tuple[Any, str]:
    """Recall routes from the feature tables, plus the two-tower route when one is published;
    their item table is `catalogue()` when given (the serving item cache's), else the tables'."""
    from retrieval.service import Retriever

    r = Retriever.load(home, two_tower=directory, catalogue=None if catalogue is None else catalogue())
    return r, str(r.version)


def _load_student(home: Home, directory) -> tuple[Any, str]:
    from ranking.fm import FMStudent

    return FMStudent.load(directory), directory.name


def _load_teacher(home: Home, directory) -> tuple[Any, str]:
    from ranking.teacher import Teacher

    return Teacher.load(directory), directory.name


def _load_policy(home: Home, directory) -> tuple[Any, str]:
    """The published policy (checksums verified), or the defaults (no version) when none is."""
    if directory is None:
        return Policy(), None
    verify(directory)
    policy = Policy.load(directory)
    for warning in policy.warnings:
        log.warning("serving policy warning", extra={"version": directory.name, "warning": warning})
    return policy, directory.name


LOADERS: dict[str, Callable[[Home, Any], tuple[Any, str]]] = {
    "two_tower": _load_retriever, "coarse": _load_student, "ranker": _load_teacher, "pipeline": _load_policy}
SLOTS = {"two_tower": "retriever", "coarse": "student", "ranker": "teacher", "pipeline": "policy"}


class ModelSet:
    def __init__(self, home: Home, metrics: Metrics, loaders: dict | None = None,
                 catalogue: Callable[[], Any] | None = None) -> None:
        """`catalogue`: gives the item catalogue the retriever is built on (the server's item
        cache's, so a candidate's row is its cache row); None: the retriever reads the tables."""
        self.home, self.metrics = home, metrics
        self.loaders = loaders or LOADERS
        if catalogue is not None:
            self.loaders = {**self.loaders, "two_tower": partial(self.loaders["two_tower"], catalogue=catalogue)}
        self.current = Loaded()
        self._pointers: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def pointer(self, model: str) -> str | None:
        path = models_dir(self.home, model) / "latest"
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def reload(self, force: frozenset[str] = frozenset()) -> dict[str, str]:
        """Load every model whose `latest` moved (or in `force`). Returns model → outcome."""
        outcomes: dict[str, str] = {}
        with self._lock:
            snapshot = self.current
            for model in MODELS:
                pointer = self.pointer(model)
                if model not in force and model in self._pointers and pointer == self._pointers[model]:
                    continue
                self._pointers[model] = pointer
                if pointer is None and model not in OPTIONAL:
                    if getattr(snapshot, SLOTS[model]) is None:
                        snapshot = replace(snapshot, problems={**snapshot.problems, model: "not_trained"})
                    outcomes[model] = "not trained"
                    continue
                directory = None if pointer is None else models_dir(self.home, model) / pointer
                try:
                    obj, version = self.loaders[model](self.home, directory)
                except Exception as e:  # BadModelVersion, ImportError, a broken file: refuse it
                    reason = f"{type(e).__name__}: {e}"
                    self.metrics.reloads.labels(model, "refused").inc()
                    log.warning("model version refused", extra={"model": model, "version": pointer,
                                                                "reason": reason[:500]})
                    outcomes[model] = f"refused: {reason}"
                    if getattr(snapshot, SLOTS[model]) is None:
                        snapshot = replace(snapshot, problems={**snapshot.problems, model: "load_failed"})
                    continue
                problems = {k: v for k, v in snapshot.problems.items() if k != model}
                # a loader's version None: nothing published, its defaults serve (no version to report)
                versions = {k: v for k, v in snapshot.versions.items() if k != model}
                if version is not None:
                    versions[model] = version
                snapshot = replace(snapshot, **{SLOTS[model]: obj}, versions=versions, problems=problems)
                shown = "defaults" if version is None else version
                self.metrics.reloads.labels(model, "loaded").inc()
                self.metrics.set_version(model, shown)
                log.info("model version loaded", extra={"model": model, "version": shown})
                outcomes[model] = f"loaded {shown}"
            self.current = snapshot  # the atomic swap
        return outcomes
