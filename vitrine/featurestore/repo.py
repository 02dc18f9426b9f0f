"""The home's Feast deployment: its environment, its FeatureStore, and `feast` itself.

Feast's repo root is `feature_repo/` (definitions only) and its infrastructure is the
project's `feature_store.yaml`, whose `${...}` variables are filled here from the home:
`VITRINE_HOME` (registry, feature tables), `VITRINE_FEAST_PROJECT`, `VITRINE_FEAST_REDIS`
(the online store: `$VITRINE_REDIS_URL` or the home's managed redis-server).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from vitrine.config import Home
from vitrine.errors import VitrineError

ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = ROOT / "feature_repo"
FEATURE_STORE_YAML = ROOT / "feature_store.yaml"
PROJECT_ENV = "VITRINE_FEAST_PROJECT"
DEFAULT_PROJECT = "vitrine"


class FeastError(VitrineError):
    pass


def feast_connection_string(redis_url: str) -> str:
    """redis://host:port/db → Feast's `host:port,db=N[,username=...][,password=...][,ssl=true]`;
    the URL's query options (`rediss://...?ssl_ca_certs=/path/ca.pem`) pass through to the client."""
    from urllib.parse import parse_qsl, unquote

    u = urlparse(redis_url)
    if u.scheme not in ("redis", "rediss"):
        raise FeastError(f"online store URL {redis_url!r} must start with redis:// or rediss://")
    db = (u.path or "/0").lstrip("/") or "0"
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}", f"db={db}"]
    if u.username:
        parts.append(f"username={unquote(u.username)}")
    if u.password:
        parts.append(f"password={unquote(u.password)}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    for key, value in parse_qsl(u.query):
        if "," in value or "," in key:
            raise FeastError(f"online store URL option {key}={value!r}: Feast's connection string cannot hold commas")
        parts.append(f"{key}={value}")
    return ",".join(parts)


def project_name() -> str:
    return os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT


def feast_env(home: Home, redis_url: str) -> dict[str, str]:
    return {"VITRINE_HOME": str(home.root), PROJECT_ENV: project_name(),
            "VITRINE_FEAST_REDIS": feast_connection_string(redis_url)}


def feast_exports(home: Home, redis_url: str) -> str:
    """`export ...` lines (`eval "$(vitrine feast env)"`) after which plain Feast works on the
    home from the repository root: `feast -c feature_repo -f feature_store.yaml apply` (or
    `cd feature_repo && feast apply`: its `feature_store.yaml` links to the root one), `feast ui`,
    and `FeatureStore(repo_path="feature_repo")` in a notebook."""
    import shlex

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in feast_env(home, redis_url).items())


def run_feast(home: Home, redis_url: str, args: Sequence[str], check: bool = True,
              capture: bool = False, repo: Path = FEATURE_REPO) -> subprocess.CompletedProcess:
    """`feast -c feature_repo -f feature_store.yaml ARGS` with the home's environment (`repo`:
    another definitions folder, e.g. a copy with a team's new views)."""
    home.feast.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **feast_env(home, redis_url)}
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast), "-c", str(repo), "-f", str(FEATURE_STORE_YAML), *args]
    result = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "")[-3000:] if capture else ""
        raise FeastError(f"`feast {' '.join(args)}` failed (exit {result.returncode}) {detail}")
    return result


def feature_store(home: Home, redis_url: str):
    """A FeatureStore on the home's registry and online store (built in code, no yaml)."""
    from feast import FeatureStore, RepoConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.repo_config import RegistryConfig

    registry = home.feast / "registry.db"
    if not registry.exists():
        raise FeastError(f"no Feast registry in {home.feast}: run `vitrine features` (or `vitrine feast apply`)")
    config = RepoConfig(
        project=project_name(), provider="local",
        registry=RegistryConfig(path=str(registry), cache_ttl_seconds=60),
        online_store=RedisOnlineStoreConfig(connection_string=feast_connection_string(redis_url)),
        offline_store="file", entity_key_serialization_version=3, repo_path=FEATURE_REPO,
    )
    return FeatureStore(repo_path=str(FEATURE_REPO), config=config)
