#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_FILE
exec python3 defense.py "$@"
