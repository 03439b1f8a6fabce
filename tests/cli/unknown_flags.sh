#!/usr/bin/env bash
# Every subcommand `switch --help` lists refuses a flag it does not take: a non-zero exit
# and a message naming the flag and the nearest flag that subcommand does take.
# Usage: unknown_flags.sh path/to/switch
set -uo pipefail
switch=$1
commands=$("$switch" --help | awk 'NR > 1 {print $1}')
if [ -z "$commands" ]; then
  echo "FAIL: no subcommands in switch --help"
  exit 1
fi
failed=0
for command in $commands; do
  err=$("$switch" "$command" --no-such-flag 1 2>&1 >/dev/null)
  status=$?
  nearest=$(echo "$err" | sed -n 's/.*(did you mean \(--[a-z-]*\)?)$/\1/p')
  problem=
  if [ $status -eq 0 ]; then
    problem="exit 0"
  elif ! echo "$err" | grep -qF "switch $command: unknown flag --no-such-flag"; then
    problem="the message does not name --no-such-flag"
  elif [ -n "$nearest" ]; then
    # The suggestion is one of this subcommand's own flags.
    "$switch" "$command" --help | grep -qE "^  $nearest( |$)" ||
      problem="suggests $nearest, not in its --help"
  elif ! echo "$err" | grep -qF "takes no flags"; then
    problem="names no nearest flag"
  fi
  if [ -n "$problem" ]; then
    echo "FAIL switch $command --no-such-flag 1: $problem (exit $status): $err"
    failed=1
  else
    echo "ok   $err"
  fi
done
exit $failed
