"""The command registry: each command module registers its commands (`@command`) when
`app.cli` imports it. Heavy libraries load inside the commands that use them, so
`vitrine --help` stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vitrine.config import Home

PRESET_NAMES = ("tiny", "demo", "catalogue", "platform")  # vitrine.synth.presets (not imported: keeps --help fast)

Handler = Callable[[argparse.Namespace, Home], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (help_text, configure, fn)
        return fn
    return register
