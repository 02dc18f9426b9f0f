"""Spark settings (a typed, overridable piece of the config tree) and the session factory.

`local[*]` by default; any master and any `spark.*` setting by configuration:
`--spark-master` / `$VITRINE_SPARK_MASTER`, `--spark-conf k=v` / `$VITRINE_SPARK_CONF`
(comma-separated `k=v`). Workers run this interpreter (`PYSPARK_PYTHON`), so the
venv's packages are importable inside tasks.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

MASTER_ENV = "VITRINE_SPARK_MASTER"
CONF_ENV = "VITRINE_SPARK_CONF"

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.driver.memory": "3g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}


def parse_conf(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"spark setting {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    conf: dict[str, str] = field(default_factory=dict)
    app_name: str = "vitrine"

    @classmethod
    def from_env(cls, master: str | None = None, conf: Iterable[str] = ()) -> SparkSettings:
        """Explicit arguments win over the environment, which wins over the defaults."""
        env_conf = parse_conf(os.environ.get(CONF_ENV, "").split(","))
        return cls(master=master or os.environ.get(MASTER_ENV) or cls.master,
                   conf={**env_conf, **parse_conf(conf)})


def spark_session(settings: SparkSettings | None = None):
    """A SparkSession for `settings` (reuses a running one with the same master)."""
    settings = settings or SparkSettings.from_env()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in {**DEFAULT_CONF, **settings.conf}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    # py4j logs "Closing down clientserver connection" at INFO when the interpreter exits,
    # after a command has handed stderr back to the console
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return session
