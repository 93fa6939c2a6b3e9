#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_DIR MAX_EPSILON (targets in INPUT_DIR/target_class.csv)
exec python3 attack.py "$@"
