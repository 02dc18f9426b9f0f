"""Feature tables are swapped in whole: the rename dance of `spark_jobs.io` and its recovery."""

from __future__ import annotations

from spark_jobs.io import publish_dir, recover_tables


def table(path, *parts):
    path.mkdir(parents=True)
    for p in parts:
        (path / p).write_text(p)
    return path


def test_a_complete_table_replaces_the_old_one(tmp_path):
    live = table(tmp_path / "item_stats", "old.parquet")
    publish_dir(table(tmp_path / ".staging-item_stats-1", "new.parquet", "_SUCCESS"), live)
    assert sorted(p.name for p in live.iterdir()) == ["_SUCCESS", "new.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item_stats"]  # nothing left beside it


def test_recovery_after_a_kill_at_every_step(tmp_path):
    # killed while Spark wrote: a half-written staging directory, the old table untouched
    table(tmp_path / "user_profile", "old.parquet")
    table(tmp_path / ".staging-user_profile-2", "part-0.parquet")
    # killed between the two renames: the old table aside, the new one not yet in place
    table(tmp_path / ".old-item_stats-3", "old.parquet")
    table(tmp_path / ".staging-item_stats-4", "new.parquet", "_SUCCESS")
    # killed after the swap, before the old one was removed
    table(tmp_path / "samples", "new.parquet")
    table(tmp_path / ".old-samples-5", "old.parquet")
    assert recover_tables(tmp_path) == ["item_stats"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item_stats", "samples", "user_profile"]
    assert [p.name for p in (tmp_path / "item_stats").iterdir()] == ["old.parquet"]  # the old, whole
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["new.parquet"]
    assert recover_tables(tmp_path / "missing") == []
