"""`vitrine recommend`: the serving core in process, for one user or a file of users."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from serving.config import ServingConfig
from serving.core import Core
from serving.validation import recommend_request
from vitrine.config import Home


def recommend_one(home: Home, config: ServingConfig, user_id: str, k: int, *, as_json: bool = False) -> str:
    core = Core(home, config)
    try:
        rec = core.recommend(recommend_request(config, user_id=user_id, k=k))
    finally:
        core.close()
    if as_json:
        return json.dumps(rec.to_dict(), indent=2)
    head = (f"user {user_id} · bucket {rec.ab_bucket} · models {rec.model_version}"
            + (f" · DEGRADED ({rec.degraded_reason})" if rec.degraded else ""))
    lines = [head, f"{'rank':>4}  {'item':<14}{'score':>10}{'pCTR':>8}{'pCVR':>8}  routes"]
    for rank, item in enumerate(rec.items, 1):
        lines.append(f"{rank:>4}  {item.item_id:<14}{item.score:>10.4f}{item.p_ctr:>8.3f}{item.p_cvr:>8.3f}  "
                     + ",".join(item.routes))
    return "\n".join(lines)


def recommend_batch(home: Home, config: ServingConfig, users_file: Path, k: int, out: Path) -> str:
    """A CSV `user_id,rank,item_id,score` for every user id in `users_file` (one per line;
    blank lines skipped). Seen and bought items are excluded; unknown users get hot/new items."""
    users = [line.strip() for line in Path(users_file).read_text().splitlines() if line.strip()]
    if not users:
        raise ValueError(f"{users_file} holds no user ids (one per line expected)")
    core = Core(home, config)
    degraded, t0 = 0, time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["user_id", "rank", "item_id", "score"])
            for user in users:
                rec = core.recommend(recommend_request(config, user_id=user, k=k), timeout_s=10.0)
                degraded += rec.degraded
                for rank, item in enumerate(rec.items, 1):
                    writer.writerow([user, rank, item.item_id, f"{item.score:.6g}"])
    finally:
        core.close()
    seconds = time.perf_counter() - t0
    return (f"{len(users):,} users → {out} ({seconds:.1f}s, {len(users) / seconds:.0f} users/s; "
            f"{degraded:,} degraded answers)")
