#!/bin/bash
# A quick one-broker check, not the harness (no pinning); needs `ulimit -n` above 10,000; run from the repository root.
# usage: bench/mem_one.sh BIN [broker args...]; RSS per idle connection (10k, read after a 10 s hold)
BIN=$1; shift
D=$(mktemp -d /tmp/memXXXX)
$BIN serve --tcp 127.0.0.1:21984 --data-dir $D "$@" > $D/log 2>&1 &
P=$!
sleep 1.5
r0=$(awk '/VmRSS/{print $2}' /proc/$P/status)
${BENCH:-target/release/dynamq-bench} conn --conns 10000 --hold-secs 12 --port 21984 --quiet > $D/out.json 2>&1 &
B=$!
sleep 11
r1=$(awk '/VmRSS/{print $2}' /proc/$P/status)
wait $B
kill -INT $P; wait $P
echo "rss0 ${r0}k rss1 ${r1}k per-conn $(( (r1-r0)*1024/10000 )) B"
rm -rf $D
