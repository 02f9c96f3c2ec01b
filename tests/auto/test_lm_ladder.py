"""The language-model search's decisions (jaxzip/auto/_lm_ladder.py), on a hand-worked ladder."""

from jaxzip.auto._lm_ladder import Ladder, hull_moves

CHOICES = [(8, 0.0), (4, 0.0), (2, 0.0)]
# solo (bytes, increase) per choice; base 1.0, so increases are relative
POINTS = {"a": [(100, 0.0), (50, 0.01), (25, 0.10)], "b": [(100, 0.0), (50, 0.02), (25, 0.05)]}


def ladder(max_increase: float = 0.05) -> Ladder:
    return Ladder(["a", "b"], CHOICES, POINTS, 0.0, 1.0, max_increase)


def rec(step, relative, predicted, nbytes, feasible):
    return {
        "step": step,
        "relative": relative,
        "predicted": predicted,
        "bytes": nbytes,
        "feasible": feasible,
    }


def good(cands):
    return lambda m: cands[m]["feasible"]


def test_hull_moves_skip_points_above_the_lower_hull():
    # a: 0 -> 1 (slope 0.01/50), then 1 -> 2 (0.09/25); 0 -> 2 directly is steeper than 0 -> 1
    assert hull_moves(POINTS["a"]) == [(0.01 / 50, 0, 1), ((0.10 - 0.01) / (50 - 25), 1, 2)]
    # a point that is worse in both coordinates is never on the hull
    assert hull_moves([(100, 0.0), (80, 0.3), (50, 0.1)]) == [(0.1 / 50, 0, 2)]


def test_steps_are_ordered_by_increase_per_byte_and_configs_follow_them():
    lad = ladder()
    # a0 (0.0002), b0 (0.0004), b1 (0.0012), a1 (0.0036)
    assert [(s[1], s[3], s[4]) for s in lad.steps] == [(0, 0, 1), (1, 0, 1), (1, 1, 2), (0, 1, 2)]
    assert lad.config(()) == {"a": (8, 0.0), "b": (8, 0.0)}
    assert lad.config((0, 1, 2)) == {"a": (4, 0.0), "b": (2, 0.0)}
    predicted = [round(lad.predicted(range(k)), 6) for k in range(len(lad) + 1)]
    assert predicted == [0.0, 0.01, 0.03, 0.06, 0.15]


def test_next_step_bisects_the_rungs_with_the_measured_ratio():
    lad, cands = ladder(), {}
    assert lad.next_step(cands, good(cands)) == 2  # the largest rung predicted within 0.05
    cands[(0, 1)] = rec(2, 0.04, 0.03, 150, True)
    # measured / predicted = 4/3: rung 3 is predicted at 0.08, over, but the interval
    # (2, 5) still holds an untried rung, the next one
    assert lad.next_step(cands, good(cands)) == 3
    cands[(0, 1, 2)] = rec(3, 0.07, 0.06, 125, False)
    assert lad.next_step(cands, good(cands)) is None  # feasible 2 and infeasible 3 are adjacent


def test_next_fill_extends_the_best_by_its_own_ratio_and_after_fill_backs_off():
    lad, cands = ladder(), {(0, 1): rec(2, 0.015, 0.03, 150, True)}
    # ratio 0.5: b's step 1 -> 2 fits (0.06 * 0.5), a's 1 -> 2 does not (0.15 * 0.5)
    assert lad.next_fill(cands, good(cands)) == (0, 1, 2)
    assert lad.extras == (2,) and lad.fill_label((0, 1, 2)) == "3+0"
    lad.after_fill(False)  # a single extra step over the bound is blocked
    assert lad.blocked == {2} and lad.limit is None
    assert lad.next_fill(cands, good(cands)) is None
    lad.extras = (2, 3)
    lad.after_fill(False)  # more than one: half of them next time
    assert lad.limit == 1
    lad.after_fill(True)
    assert lad.limit is None
    assert lad.fill_label((0, 1, 3)) == "2+1"


def test_next_fill_backs_off_from_fills_already_measured_over_the_bound():
    # rung 1 feasible (ratio 0.5); rungs 2 and 3, which the fills from it would be, were
    # measured over the bound by the step search: the fill halves to rung 2, blocks its
    # step (b 0 -> 1, so b's later step too) and proposes a's 1 -> 2 instead
    lad = ladder()
    cands = {
        (0,): rec(1, 0.005, 0.01, 175, True),
        (0, 1): rec(2, 0.06, 0.03, 150, False),
        (0, 1, 2): rec(3, 0.09, 0.06, 125, False),
    }
    assert lad.next_fill(cands, good(cands)) == (0, 3)
    assert lad.blocked == {1} and lad.extras == (3,)
    cands[(0, 3)] = rec("1+1", 0.06, 0.10, 150, False)
    lad.after_fill(False)
    assert lad.blocked == {1, 3} and lad.next_fill(cands, good(cands)) is None
