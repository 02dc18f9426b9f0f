"""Nothing loaded from disk or the network is unpickled or evaluated: models are SavedModels or
plain arrays/JSON with a manifest. The test walks every module of the project (tests and
benchmarks included) and fails on a pickle-family import, `eval`/`exec`, an unsafe YAML load,
`pandas.read_pickle`, or `numpy.load` with `allow_pickle=True`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "evaluation", "serving", "training", "spark_jobs", "retrieval", "ranking", "vitrine",
            "feature_repo", "benchmarks", "tests", "scripts")
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
BANNED_CALLS = {"eval", "exec", "read_pickle", "unsafe_load", "full_load"}


def _problems(path: Path, root: Path = ROOT) -> list[str]:
    out = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in BANNED_MODULES:
            out.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in BANNED_CALLS:
                out.append(f"{where} calls {name}")
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "yaml":
                if not any(k.arg == "Loader" and "Safe" in ast.unparse(k.value) for k in node.keywords):
                    out.append(f"{where} calls yaml.load without a SafeLoader")
            for k in node.keywords:
                if k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                    out.append(f"{where} passes allow_pickle={ast.unparse(k.value)}")
    return out


def test_no_pickle_eval_or_unsafe_yaml_anywhere():
    files = [p for package in PACKAGES if (ROOT / package).exists() for p in sorted((ROOT / package).rglob("*.py"))
             if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))]
    assert len(files) > 100
    problems = [p for path in files for p in _problems(path)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport numpy as np\nimport yaml\neval('1')\nnp.load('x', allow_pickle=True)\n"
                   "yaml.load(open('c'))\nyaml.load(open('c'), Loader=yaml.SafeLoader)\n")
    found = _problems(bad, tmp_path)
    assert [f.split(" ", 1)[1] for f in found] == [
        "imports pickle", "calls eval", "passes allow_pickle=True", "calls yaml.load without a SafeLoader"]
