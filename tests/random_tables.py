"""Random per-image tables as rows, for the tests that check the columnar table against independent code: dense
(every defense answers every version, as a competition writes) or sparse (rows left out, as hand-made tables)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.table import AttackImageRow, PredictionRow, RunRow

PROBLEMS = ("", "", "", "missing from the CSV", "label is not an integer", "not classified")
SUBSTITUTIONS = ("", "", "", "", "missing output image", "not a PNG")


@dataclass
class RandomTable:
    """Rows of a random competition and the names it declares."""

    predictions: list[PredictionRow]
    attack_images: list[AttackImageRow]
    runs: list[RunRow]
    defenses: list[str]
    attacks: list[tuple[str, str]]
    epsilons: list[int]


def random_table(seed: int, *, dense: bool = True) -> RandomTable:
    """A random competition: 1–4 defenses, 1–5 attacks (some targeted), 1–2 ε, 2–6 images, 10 classes."""
    rng = random.Random(seed)
    images = [(f"img{i}", rng.randrange(10), rng.randrange(10)) for i in range(rng.randint(2, 6))]
    defenses = [f"d{i}" for i in range(rng.randint(1, 4))]
    attacks = [(f"a{i}", rng.choice(("attack", "targeted_attack"))) for i in range(rng.randint(1, 5))]
    epsilons = sorted(rng.sample([4, 8, 16], rng.randint(1, 2)))
    keep = 1.0 if dense else 0.8

    def answer() -> tuple[int | None, str]:
        if rng.random() < 0.15:
            return None, rng.choice(PROBLEMS)
        return rng.randrange(10), ""

    predictions, attack_images, runs = [], [], []
    for defense in defenses:
        for image_id, truth, target in images:
            if rng.random() < keep:
                label, problem = answer()
                predictions.append(PredictionRow(epsilon=None, attack="", attack_type="clean", defense=defense,
                                                 image_id=image_id, true_label=truth, target_class=target,
                                                 prediction=label, problem=problem))
        runs.append(RunRow(kind="defense", name=defense, epsilon=None, batch=f"b{defense}", images=len(images),
                           exit_code=rng.choice((0, 0, 1)), timed_out=False, seconds=round(rng.random(), 3),
                           problem=rng.choice(("", "", "exit code 1")), log=f"logs/{defense}.log"))
    for eps in epsilons:
        for attack, kind in attacks:
            runs.append(RunRow(kind=kind, name=attack, epsilon=eps, batch=f"b{attack}{eps}", images=len(images),
                               exit_code=0, timed_out=rng.random() < 0.1, seconds=round(rng.random(), 3),
                               problem=rng.choice(("", "", "timed out after 60 s")), log=""))
            for image_id, truth, target in images:
                if rng.random() < keep:
                    attack_images.append(AttackImageRow(
                        epsilon=eps, attack=attack, attack_type=kind, image_id=image_id,
                        problem=rng.choice(SUBSTITUTIONS), clipped_values=rng.choice((0, 0, 3, 7)),
                        max_violation=rng.choice((0, 1, 9)), linf=rng.randint(0, eps),
                        note=rng.choice(("", "", "mode RGBA converted to RGB"))))
                for defense in defenses:
                    if rng.random() < keep:
                        label, problem = answer()
                        if rng.random() < 0.3:
                            label = rng.choice((truth, target))
                        predictions.append(PredictionRow(
                            epsilon=eps, attack=attack, attack_type=kind, defense=defense, image_id=image_id,
                            true_label=truth, target_class=target, prediction=label,
                            problem=problem if label is None else ""))
    return RandomTable(predictions=predictions, attack_images=attack_images, runs=runs, defenses=defenses,
                       attacks=attacks, epsilons=epsilons)


def sorted_predictions(rows: list[PredictionRow]) -> list[PredictionRow]:
    """Rows in ``per_image.csv`` order."""
    return sorted(rows, key=lambda r: (r.epsilon if r.epsilon is not None else -1, r.attack, r.defense, r.image_id))
