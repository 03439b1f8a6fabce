#!/usr/bin/env bash
# The ABI of libswitch.so: its exported symbols are exactly capi/libswitch.symbols (an
# accidental addition or removal fails here; a deliberate one updates the list), every one
# is declared in libswitch.h, and the SONAME carries the ABI version.
set -euo pipefail
library=$1 symbols=$2 header=$3 abi=$4
exported=$(nm -D --defined-only "$library" | awk '{print $3}' | sed 's/@.*//' | sort -u)
if ! diff <(grep -v '^#' "$symbols" | sort -u) <(echo "$exported"); then
  echo "exported symbols differ from $symbols (< listed only, > exported only)" >&2
  exit 1
fi
for s in $(echo "$exported" | grep '^sw_'); do
  grep -qE "\\b$s\\(" "$header" || { echo "$s is exported but not declared in $header" >&2; exit 1; }
done
if echo "$exported" | grep -vE '^(sw_|LIBSWITCH_)'; then
  echo "symbols outside the C ABI are exported (above)" >&2
  exit 1
fi
soname=$(objdump -p "$library" | awk '$1 == "SONAME" {print $2}')
test "$soname" = "libswitch.so.$abi" || { echo "SONAME $soname, expected libswitch.so.$abi" >&2; exit 1; }
echo "$(echo "$exported" | grep -c '^sw_') sw_ symbols, SONAME $soname"
