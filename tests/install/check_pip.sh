#!/usr/bin/env bash
# `pip install ./bindings/python` against an installed libswitch (pkg-config), from a copy
# of the bindings so the tree stays clean; then the installed package runs a forward pass.
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(dirname "$(find "$work/prefix" -name 'libswitch.so' | head -1)")
cp -r "$here/../../bindings" "$work/bindings"
PKG_CONFIG_PATH="$libdir/pkgconfig" python3 -m pip install -q --disable-pip-version-check \
  --no-build-isolation --target "$work/site" "$work/bindings/python"
cd "$work" && PYTHONPATH="$work/site" python3 -c '
import numpy as np, libswitch as sw
with sw.Model(sw.Config.preset("tiny"), seed=0) as m:
    out = m.forward(np.arange(3, 11)[None], [[0, 5, 6]], labels=[[5, 6, 1]])
print(f"pip-installed libswitch {sw.__version__}: loss {out.loss:.4f}")'
