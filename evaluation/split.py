"""Time splits for the pipeline evaluation: a validation cut to tune on and a test cut to
report on, never the other way round.

`global` (the default): one time for everyone. The test cut is the time before which `1 -
fraction` of the log's positive events happened (the last `fraction` of engagement is held
out); the validation cut splits the part before it the same way. Everything a cut trains
on happened strictly before it, so features, relation tables and models built on its
training log cannot see the future — of this user or of anyone else.

`user`: each user's last `fraction` of positive events (at least one) is held out; their
events from the first held-out one on are removed from the training log. Other users' later
behaviour stays in training (the usual leave-last-out protocol); the global split is the one
without that leak, which is why it is the default.

Held-out items are those a user engaged with (click, cart, purchase) in the held-out part and
never before it, as in every evaluation here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from vitrine.errors import VitrineError

POSITIVE_TYPES = ("click", "add_to_cart", "purchase")
SPLITS = ("global", "user")


@dataclass
class Cut:
    name: str  # "validation" or "test"
    split: str  # "global" or "user"
    events: pd.DataFrame  # the training log: every event (all types) the cut may learn from
    held_out: dict[str, set[str]]  # user → items engaged with after the cut, new to the user
    time: datetime | None  # the global cut (None for per-user cuts)

    @property
    def end(self) -> datetime:
        """The last training event."""
        return self.events["event_time"].max().to_pydatetime()

    def describe(self) -> str:
        when = f"at {self.time:%Y-%m-%d %H:%M}" if self.time is not None else "per user"
        return (f"{self.name} cut ({self.split}, {when}): {len(self.events):,} training events, "
                f"{len(self.held_out):,} users with {sum(map(len, self.held_out.values())):,} held-out items")


def _held_out(train_pos: pd.DataFrame, after_pos: pd.DataFrame) -> dict[str, set[str]]:
    known = set(zip(train_pos["user_id"], train_pos["item_id"], strict=True))
    out: dict[str, set[str]] = {}
    for user, item in zip(after_pos["user_id"], after_pos["item_id"], strict=True):
        if (user, item) not in known:
            out.setdefault(user, set()).add(item)
    return out


def global_cut(events: pd.DataFrame, fraction: float, name: str, upto: datetime | None = None) -> Cut:
    """Train on events before the (1 - fraction) quantile of positive-event times, hold out the
    positives from there up to `upto` (exclusive; the log's end when None)."""
    window = events if upto is None else events[events["event_time"] < pd.Timestamp(upto)]
    pos_times = window.loc[window["event_type"].isin(POSITIVE_TYPES), "event_time"]
    cut = pos_times.quantile(1 - fraction)  # by events, not by span: one stray early event moves nothing
    train = window[window["event_time"] < cut]
    if train.empty:
        raise VitrineError(f"nothing before the {name} cut {cut}: the log is too short to split")
    pos = window[window["event_type"].isin(POSITIVE_TYPES)]
    before, after = pos[pos["event_time"] < cut], pos[pos["event_time"] >= cut]
    return Cut(name, "global", train.reset_index(drop=True), _held_out(before, after), cut.to_pydatetime())


def user_cut(events: pd.DataFrame, fraction: float, name: str) -> Cut:
    """Each user's last `fraction` of positives (at least one; users with a single positive
    keep it for training) held out, with every later event of theirs."""
    pos = events[events["event_type"].isin(POSITIVE_TYPES)].sort_values(["user_id", "event_time"], kind="stable")
    counts = pos.groupby("user_id").size()
    n_out = np.maximum(1, np.floor(counts * fraction)).astype(int)
    n_out[counts < 2] = 0
    rank_from_end = pos.groupby("user_id").cumcount(ascending=False)
    held = pos[rank_from_end.to_numpy() < n_out.reindex(pos["user_id"]).to_numpy()]
    starts = held.groupby("user_id")["event_time"].min()
    start = events["user_id"].map(starts)
    train = events[start.isna() | (events["event_time"] < start)]
    if train.empty:
        raise VitrineError("no training events left after the per-user split")
    train_pos = train[train["event_type"].isin(POSITIVE_TYPES)]
    return Cut(name, "user", train.reset_index(drop=True), _held_out(train_pos, held), None)


def cuts(events: pd.DataFrame, split: str = "global", fraction: float = 0.2) -> tuple[Cut, Cut]:
    """(validation, test): the validation cut splits the test cut's training log the same way."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not 0 < fraction < 1:
        raise ValueError("the held-out fraction must be in (0, 1)")
    if split == "global":
        test = global_cut(events, fraction, "test")
        return global_cut(test.events, fraction, "validation"), test
    test = user_cut(events, fraction, "test")
    return user_cut(test.events, fraction, "validation"), test
