"""The console script: fast help listing every command, docs in step with the contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.cli import build_parser, main
from vitrine.data.schemas import render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_command_without_loading_heavy_libraries():
    code = ("import sys; from app.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('pandas', 'pyarrow', 'tensorflow', 'pyspark', 'feast', 'redis') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("generate", "ingest", "redis", "schema", "demo"):
        assert f"    {name} " in out
    assert "HEAVY []" in out


def test_docs_data_md_is_rendered_from_the_schemas():
    assert (ROOT / "docs" / "data.md").read_text().strip() == render_markdown().strip()


def test_generate_then_ingest_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VITRINE_HOME", raising=False)
    data, home = tmp_path / "data", tmp_path / "home"
    assert main(["generate", "--preset", "tiny", "--days", "1", "--out", str(data), "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    assert generated["days"] == 1 and generated["events"]["impression"] > 0
    assert main(["--home", str(home), "ingest", "--events", str(data / "events"),
                 "--items", str(data / "items.parquet"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tables"]["events"]["accepted"] == generated["total_events"]
    assert report["home"] == str(home)


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "ingest", "--events", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_every_command_has_a_description():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert all(choice.description for choice in sub.choices.values())


def test_cli_preset_names_match_the_presets():
    from app.registry import PRESET_NAMES
    from vitrine.synth.presets import PRESETS

    assert set(PRESET_NAMES) == set(PRESETS)
