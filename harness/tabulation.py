"""An execution's outcome as the per-image table: prediction rows, referee rows and run rows."""

from __future__ import annotations

from harness.dataset import Dataset
from harness.names import one_line
from harness.records import Outcome
from harness.submission import Submission
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow
from harness.tracks import Track

__all__ = ["build_tables"]


def build_tables(dataset: Dataset, outcome: Outcome, defenses: list[Submission]
                 ) -> tuple[list[PredictionRow], list[AttackImageRow], list[RunRow]]:
    """Turn an :class:`Outcome` into the per-image table (predictions, referee rows, run rows)."""
    labels = dataset.by_id()
    predictions: list[PredictionRow] = []
    attack_rows: list[AttackImageRow] = []
    runs: list[RunRow] = []

    def answer(defense: str, version: str) -> tuple[int | None, str]:
        return outcome.defense_predictions.get(defense, {}).get(version, (None, "not classified"))

    for defense in defenses:
        for record in dataset.images:
            label, problem = answer(defense.name, outcome.clean_versions[record.image_id])
            predictions.append(PredictionRow(
                epsilon=None, attack="", attack_type=CLEAN, defense=defense.name, image_id=record.image_id,
                true_label=record.true_label, target_class=record.target_class, prediction=label,
                problem=problem))
    for attack_record in outcome.attack_records:
        run = attack_record.run
        track = attack_record.attack_type.value  # the tables hold the track's string
        runs.append(RunRow(kind=track, name=attack_record.attack, epsilon=attack_record.epsilon,
                           batch=attack_record.key, images=len(attack_record.images), exit_code=run.exit_code,
                           timed_out=run.timed_out, seconds=run.seconds, problem=one_line(run.problem), log=run.log))
        for image in attack_record.images:
            attack_rows.append(AttackImageRow(
                epsilon=attack_record.epsilon, attack=attack_record.attack, attack_type=track,
                image_id=image.image_id, problem=image.problem, clipped_values=image.clipped_values,
                max_violation=image.max_violation, linf=image.linf, note=image.note))
            truth = labels[image.image_id]
            for defense in defenses:
                label, problem = answer(defense.name, image.version)
                predictions.append(PredictionRow(
                    epsilon=attack_record.epsilon, attack=attack_record.attack,
                    attack_type=track, defense=defense.name, image_id=image.image_id,
                    true_label=truth.true_label, target_class=truth.target_class, prediction=label,
                    problem=problem))
    for defense in defenses:
        for defense_record in outcome.defense_records.get(defense.name, []):
            run = defense_record.run
            runs.append(RunRow(kind=Track.DEFENSE.value, name=defense.name, epsilon=None, batch=defense_record.key,
                               images=len(defense_record.predictions), exit_code=run.exit_code,
                               timed_out=run.timed_out, seconds=run.seconds, problem=one_line(run.problem),
                               log=run.log))
    predictions.sort(key=lambda r: (r.epsilon if r.epsilon is not None else -1, r.attack, r.defense, r.image_id))
    attack_rows.sort(key=lambda r: (r.epsilon, r.attack, r.image_id))
    runs.sort(key=lambda r: (r.kind, r.name, r.epsilon if r.epsilon is not None else -1, r.batch))
    return predictions, attack_rows, runs
