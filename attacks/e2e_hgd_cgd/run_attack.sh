#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_DIR MAX_EPSILON
exec python3 attack.py "$@"
