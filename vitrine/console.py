"""A clean console: long commands send what libraries write to stderr (the JVM's log4j
lines, TensorFlow's C++ and Python warnings, Feast's INFO lines) to `<home>/logs/<command>.log`
instead, at the file-descriptor level so output from native code is caught too. Vitrine's own
progress and results go to stdout; an error is printed to the real stderr after it is restored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VERBOSE_ENV = "VITRINE_VERBOSE"  # set to 1 to keep library output on the console


@contextmanager
def library_output_to(path: Path) -> Iterator[Path | None]:
    if os.environ.get(VERBOSE_ENV) == "1":
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield path
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
