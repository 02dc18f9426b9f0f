"""Generate the Python gRPC stubs from `recommender.proto` (grpc_tools.protoc).

Run by `scripts/setup.sh` (`python -m serving.proto.build`) and lazily by `serving.proto`
when the generated modules are missing or older than the .proto, so a fresh clone works
either way. Files are generated in a temporary directory and renamed into place, so a
concurrent importer never sees half a module. The generated modules are not committed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path(__file__).resolve().parent / "vitrine" / "v1" / "recommender.proto"
OUTPUTS = tuple(PROTO.with_name(PROTO.stem + suffix) for suffix in ("_pb2.py", "_pb2_grpc.py"))


def stale() -> bool:
    mtime = PROTO.stat().st_mtime
    return any(not p.exists() or p.stat().st_mtime < mtime for p in OUTPUTS)


def build(force: bool = False) -> list[Path]:
    """Generate the stubs when missing or stale (always with `force`); returns their paths."""
    if not force and not stale():
        return list(OUTPUTS)
    from grpc_tools import protoc

    include = Path(protoc.__file__).resolve().parent / "_proto"
    rel = PROTO.relative_to(ROOT)
    with tempfile.TemporaryDirectory(prefix="vitrine-protoc-") as tmp:
        # the include root is the repository, so the generated modules import each other as
        # `serving.proto.vitrine.v1...` (the proto package stays `vitrine.v1`)
        code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={tmp}",
                            f"--grpc_python_out={tmp}", str(rel)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
        for out in OUTPUTS:
            generated = Path(tmp) / rel.parent / out.name
            staged = out.with_name(f".{out.name}.{os.getpid()}")
            shutil.copyfile(generated, staged)
            os.replace(staged, out)
    return list(OUTPUTS)


if __name__ == "__main__":
    for path in build(force="--force" in sys.argv):
        print(path.relative_to(ROOT))
