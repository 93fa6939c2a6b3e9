"""Building blocks of the sample defenses (the algorithms; each ``defenses/<name>`` folder stays a few lines)."""
