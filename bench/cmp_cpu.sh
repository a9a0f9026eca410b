#!/bin/bash
# A quick one-broker check, not the harness: broker pinned to core 0, dynamq-bench to core 1; run from the repository root.
# usage: bench/cmp_cpu.sh REPS label1 "bin args" label2 "bin args" ...; median CPU us/delivery per label
REPS=$1; shift
declare -A R
labels=()
while [ $# -gt 0 ]; do labels+=("$1"); cmds+=("$2"); shift 2; done
for r in $(seq $REPS); do
  for i in "${!labels[@]}"; do
    v=$(bash "$(dirname "$0")/cpu_one.sh" ${cmds[$i]} 2>&1 | awk '/recv/{print $NF}')
    R[${labels[$i]}]+="$v "
  done
done
for l in "${labels[@]}"; do echo "$l: $(echo ${R[$l]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END{printf "median %.3f  all:", a[int((NR+1)/2)]}') ${R[$l]}"; done
