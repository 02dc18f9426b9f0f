"""Encoding primitives: quantile buckets equal a per-column searchsorted, on the small (one
request, broadcast comparison) and the large (item table, per column) path alike."""

import numpy as np

from ranking.encoding import SLOTS, NumericStats, signed_log


def _by_searchsorted(stats: NumericStats, x: np.ndarray, columns=None) -> np.ndarray:
    t = signed_log(x)
    out = np.empty(t.shape, dtype=np.int64)
    for i, j in enumerate(range(len(stats.edges)) if columns is None else columns):
        b = np.searchsorted(np.asarray(stats.edges[j], dtype=np.float64), t[:, i], side="right") + 1
        out[:, i] = j * SLOTS + np.where(np.isnan(t[:, i]), 0, b)
    return out


def test_buckets_equal_searchsorted_for_one_row_a_request_and_a_table():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(20_000, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values → bucket 0
    x[:, 3] = 7.0  # a constant column: one edge
    stats = NumericStats.fit(x)
    stats = NumericStats(stats.mean, stats.std, [*stats.edges[:5], []])  # a column never seen: no edges
    x[:3, 0] = [np.inf, -np.inf, np.expm1(stats.edges[0][4])]  # extremes, and a value on an edge (log scale)
    for rows in (x[:1], x[:150], x):
        assert np.array_equal(stats.buckets(rows), _by_searchsorted(stats, rows))
    assert np.array_equal(stats.buckets(x[:10, [1, 4]], [1, 4]), _by_searchsorted(stats, x[:10, [1, 4]], [1, 4]))
    assert stats.buckets(x[:1])[0, 5] == 5 * SLOTS + 1 and stats.buckets(np.full((1, 6), np.nan))[0, 5] == 5 * SLOTS


def test_one_users_numerics_equal_the_frame_path():
    """A request's user (one row, values one by one) encodes as that user's row in a frame."""
    from ranking.features import TeacherEncoder
    from tests.unit.ranking_synthetic import layout, synthetic_frame

    frame = synthetic_frame(300, seed=5)
    lay = layout()
    enc = TeacherEncoder.fit(frame, lay)
    frame.loc[frame.index[:5], lay.user_numeric[0]] = np.nan  # missing values
    frame.loc[frame.index[5], lay.user_known["user_behaviour_known"]] = None  # a user without a segment
    frame.loc[frame.index[6], lay.user_known["user_preferences_known"]] = None  # ... without preferences
    whole = enc._user_raw(frame, len(frame))
    assert whole[5, -2] == 0.0 and whole[6, -1] == 0.0 and whole[7, -2:].tolist() == [1.0, 1.0]
    for i in range(8):
        one = {c: [frame[c].iloc[i]] for c in frame}
        assert np.array_equal(enc._user_raw(one, 1)[0], whole[i], equal_nan=True), i
    assert enc._user_raw({}, 1).tolist()[0][-2:] == [0.0, 0.0]  # a new user: nothing known


def test_value_codes_match_exactly_when_the_strings_do():
    from ranking.encoding import as_strings, value_code, value_codes

    values = as_strings(np.array(["a", "b", None, "a", "7", 7, 7.0, "", "b "], dtype=object), 9)
    codes = value_codes(values)
    assert codes.dtype == np.uint64 and codes[2] == 0 and (np.delete(codes, 2) != 0).all()
    same = values[:, None] == values[None, :]
    assert ((codes[:, None] == codes[None, :]) == same).all()  # "7", 7 and 7.0 are one value, as strings
    assert [value_code(v) for v in values] == codes.tolist()
