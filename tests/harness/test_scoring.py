"""Unit tests for harness.scoring on hand-made per-image tables with hand-computed scores."""

from __future__ import annotations

import random

import pytest

from harness.scoring import (
    Matrix,
    ScoreRow,
    accuracy_matrix,
    hit_matrix,
    score,
    summarize_problems,
)
from harness.table import AttackImageRow, PredictionRow, RunRow

# Three images: (id, TrueLabel, TargetClass)
IMAGES = [("i1", 1, 7), ("i2", 2, 8), ("i3", 3, 9)]
TRUE = {i: t for i, t, _ in IMAGES}
TARGET = {i: g for i, _, g in IMAGES}
KIND = {"a1": "attack", "a2": "attack", "t1": "targeted_attack"}

# predictions[defense][column] = labels for i1, i2, i3  (column "clean" or an attack)
PREDS = {
    "dA": {"clean": (1, 2, 3), "a1": (1, 5, 3), "a2": (1, 2, 3), "t1": (7, 2, 3)},
    "dB": {"clean": (1, 0, 3), "a1": (4, 6, 3), "a2": (1, 2, 0), "t1": (7, 8, 3)},
}


def pred(defense, attack, image, label, *, eps=16, problem=""):
    kind = "clean" if attack == "" else KIND.get(attack, "attack")
    return PredictionRow(epsilon=None if attack == "" else eps, attack=attack, attack_type=kind,
                         defense=defense, image_id=image, true_label=TRUE[image], target_class=TARGET[image],
                         prediction=label, problem=problem)


def table(preds=PREDS, eps=16):
    rows = []
    for defense, columns in preds.items():
        for column, labels in columns.items():
            for (image, _, _), label in zip(IMAGES, labels):
                rows.append(pred(defense, "" if column == "clean" else column, image, label, eps=eps))
    return rows


def referee_rows(eps=16, problems=None):
    problems = problems or {}
    return [AttackImageRow(epsilon=eps, attack=a, attack_type=KIND[a], image_id=i, problem=problems.get((a, i), ""),
                           clipped_values=0, max_violation=0, linf=eps)
            for a in ("a1", "a2", "t1") for i, _, _ in IMAGES]


def run(kind, name, eps, seconds, problem="", exit_code=0):
    return RunRow(kind=kind, name=name, epsilon=eps, batch="b", images=3, exit_code=exit_code, timed_out=False,
                  seconds=seconds, problem=problem, log="")


RUNS = [run("attack", "a1", 16, 1.25), run("attack", "a1", 16, 2.5), run("attack", "a2", 16, 0.5),
        run("targeted_attack", "t1", 16, 4.0), run("defense", "dA", None, 10.0), run("defense", "dA", None, 0.5),
        run("defense", "dB", None, 7.0)]


def by_name(rows):
    return {(r.track, r.name): r for r in rows}


# -- the hand-computed fixture ----------------------------------------------------------------------

def test_full_leaderboard_hand_computed():
    rows = score(table(), referee_rows(), RUNS)
    # Order: defense track, then attack, then targeted_attack, each by rank.
    assert [(r.epsilon, r.track, r.rank, r.name) for r in rows] == [
        (16, "defense", 1, "dA"), (16, "defense", 2, "dB"),
        (16, "attack", 1, "a1"), (16, "attack", 2, "a2"),
        (16, "targeted_attack", 1, "t1"),
    ]
    s = by_name(rows)
    # dA correct: a1 2 (i1, i3), a2 3, t1 2 (i2, i3) → 7 of 9; right under every attack only on i3.
    assert s["defense", "dA"] == ScoreRow(epsilon=16, track="defense", rank=1, name="dA", raw=7,
                                          normalized=pytest.approx(7 / 9), all_or_nothing=pytest.approx(1 / 3),
                                          clean_accuracy=1.0, images=3, failed_runs=0, failed_images=0,
                                          failures="", seconds=10.5)
    # dB correct: a1 1 (i3), a2 2 (i1, i2), t1 1 (i3) → 4 of 9; no image right everywhere; clean 2/3.
    assert s["defense", "dB"] == ScoreRow(epsilon=16, track="defense", rank=2, name="dB", raw=4,
                                          normalized=pytest.approx(4 / 9), all_or_nothing=0.0,
                                          clean_accuracy=pytest.approx(2 / 3), images=3, failed_runs=0,
                                          failed_images=0, failures="", seconds=7.0)
    # a1 errors: dA 1 (i2) + dB 2 (i1, i2) = 3 of 6; fools both defenses on i2 only.
    assert s["attack", "a1"] == ScoreRow(epsilon=16, track="attack", rank=1, name="a1", raw=3, normalized=0.5,
                                         all_or_nothing=pytest.approx(1 / 3), clean_accuracy=None, images=3,
                                         failed_runs=0, failed_images=0, failures="", seconds=3.75)
    # a2 errors: dB on i3 = 1 of 6; never fools both.
    assert s["attack", "a2"] == ScoreRow(epsilon=16, track="attack", rank=2, name="a2", raw=1,
                                         normalized=pytest.approx(1 / 6), all_or_nothing=0.0, clean_accuracy=None,
                                         images=3, failed_runs=0, failed_images=0, failures="", seconds=0.5)
    # t1 hits: dA 1 (i1) + dB 2 (i1, i2) = 3 of 6; both hit on i1.
    assert s["targeted_attack", "t1"] == ScoreRow(epsilon=16, track="targeted_attack", rank=1, name="t1", raw=3,
                                                  normalized=0.5, all_or_nothing=pytest.approx(1 / 3),
                                                  clean_accuracy=None, images=3, failed_runs=0, failed_images=0,
                                                  failures="", seconds=4.0)


def test_raw_scores_equal_nips17_final_round_formulas():
    # Per-cell counts written out by hand from PREDS.
    acc = {("dA", "a1"): 2, ("dA", "a2"): 3, ("dA", "t1"): 2, ("dB", "a1"): 1, ("dB", "a2"): 2, ("dB", "t1"): 1}
    err = {cell: 3 - n for cell, n in acc.items()}
    hit = {("dA", "t1"): 1, ("dB", "t1"): 2}
    s = by_name(score(table(), referee_rows(), RUNS))
    for d in ("dA", "dB"):
        assert s["defense", d].raw == sum(acc[d, a] for a in ("a1", "a2", "t1"))
    for a in ("a1", "a2"):
        assert s["attack", a].raw == sum(err[d, a] for d in ("dA", "dB"))
    assert s["targeted_attack", "t1"].raw == sum(hit[d, "t1"] for d in ("dA", "dB"))
    # normalized = raw / (images × opponents)
    assert s["defense", "dA"].normalized == pytest.approx(7 / (3 * 3))
    assert s["attack", "a1"].normalized == pytest.approx(3 / (3 * 2))


def test_result_is_independent_of_row_order():
    rows = table()
    shuffled = rows[:]
    random.Random(5).shuffle(shuffled)
    refs = referee_rows()[::-1]
    assert score(shuffled, refs, RUNS[::-1]) == score(rows, referee_rows(), RUNS)


# -- no prediction ----------------------------------------------------------------------------------

def test_no_prediction_is_wrong_for_defense_and_neutral_for_attack():
    rows = [
        pred("d", "a1", "i1", None, problem="missing row"), pred("d", "a1", "i2", 0),
        pred("d", "t1", "i1", None, problem=""), pred("d", "t1", "i2", 8),
        pred("d", "", "i1", 1), pred("d", "", "i2", 2),
    ]
    s = by_name(score(rows, [], []))
    d = s["defense", "d"]
    assert (d.raw, d.normalized, d.all_or_nothing, d.clean_accuracy) == (0, 0.0, 0.0, 1.0)
    assert (d.failed_images, d.failures) == (2, "1 image: missing row; 1 image: no prediction")
    a = s["attack", "a1"]  # only i2 answered, and it was an error
    assert (a.raw, a.normalized, a.all_or_nothing) == (1, 1.0, 0.5)
    t = s["targeted_attack", "t1"]  # only i2 answered, and it was a hit
    assert (t.raw, t.normalized, t.all_or_nothing) == (1, 1.0, 0.5)


def test_only_missing_predictions():
    # a prediction of None must not count as correct, as a hit, nor as an error
    rows = [pred("d", "t1", "i1", None, problem="missing row")]
    s = by_name(score(rows, [], []))
    assert s["defense", "d"].raw == 0
    assert s["targeted_attack", "t1"].raw == 0
    assert s["targeted_attack", "t1"].normalized is None
    assert s["targeted_attack", "t1"].all_or_nothing == 0.0


def test_defense_without_any_prediction_leaves_attack_scores_unchanged():
    base = by_name(score(table(), referee_rows(), RUNS))
    dead = {"dC": {c: (None, None, None) for c in ("clean", "a1", "a2", "t1")}}
    rows = table() + [
        PredictionRow(r.epsilon, r.attack, r.attack_type, r.defense, r.image_id, r.true_label, r.target_class,
                      None, "missing row") for r in table(dead)]
    runs = RUNS + [run("defense", "dC", None, 1.0, problem="exit code 1", exit_code=1)]
    with_dead = by_name(score(rows, referee_rows(), runs))
    listed_only = by_name(score(table(), referee_rows(), RUNS, defenses=["dA", "dB", "dC"]))
    for key in [("attack", "a1"), ("attack", "a2"), ("targeted_attack", "t1")]:
        for variant in (with_dead, listed_only):
            assert variant[key].raw == base[key].raw
            assert variant[key].normalized == base[key].normalized
            assert variant[key].all_or_nothing == base[key].all_or_nothing
            assert variant[key].rank == base[key].rank
    dc = with_dead["defense", "dC"]
    assert (dc.rank, dc.raw, dc.normalized, dc.all_or_nothing, dc.clean_accuracy) == (3, 0, 0.0, 0.0, 0.0)
    assert (dc.failed_runs, dc.failed_images) == (1, 12)  # 3 attacks × 3 images + 3 clean
    assert dc.failures == "1 run: exit code 1; 12 images: missing row"
    assert dc.seconds == 1.0
    # the other defenses are unaffected too
    assert with_dead["defense", "dA"] == base["defense", "dA"]


def test_defense_listed_without_rows():
    s = by_name(score(table(), referee_rows(), RUNS, defenses=["dA", "dB", "ghost"]))
    ghost = s["defense", "ghost"]
    assert (ghost.raw, ghost.normalized, ghost.all_or_nothing, ghost.clean_accuracy) == (0, 0.0, 0.0, 0.0)
    assert (ghost.failed_runs, ghost.failed_images, ghost.failures, ghost.seconds) == (0, 0, "", 0.0)


# -- several ε --------------------------------------------------------------------------------------

def test_multiple_epsilons_scored_separately():
    strong = {"dA": {"a1": (0, 0, 0)}, "dB": {"a1": (0, 0, 3)}}      # ε = 16
    weak = {"dA": {"clean": (1, 2, 3), "a1": (1, 2, 3)}, "dB": {"clean": (1, 2, 0), "a1": (1, 0, 0)}}  # ε = 4
    rows = table(weak, eps=4) + table(strong, eps=16)
    runs = [run("attack", "a1", 4, 1.0), run("attack", "a1", 16, 2.0),
            run("attack", "a1", 16, 0.5, problem="exit code 2", exit_code=2), run("defense", "dA", None, 3.0)]
    rows_out = score(rows, [], runs)
    assert [(r.epsilon, r.track, r.name) for r in rows_out] == [
        (4, "defense", "dA"), (4, "defense", "dB"), (4, "attack", "a1"),
        (16, "defense", "dB"), (16, "defense", "dA"), (16, "attack", "a1")]
    at4 = {(r.track, r.name): r for r in rows_out if r.epsilon == 4}
    at16 = {(r.track, r.name): r for r in rows_out if r.epsilon == 16}
    assert (at4["defense", "dA"].raw, at4["defense", "dB"].raw) == (3, 1)
    assert (at16["defense", "dA"].raw, at16["defense", "dB"].raw) == (0, 1)
    assert at4["attack", "a1"].raw == 2 and at4["attack", "a1"].normalized == pytest.approx(2 / 6)
    assert at16["attack", "a1"].raw == 5 and at16["attack", "a1"].normalized == pytest.approx(5 / 6)
    # clean accuracy is the same at every ε
    assert at4["defense", "dB"].clean_accuracy == at16["defense", "dB"].clean_accuracy == pytest.approx(2 / 3)
    # attack seconds and failed runs only for that ε; defense seconds for all ε
    assert (at4["attack", "a1"].seconds, at4["attack", "a1"].failed_runs) == (1.0, 0)
    assert (at16["attack", "a1"].seconds, at16["attack", "a1"].failed_runs) == (2.5, 1)
    assert at16["attack", "a1"].failures == "1 run: exit code 2"
    assert at4["defense", "dA"].seconds == at16["defense", "dA"].seconds == 3.0


def test_epsilons_argument_selects():
    rows = table(eps=4) + table(eps=16)
    assert {r.epsilon for r in score(rows, [], [], epsilons=[16])} == {16}
    # a requested ε without rows still lists every defense and attack, with nothing to score
    empty = by_name(score(rows, [], [], epsilons=[8]))
    assert empty["defense", "dA"].raw == 0 and empty["defense", "dA"].normalized == 0.0
    assert empty["attack", "a1"].normalized is None


# -- ranking ----------------------------------------------------------------------------------------

def test_ranking_ties_broken_by_all_or_nothing_then_clean_accuracy_then_name():
    p = {  # attacks a1 and b1 (both non-targeted)
        "mid": {"clean": (1, 2, 3), "a1": (1, 2, 3), "b1": (0, 0, 0)},  # 3/6, aon 0, clean 1
        "zed": {"clean": (0, 0, 0), "a1": (1, 2, 0), "b1": (1, 0, 0)},  # 3/6, aon 1/3 (i1), clean 0
        "bob": {"clean": (1, 2, 3), "a1": (1, 2, 0), "b1": (1, 0, 0)},  # 3/6, aon 1/3 (i1), clean 1
        "amy": {"clean": (0, 0, 0), "a1": (1, 0, 3), "b1": (1, 0, 0)},  # 3/6, aon 1/3 (i1), clean 0
        "top": {"clean": (0, 0, 0), "a1": (1, 2, 3), "b1": (1, 2, 0)},  # 5/6, aon 2/3 (i1, i2)
    }
    rows = table(p)
    result = score(rows, [], [])
    defenses = [(r.rank, r.name) for r in result if r.track == "defense"]
    assert defenses == [(1, "top"), (2, "bob"), (3, "amy"), (4, "zed"), (5, "mid")]
    assert [r.normalized for r in result if r.track == "defense"] == pytest.approx([5 / 6] + [0.5] * 4)
    assert [r.all_or_nothing for r in result if r.track == "defense"] == pytest.approx(
        [2 / 3, 1 / 3, 1 / 3, 1 / 3, 0.0])
    assert [(r.rank, r.name) for r in score(rows[::-1], [], []) if r.track == "defense"] == defenses
    # attacks: a1 errors 0+1+1+1+0 = 3, b1 errors 3+2+2+2+1 = 10, of 15 each
    assert [(r.rank, r.name, r.raw) for r in result if r.track == "attack"] == [(1, "b1", 10), (2, "a1", 3)]


def test_attack_ties_broken_by_all_or_nothing_then_name():
    p = {"dA": {"a1": (0, 2, 3), "x1": (0, 2, 3), "w1": (0, 2, 3), "a2": (1, 2, 3)},
         "dB": {"a1": (0, 2, 3), "x1": (1, 0, 3), "w1": (0, 2, 3), "a2": (1, 2, 3)}}
    result = [r for r in score(table(p), [], []) if r.track == "attack"]
    # a1, w1: 2 errors, fool both on i1 (aon 1/3); x1: 2 errors, never both (aon 0); a2: 0 errors
    assert [(r.rank, r.name, r.raw) for r in result] == [(1, "a1", 2), (2, "w1", 2), (3, "x1", 2), (4, "a2", 0)]
    assert [r.all_or_nothing for r in result] == pytest.approx([1 / 3, 1 / 3, 0.0, 0.0])


# -- failures, seconds ------------------------------------------------------------------------------

def test_failure_columns():
    rows = table()
    # dA: no prediction on two images under a2
    rows = [r if not (r.defense == "dA" and r.attack == "a2" and r.image_id in ("i1", "i2"))
            else PredictionRow(r.epsilon, r.attack, r.attack_type, r.defense, r.image_id, r.true_label,
                               r.target_class, None, "missing row") for r in rows]
    refs = referee_rows(problems={("a1", "i1"): "missing output image", ("a1", "i3"): "missing output image",
                                  ("t1", "i2"): "mode L, expected RGB (8-bit, 3 channels)"})
    runs = RUNS + [run("attack", "a1", 16, 0.25, problem="exit code 1", exit_code=1),
                   run("defense", "dA", None, 1.0, problem="exit code 1", exit_code=1),
                   run("attack", "a1", 4, 9.0, problem="timed out", exit_code=None)]  # other ε: ignored
    s = by_name(score(rows, refs, runs, epsilons=[16]))
    dA = s["defense", "dA"]
    assert (dA.failed_runs, dA.failed_images) == (1, 2)
    assert dA.failures == "1 run: exit code 1; 2 images: missing row"
    assert dA.raw == 5  # lost i1 and i2 under a2
    assert dA.seconds == 11.5
    a1 = s["attack", "a1"]
    assert (a1.failed_runs, a1.failed_images) == (1, 2)
    assert a1.failures == "1 run: exit code 1; 2 images: missing output image"
    assert a1.seconds == 4.0
    t1 = s["targeted_attack", "t1"]
    assert (t1.failed_runs, t1.failed_images) == (0, 1)
    assert t1.failures == "1 image: mode L, expected RGB (8-bit, 3 channels)"
    a2 = s["attack", "a2"]  # dA's missing answers shrink a2's denominator: errors 1 of 4 answered
    assert (a2.raw, a2.normalized, a2.failures) == (1, 0.25, "")


def test_seconds_rounded_to_milliseconds():
    runs = [run("attack", "a1", 16, 0.1), run("attack", "a1", 16, 0.2), run("defense", "dA", None, 1.00049)]
    s = by_name(score(table(), referee_rows(), runs))
    assert s["attack", "a1"].seconds == 0.3
    assert s["defense", "dA"].seconds == 1.0


# -- degenerate tables ------------------------------------------------------------------------------

def test_no_attacks_gives_defense_normalized_none():
    rows = table({"dA": {"clean": (1, 2, 0)}})
    assert score(rows, [], []) == []  # no ε anywhere
    (only,) = score(rows, [], [], epsilons=[16])
    assert (only.track, only.rank, only.name, only.raw) == ("defense", 1, "dA", 0)
    assert only.normalized is None and only.all_or_nothing is None
    assert only.clean_accuracy == pytest.approx(2 / 3)


def test_no_defenses_gives_attack_scores_none():
    result = score([], referee_rows(), [run("attack", "a1", 16, 1.0)])
    assert [(r.track, r.name) for r in result] == [("attack", "a1"), ("attack", "a2"), ("targeted_attack", "t1")]
    for r in result:
        assert (r.raw, r.normalized, r.all_or_nothing, r.images) == (0, None, None, 3)


def test_attacks_argument_lists_attacks_without_rows():
    result = by_name(score(table(), referee_rows(), RUNS, attacks=[("late", "attack")]))
    late = result["attack", "late"]
    assert (late.raw, late.normalized, late.all_or_nothing, late.rank) == (0, None, 0.0, 3)
    # the defenses' denominator now includes the silent attack: dA 7 of 12
    assert result["defense", "dA"].normalized == pytest.approx(7 / 12)


# -- matrices ---------------------------------------------------------------------------------------

def test_accuracy_matrix():
    rows = table() + table({"dA": {"a1": (0, 0, 0)}}, eps=4)
    matrix = accuracy_matrix(rows, epsilon=16, defenses=["dA", "dB", "dZ"], attacks=["a1", "a2", "t1", "none"])
    assert isinstance(matrix, Matrix)
    assert matrix.epsilon == 16
    assert matrix.columns == ("clean", "a1", "a2", "t1", "none")
    assert [name for name, _ in matrix.rows] == ["dA", "dB", "dZ"]
    assert matrix.rows[2][1] == (None, None, None, None, None)
    assert matrix.rows[0][1][:4] == pytest.approx((1.0, 2 / 3, 1.0, 2 / 3))
    assert matrix.rows[0][1][4] is None
    assert matrix.rows[1][1][:4] == pytest.approx((2 / 3, 1 / 3, 2 / 3, 1 / 3))
    assert matrix.rows[1][1][4] is None
    at4 = accuracy_matrix(rows, epsilon=4, defenses=["dA"], attacks=["a1"])
    assert at4.rows == (("dA", (1.0, 0.0)),)


def test_accuracy_matrix_counts_missing_as_wrong():
    rows = [pred("d", "a1", "i1", None, problem="missing row"), pred("d", "a1", "i2", 2)]
    assert accuracy_matrix(rows, epsilon=16, defenses=["d"], attacks=["a1"]).rows == (("d", (None, 0.5)),)


def test_hit_matrix():
    rows = table() + table({"dA": {"t1": (7, 8, 9)}}, eps=4)
    matrix = hit_matrix(rows, epsilon=16, defenses=["dA", "dB"], targeted_attacks=["t1"])
    assert matrix.columns == ("t1",)
    assert matrix.rows[0][0] == "dA" and matrix.rows[0][1] == pytest.approx((1 / 3,))
    assert matrix.rows[1][0] == "dB" and matrix.rows[1][1] == pytest.approx((2 / 3,))
    assert hit_matrix(rows, epsilon=4, defenses=["dA", "dB"], targeted_attacks=["t1", "t2"]).rows == (
        ("dA", (1.0, None)), ("dB", (None, None)))


# -- summarize_problems -----------------------------------------------------------------------------

def test_summarize_problems_ordering():
    runs = ["timed out", "exit code 1", "", "exit code 1", "b"]
    images = ["z", "a", "z", "", "missing row"]
    assert summarize_problems(runs, images) == (
        "2 runs: exit code 1; 1 run: b; 1 run: timed out; 2 images: z; 1 image: a; 1 image: missing row")
    assert summarize_problems([], []) == ""
    assert summarize_problems(["", ""], [""]) == ""
    assert summarize_problems([], ["x"]) == "1 image: x"
    assert summarize_problems(iter(["e"]), iter([])) == "1 run: e"


def test_score_is_score_table_of_the_rows_table():
    from harness.scoring import ATTACK, DEFENSE, TARGETED_ATTACK, score_table
    from harness.tabulation import table_from_rows

    predictions, attack_images = table(), referee_rows()
    columns = table_from_rows(predictions, attack_images, RUNS)
    assert columns.images.ids == ("i1", "i2", "i3") and columns.defenses == ("dA", "dB")
    assert columns.attacks_of(TARGETED_ATTACK) == ["t1"] and columns.attacks_of(ATTACK) == ["a1", "a2"]
    assert score_table(columns) == score(predictions, attack_images, RUNS)
    at_8 = score_table(columns, epsilons=[8])
    assert {r.track for r in at_8} == {DEFENSE, ATTACK, TARGETED_ATTACK}
    # an ε without rows: nothing correct, and nothing answered for the attacks
    assert all(r.raw == 0 for r in at_8) and all(r.normalized is None for r in at_8 if r.track is not DEFENSE)
