"""The competition's tracks and the roles an attack may declare: the one enum each, used everywhere.

Stored as their string values (``"attack"``, ``"targeted_attack"``, ``"defense"``; ``metadata.json``'s ``type``,
the manifest's ``type``, unit records' ``attack_type``, the tables' ``track``/``kind``/``attack_type``); both enums
are ``str`` subclasses that compare equal to, hash like and format as those values, so a table or record written
before them reads the same.
"""

from __future__ import annotations

import enum

__all__ = ["AttackRole", "Track"]


class _Text(str, enum.Enum):
    """A ``str`` enum whose ``str()`` and ``format()`` are its value (as :class:`enum.StrEnum`, Python ≥ 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Track(_Text):
    """The three tracks of the competition (a submission's ``type``)."""

    ATTACK = "attack"
    TARGETED_ATTACK = "targeted_attack"
    DEFENSE = "defense"

    @property
    def is_attack(self) -> bool:
        """True for both attack tracks."""
        return self is not Track.DEFENSE


class AttackRole(_Text):
    """What an attack is, for the report's sanity checks that compare attacks (optional metadata key ``role``).

    ``white_box``: reads the target model's gradients (FGSM, PGD, C&W, APGD, BPDA, a UAP computed on it);
    ``transfer``: black-box, gradients of other models only (MI-FGSM on an ensemble, DI/TI-MI-FGSM);
    ``score_based``: black-box, queries the target's scores, no gradients (Square); ``random_noise``: a noise
    baseline within ε; ``no_op``: returns its input.
    """

    WHITE_BOX = "white_box"
    TRANSFER = "transfer"
    SCORE_BASED = "score_based"
    RANDOM_NOISE = "random_noise"
    NO_OP = "no_op"
