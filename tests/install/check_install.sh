#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds the C and C++ examples against
# it through find_package(libswitch) and through pkg-config, and runs each: only the
# installed headers, library and plugin are used.
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
examples=$(cd "$here/../../examples" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(dirname "$(find "$work/prefix" -name 'libswitch.so' | head -1)")
test -f "$libdir/libswitch_spm.so" || { echo "the SentencePiece plugin is not installed beside libswitch.so" >&2; exit 1; }
test ! -e "$work/prefix/include/libswitch/core" || { echo "internal headers are installed" >&2; exit 1; }

cmake -S "$here" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DSW_EXAMPLES_DIR="$examples" >/dev/null
cmake --build "$work/consumer" >/dev/null
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c99 -pedantic -Wall -Wextra -Werror "$examples/c/train_tiny.c" \
  $(pkg-config --cflags --libs libswitch) -lm -o "$work/train_tiny_c_pc"
c++ -std=c++17 -Wall -Wextra -Werror "$examples/cpp/train_tiny.cc" \
  $(pkg-config --cflags --libs libswitch) -o "$work/train_tiny_cpp_pc"

config="$examples/train/demo-switch.textproto"
for program in "$work/consumer/train_tiny_c" "$work/consumer/train_tiny_cpp" \
               "$work/train_tiny_c_pc" "$work/train_tiny_cpp_pc"; do
  out=$(mktemp -d -p "$work")
  LD_LIBRARY_PATH="$libdir" "$program" "$config" "$out" > "$out.log"
  grep -q 'reloaded model: same logits' "$out.log" || { cat "$out.log"; exit 1; }
  echo "$(basename "$program"): $(grep 'reloaded model' "$out.log")"
done
