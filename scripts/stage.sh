#!/bin/sh
# stage.sh NAME COMMAND...: run one stage of `make check` and say how long it took,
#   check: stage NAME took N s
# (or "failed (exit N) after N s"), so a CI log shows where the time goes. Exits with
# COMMAND's status.
name=$1
shift
t0=$(date +%s)
"$@"
rc=$?
t=$(($(date +%s) - t0))
if [ "$rc" -eq 0 ]; then
	echo "check: stage $name took $t s"
else
	echo "check: stage $name failed (exit $rc) after $t s"
fi
exit "$rc"
