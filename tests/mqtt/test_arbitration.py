"""Multi-room arbitration rules (pure logic, no broker)."""

from __future__ import annotations

import math

import pytest

from hearth.server.mqtt.arbitration import Arbiter, Candidate, Joined, Late, Opened, pick_winner


def cand(sat: str, score: float, energy: float | None = None, at: float = 0.0, sid: str | None = None) -> Candidate:
    return Candidate(sat, sid or f"{sat}-session", score, energy, at)


def test_highest_score_wins() -> None:
    decision = pick_winner([cand("hall", 0.7), cand("kitchen", 0.95), cand("office", 0.8)])
    assert decision.winner.satellite_id == "kitchen"
    assert [c.satellite_id for c in decision.losers] == ["office", "hall"]


def test_a_tie_goes_to_the_louder_wake_word() -> None:
    decision = pick_winner([cand("hall", 0.9, -30.0), cand("kitchen", 0.9, -18.5)])
    assert decision.winner.satellite_id == "kitchen"


def test_missing_energy_counts_as_quietest() -> None:
    assert pick_winner([cand("hall", 0.9, None), cand("kitchen", 0.9, -60.0)]).winner.satellite_id == "kitchen"


@pytest.mark.parametrize("score", [1e308, math.inf, -math.inf, math.nan, 1.0001, -0.1])
def test_a_score_outside_0_to_1_never_takes_part(score: float) -> None:
    with pytest.raises(ValueError, match="wake score"):
        cand("cheat", score)


@pytest.mark.parametrize("energy", [1e308, math.inf, -math.inf, math.nan, 0.5])
def test_an_energy_that_is_not_finite_dbfs_never_takes_part(energy: float) -> None:
    with pytest.raises(ValueError, match="energy"):
        cand("cheat", 0.9, energy)
    assert cand("quiet", 0.9, -1e300).energy == -1e300  # merely very quiet is fine


def test_full_tie_goes_to_the_earlier_then_to_the_smaller_id() -> None:
    assert pick_winner([cand("b", 0.9, -20, at=0.05), cand("a", 0.9, -20, at=0.01)]).winner.satellite_id == "a"
    assert pick_winner([cand("b", 0.9, -20, at=0.02), cand("a", 0.9, -20, at=0.01)]).winner.satellite_id == "a"
    assert pick_winner([cand("b", 0.9, -20), cand("a", 0.9, -20)]).winner.satellite_id == "a"


def test_no_candidates_is_a_bug() -> None:
    with pytest.raises(ValueError):
        pick_winner([])


def test_round_collects_candidates_within_the_window() -> None:
    arbiter = Arbiter(window_s=0.2)
    assert arbiter.offer(cand("hall", 0.7, at=10.0)) == Opened(deadline=pytest.approx(10.2))
    assert isinstance(arbiter.offer(cand("kitchen", 0.9, at=10.15)), Joined)
    assert arbiter.resolve(10.19) is None  # not yet
    decision = arbiter.resolve(10.2)
    assert decision is not None and decision.winner.satellite_id == "kitchen"
    assert [c.satellite_id for c in decision.losers] == ["hall"]
    assert arbiter.deadline is None and arbiter.resolve(11.0) is None


def test_late_candidate_loses_to_the_winner_without_a_new_round() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.9, at=0.0))
    arbiter.resolve(0.2)
    offer = arbiter.offer(cand("hall", 0.99, at=0.35))  # a slow satellite, same utterance
    assert isinstance(offer, Late) and offer.winner.satellite_id == "kitchen"
    assert arbiter.deadline is None


def test_a_later_candidate_opens_a_new_round() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.9, at=0.0))
    arbiter.resolve(0.2)
    assert isinstance(arbiter.offer(cand("hall", 0.5, at=0.45)), Opened)  # someone else, another room


def test_the_same_satellite_is_never_late_to_itself() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.9, at=0.0, sid="s1"))
    arbiter.resolve(0.2)
    assert isinstance(arbiter.offer(cand("kitchen", 0.9, at=0.3, sid="s2")), Opened)


def test_a_winner_that_ended_does_not_make_others_late() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.9, at=0.0, sid="s1"))
    arbiter.resolve(0.2)
    arbiter.ended("s1")
    assert isinstance(arbiter.offer(cand("hall", 0.5, at=0.3)), Opened)


def test_a_newer_candidate_replaces_the_same_satellites_older_one() -> None:
    arbiter = Arbiter(window_s=0.2)
    first = cand("kitchen", 0.9, at=0.0, sid="s1")
    arbiter.offer(first)
    offer = arbiter.offer(cand("kitchen", 0.6, at=0.1, sid="s2"))
    assert isinstance(offer, Joined) and offer.replaced == first
    assert [c.session_id for c in arbiter.pending] == ["s2"]


def test_withdrawn_candidates_cannot_win() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.95, at=0.0, sid="k"))
    arbiter.offer(cand("hall", 0.6, at=0.05, sid="h"))
    assert arbiter.withdraw("k") is not None
    assert arbiter.withdraw("k") is None
    decision = arbiter.resolve(0.2)
    assert decision is not None and decision.winner.session_id == "h" and decision.losers == ()


def test_withdrawing_the_only_candidate_closes_the_round() -> None:
    arbiter = Arbiter(window_s=0.2)
    arbiter.offer(cand("kitchen", 0.95, at=0.0, sid="k"))
    arbiter.withdraw("k")
    assert arbiter.deadline is None and arbiter.resolve(1.0) is None


def test_zero_window_decides_each_candidate_alone() -> None:
    arbiter = Arbiter(window_s=0.0)
    assert arbiter.offer(cand("kitchen", 0.9, at=5.0)) == Opened(deadline=5.0)
    decision = arbiter.resolve(5.0)
    assert decision is not None and decision.losers == ()
