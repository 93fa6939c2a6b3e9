"""Adaptive evaluation of the sample defenses (issue 21): ``python -m research.adaptive.evaluate``."""
