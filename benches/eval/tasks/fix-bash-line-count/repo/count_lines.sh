#!/usr/bin/env bash
# Prints the number of non-blank lines of the file given as the first argument.
set -euo pipefail
wc -l < "$1" | tr -d ' '
