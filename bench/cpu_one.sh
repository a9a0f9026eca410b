#!/bin/bash
# A quick one-broker check, not the harness: broker pinned to core 0, dynamq-bench to core 1; run from the repository root.
# usage: bench/cpu_one.sh BIN [broker args...]; prints broker CPU us/delivery for 1->1 QoS1 150k
BIN=$1; shift
D=$(mktemp -d /tmp/cpuXXXX)
taskset -c 0 $BIN serve --tcp 127.0.0.1:21983 --data-dir $D --http 127.0.0.1:21991 "$@" > $D/log 2>&1 &
P=$!
sleep 1.5
t0=$(awk '{print $14+$15}' /proc/$P/stat)
taskset -c 1 ${BENCH:-target/release/dynamq-bench} run --pubs 1 --subs 1 --qos 1 --count 150000 --topic b/%i --filter b/# --port 21983 --max-secs 60 --quiet > $D/out.json
for i in $(seq 100); do p=$(curl -s 127.0.0.1:21991/metrics | awk '$1=="dynamq_store_ops_pending"{print $2}'); [[ -z $p || $p == 0 ]] && break; sleep 0.1; done
t1=$(awk '{print $14+$15}' /proc/$P/stat)
curl -s 127.0.0.1:21991/metrics | grep -E "^dynamq_store_ops_(submitted|coalesced|written)_total|^dynamq_store_batches_total" | tr '\n' ' '
kill -INT $P; wait $P
python3 -c "import json,sys; j=json.load(open('$D/out.json')); print('\nrecv/s', j['recv_per_sec'], 'lost', j['lost'], 'cpu us/deliv', ($t1-$t0)*10000/j['received'])"
rm -rf $D
