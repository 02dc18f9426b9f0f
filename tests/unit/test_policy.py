"""The serving policy: round trip, validation, and how serving applies its stage switches."""

from __future__ import annotations

import pytest

from vitrine.policy import Policy


def test_policy_round_trips_and_rejects_bad_values(tmp_path):
    p = Policy(route_weights={"hot": 0.5, "item_cf": 1.0}, coarse=False, fine_weight=0.25, reasons={"coarse": "lost"},
               warnings=("loses to popularity",))
    p.save(tmp_path)
    assert Policy.load(tmp_path) == p
    assert "coarse off" in p.describe() and "item_cf 1.00" in p.describe()
    assert "fine on (0.25 of the score)" in p.describe()
    with pytest.raises(ValueError, match=r"a number in \[0, 1\]"):
        Policy(coarse_weight=1.5)
    with pytest.raises(ValueError, match="weights must be numbers"):
        Policy(route_weights={"hot": -1.0})
    with pytest.raises(ValueError, match="unknown policy fields"):
        Policy.from_dict({"route_weight": {}})


def test_default_policy_changes_nothing():
    p = Policy()
    assert p.coarse and p.fine and p.diversity and not p.route_weights
    assert p.coarse_weight == p.fine_weight == 1.0
