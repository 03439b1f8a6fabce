#!/usr/bin/env bash
# What a Python user does, on this machine: `pip install .` at the repository root in a
# fresh virtual environment, then the Python example, with no other step; then `pip wheel .`
# and that wheel alone in a second fresh environment: its contents, the binding's tests, and
# the same tests under valgrind, whose virtual CPU has no AVX-512, so a library built for
# more than the portable baseline dies there on its first such instruction (SIGILL).
# Each step prints its seconds. The build folder (build/wheel/) persists between runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"  # never import the tree's files by accident
timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "check_wheel: $label: $((SECONDS - start)) s"
}
pip_quiet=(-q --disable-pip-version-check)

# 1. pip install . in a fresh environment (pip fetches scikit-build-core and numpy).
python3 -m venv "$work/fresh"
timed "pip install . (fresh venv)" "$work/fresh/bin/pip" install "${pip_quiet[@]}" "$root"
"$work/fresh/bin/python" - <<'EOF'
import sys, libswitch as sw
assert sw.__file__.startswith(sys.prefix), f"imported {sw.__file__}, not the installed package"
print(f"check_wheel: installed libswitch {sw.__version__} (ABI {sw.ABI_VERSION}) at {sw.__file__}")
EOF
timed "examples/python/train.py" "$work/fresh/bin/python" "$root/examples/python/train.py" \
  --steps 20 --out "$work/example" | tee "$work/example.log"
grep -q "held-out loss" "$work/example.log"

# 2. The wheel: libswitch inside, nothing else needed from the tree.
timed "pip wheel ." "$work/fresh/bin/pip" wheel "${pip_quiet[@]}" --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/libswitch-*.whl)
python3 - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["libswitch/__init__.py", "libswitch/__init__.pyi", "libswitch/py.typed",
        "libswitch/libswitch_raw.py", "libswitch/_libswitch_raw.so", "libswitch/libswitch.so.1",
        "libswitch/libswitch_spm.so"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
print(f"check_wheel: {sys.argv[1].rsplit('/', 1)[1]}: {len(names)} files, the library inside")
EOF
# The portable baseline (x86-64-v3) has no AVX-512: not one zmm register in the library.
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("libswitch/libswitch.so.1", sys.argv[2])' \
  "$wheel" "$work/unpacked"
zmm=$(objdump -d "$work/unpacked/libswitch/libswitch.so.1" | grep -c zmm || true)
[ "$zmm" = 0 ] || { echo "check_wheel: the wheel's libswitch.so.1 uses AVX-512 ($zmm zmm instructions)"; exit 1; }

# 3. The wheel alone in a second environment; pytest and tqdm from the system's packages.
python3 -m venv --system-site-packages "$work/wheel"
"$work/wheel/bin/pip" install "${pip_quiet[@]}" --no-deps "$wheel"
tests="$root/bindings/python/tests/test_libswitch.py"
timed "binding tests (wheel)" "$work/wheel/bin/python" -m pytest -q -p no:cacheprovider "$tests"
# Under valgrind: the tests a user's first session touches (create, forward, train,
# checkpoint, generate, HF round trip); the slowest ones stay out (about 20x slower there).
slow="not tensorboard and not 1000_times and not built_in_data and not concurrent"
timed "binding tests under valgrind (no AVX-512)" valgrind --tool=none -q \
  "$work/wheel/bin/python" -m pytest -q -p no:cacheprovider -k "$slow" "$tests"
