#!/usr/bin/env bash
# Prints the path of a real CPython 3.12 interpreter (the Lambda runtime's version).
# pyenv's shims fail SAM's binary validation, so resolve them to the real executable.
set -euo pipefail
want="${1:-3.12}"
for cand in "${PYTHON312:-}" "$HOME"/.pyenv/versions/"$want".*/bin/python"$want" \
            /usr/local/bin/python"$want" /usr/bin/python"$want" "$(command -v python"$want" 2>/dev/null || true)"; do
  [ -n "$cand" ] && [ -x "$cand" ] || continue
  real=$("$cand" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
  ver=$("$real" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  if [ "$ver" = "$want" ]; then echo "$real"; exit 0; fi
done
echo "error: no Python $want found (install it with pyenv, or set PYTHON312=/path/to/python$want)" >&2
exit 1
