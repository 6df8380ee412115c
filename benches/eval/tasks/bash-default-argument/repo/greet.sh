#!/usr/bin/env bash
# Prints a greeting for the name given as the first argument.
set -euo pipefail
name=$1
echo "Hello, $name!"
