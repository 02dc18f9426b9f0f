"""Shared fixtures: tiny synthetic data (generated once), isolated homes, real services."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vitrine.config import Home

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset, seed 0: ~75k events over 7 days."""
    from vitrine.synth.generate import generate
    from vitrine.synth.presets import get_preset

    out = tmp_path_factory.mktemp("tiny")
    generate(get_preset("tiny"), out, seed=0)
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh, empty home; never the user's ~/.vitrine."""
    monkeypatch.delenv("VITRINE_REDIS_URL", raising=False)
    monkeypatch.setenv("VITRINE_HOME", str(tmp_path / "home"))
    return Home.resolve(tmp_path / "home")


@pytest.fixture(scope="session")
def spark():
    """Real Spark in local mode (Java 17), one per test session."""
    from spark_jobs.session import SparkSettings, spark_session

    session = spark_session(SparkSettings(master="local[2]", app_name="vitrine-tests",
                                          conf={"spark.sql.shuffle.partitions": "4",
                                                "spark.driver.memory": "2g"}))
    yield session
    session.stop()
