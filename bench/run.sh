#!/usr/bin/env bash
# Comparative benchmark: dynamq against Mosquitto and rumqttd, driven by dynamq-bench.
#
# Every broker listens on 127.0.0.1 only, without persistence, with queue and in-flight
# limits high enough that none drops QoS 1 messages. The broker is pinned to core 0 and the
# load generator to core 1; every run gets a fresh broker; each scenario runs --reps times
# and bench/report.py prints the medians and the dynamq/peer ratios. Every run is bounded by
# a message count and by --max-secs; every process started here is killed on exit.
#
# usage: bench/run.sh [--quick] [--reps N] [--brokers "dynamq rumqttd mosquitto"]
#                     [--scenarios "s1_q0 s1_q1 ..."] [--persistence] [--dynamo]
#                     [--no-build] [--out DIR]
#   --quick        counts divided by 10 (a check of the harness, not a benchmark)
#   --persistence  also run dynamq alone with its store (embedded, and DynamoDB on dynalite)
#   --dynamo       the DynamoDB write benchmark on dynalite (issue 9): the raw BatchWriteItem
#                  ceiling, one PutItem per item with a pool of 8, and dynamq --store dynamo
#                  in --durability async and sync, in items written per second
#   --no-build     use the binaries already built (default: cargo build --release)
# --brokers also takes dynamq's variants: dynamq-defaults (no config: embedded store, async
# durability, default limits), dynamq-none (the defaults with --store none), dynamq-sync (the
# defaults with --durability sync), and mosquitto-persist (Mosquitto with persistence true).
# Plain `dynamq` is the tuned configuration: no store, higher queue and in-flight limits.
# DYNAMQ_BIN and BENCH_BIN name other binaries (e.g. a build of an earlier commit); by
# default they are taken from $CARGO_TARGET_DIR (or target/).
# Besides msg/s and latency, each run records the broker's own CPU time (utime + stime from
# /proc/PID/stat, over the load generator's run): the report gives it per delivery, which
# stays meaningful when the one-core load generator, not the broker, sets the pace; and the
# broker's peak resident memory (VmHWM).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/bench/.tools"
REPS=3
BROKERS="dynamq rumqttd mosquitto"
SCENARIOS="s1_q0 s1_q1 s1_q2 lat_q0 lat_q1 lat_q2 fanin_q0 fanin_q1 mesh_q0 mesh_q1 fanout_q0 fan4_q1 stall_q1 conn"
PERSISTENCE=0
DYNAMO=0
BUILD=1
SCALE=1
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) SCALE=10 ;;
    --reps) REPS="$2"; shift ;;
    --brokers) BROKERS="$2"; shift ;;
    --scenarios) SCENARIOS="$2"; shift ;;
    --persistence) PERSISTENCE=1 ;;
    --dynamo) DYNAMO=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

WORK=$(mktemp -d /tmp/dynamq-bench.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
# Processes started here and still running: the current broker, and dynalite.
PIDS=()
BROKER_PID=""
cleanup() {
  for pid in $BROKER_PID "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in $BROKER_PID "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK/data"
}
trap cleanup EXIT INT TERM

log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- tools
if ! command -v mosquitto >/dev/null; then
  log "installing mosquitto"
  apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
RUMQTTD="$TOOLS/bin/rumqttd"
if [[ ! -x "$RUMQTTD" && " $BROKERS " == *" rumqttd "* ]]; then
  log "installing rumqttd into $TOOLS (cargo install, not --locked)"
  cargo install rumqttd --root "$TOOLS"
fi
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
  log "building dynamq and dynamq-bench (release)"
  cargo build --release -p dynamq -p dynamq-bench
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DYNAMQ="${DYNAMQ_BIN:-$TARGET_DIR/release/dynamq}"
BENCH="${BENCH_BIN:-$TARGET_DIR/release/dynamq-bench}"
[[ -x "$DYNAMQ" ]] || { echo "$DYNAMQ missing (run without --no-build)" >&2; exit 1; }
[[ -x "$BENCH" ]] || { echo "$BENCH missing (run without --no-build)" >&2; exit 1; }

# As many descriptors as we may have; the idle-connection count follows from it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
CONNS=20000
if (( NOFILE < CONNS + 500 )); then CONNS=$(( NOFILE - 500 )); fi

# ---------------------------------------------------------------- brokers
PORT_dynamq=21883
PORT_mosquitto=21884
PORT_rumqttd=21885
# dynamq's /metrics, read to wait until its store writer has drained.
PORT_metrics=21892

write_configs() {
  cat > "$WORK/mosquitto.conf" <<EOF
listener $PORT_mosquitto 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
max_connections -1
set_tcp_nodelay true
log_type error
EOF
  # The same, persisting to disk: Mosquitto keeps messages in memory and writes its whole
  # state to mosquitto.db at autosave (every 1800 s by default) and at exit, not per message.
  { sed '/^persistence false$/d' "$WORK/mosquitto.conf"
    printf 'persistence true\npersistence_location %s/data/\n' "$WORK"
  } > "$WORK/mosquitto-persist.conf"
  cat > "$WORK/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 25000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$PORT_rumqttd"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 1000
    dynamic_filters = true
EOF
  # [store] kind = "none" where the binary knows the section (older builds have no store).
  cat > "$WORK/dynamq-base.toml" <<EOF
log_level = "warn"
[mqtt]
max_inflight = 1000
max_queued_messages = 100000000
EOF
  { cat "$WORK/dynamq-base.toml"; printf '[store]\nkind = "none"\n'; } > "$WORK/dynamq.toml"
  echo 'log_level = "warn"' > "$WORK/dynamq-defaults.toml"
}

wait_port() { # PORT PID
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_broker() { # NAME [extra dynamq args...]   (MOSQ_CONF: another Mosquitto config)
  local name=$1; shift
  local port_var="PORT_$name" port
  port=${!port_var}
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  case "$name" in
    mosquitto) taskset -c 0 "$MOSQUITTO" -c "${MOSQ_CONF:-$WORK/mosquitto.conf}" >>"$WORK/$name.log" 2>&1 & ;;
    rumqttd) taskset -c 0 "$RUMQTTD" -q -c "$WORK/rumqttd.toml" >>"$WORK/$name.log" 2>&1 & ;;
    dynamq) taskset -c 0 "$DYNAMQ" serve --config "${DYNAMQ_CONF:-$WORK/dynamq.toml}" \
              --tcp "127.0.0.1:$port" --ws none --data-dir "$WORK/data" "$@" \
              >>"$WORK/$name.log" 2>&1 & ;;
  esac
  BROKER_PID=$!
  if ! wait_port "$port" "$BROKER_PID"; then
    if [[ $name == dynamq && -z "${DYNAMQ_CONF:-}" ]] && grep -q "unknown field .store." "$WORK/$name.log"; then
      log "this dynamq has no [store] section: it has no persistence to turn off"
      cp "$WORK/dynamq-base.toml" "$WORK/dynamq.toml"
      stop_broker
      start_broker "$name" "$@"; return
    fi
    echo "$name did not start; log: $WORK/$name.log" >&2; tail -5 "$WORK/$name.log" >&2
    stop_broker
    return 1
  fi
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the
# command name in field 2 may hold spaces, so fields are counted after its closing paren).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PID
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( ${12} + ${13} ))
}

stop_broker() {
  [[ -n $BROKER_PID ]] || return 0
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
  sleep 0.3
}

# ---------------------------------------------------------------- scenarios
# Counts are per publisher; each run is also bounded by --max-secs.
scenario_args() { # NAME -> dynamq-bench arguments
  local s=$SCALE
  case "$1" in
    s1_q0)     echo "run --pubs 1 --subs 1 --qos 0 --count $((500000/s)) --topic b/%i --filter b/#" ;;
    s1_q1)     echo "run --pubs 1 --subs 1 --qos 1 --count $((150000/s)) --topic b/%i --filter b/#" ;;
    s1_q2)     echo "run --pubs 1 --subs 1 --qos 2 --count $((100000/s)) --topic b/%i --filter b/#" ;;
    # Latency at a fixed, moderate rate (5,000 msg/s for 5 s): no queueing in the broker.
    lat_q0)    echo "run --pubs 1 --subs 1 --qos 0 --rate 5000 --count $((25000/s)) --topic b/%i --filter b/#" ;;
    lat_q1)    echo "run --pubs 1 --subs 1 --qos 1 --rate 5000 --count $((25000/s)) --topic b/%i --filter b/#" ;;
    lat_q2)    echo "run --pubs 1 --subs 1 --qos 2 --rate 5000 --count $((25000/s)) --topic b/%i --filter b/#" ;;
    fanin_q0)  echo "run --pubs 10 --subs 1 --qos 0 --count $((50000/s)) --topic b/%i --filter b/+" ;;
    fanin_q1)  echo "run --pubs 10 --subs 1 --qos 1 --count $((15000/s)) --topic b/%i --filter b/+" ;;
    mesh_q0)   echo "run --pubs 10 --subs 10 --qos 0 --count $((30000/s)) --topic b/mesh --filter b/mesh" ;;
    mesh_q1)   echo "run --pubs 10 --subs 10 --qos 1 --count $((10000/s)) --topic b/mesh --filter b/mesh" ;;
    # Smaller counts for DynamoDB on dynalite, a JavaScript server far slower than the broker.
    dyn_s1_q1)   echo "run --pubs 1 --subs 1 --qos 1 --count $((20000/s)) --topic b/%i --filter b/#" ;;
    dyn_mesh_q1) echo "run --pubs 10 --subs 10 --qos 1 --count $((2000/s)) --topic b/mesh --filter b/mesh" ;;
    fanout_q0) echo "run --pubs 1 --subs 1000 --qos 0 --count $((2000/s)) --topic b/fan --filter b/fan" ;;
    # A stalled consumer (issue 11): 1 -> 4 QoS 1, then the same with a fifth subscriber that
    # never reads. dynamq runs these at its defaults (embedded store on, default queues and
    # flow control), the peers with the configs above.
    fan4_q1)   echo "run --pubs 1 --subs 4 --qos 1 --count $((100000/s)) --topic b/s --filter b/s" ;;
    stall_q1)  echo "run --pubs 1 --subs 4 --stalled 1 --qos 1 --count $((100000/s)) --topic b/s --filter b/s" ;;
    conn)      echo "conn --conns $((CONNS/s)) --hold-secs 5" ;;
    # Issue 9: 10,000 idle connections, the broker's memory read after a 10 s hold.
    conn10k)   echo "conn --conns $((10000/s)) --hold-secs 10" ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

run_one() { # BROKER SCENARIO REP [tag] [extra dynamq args...]
  local broker=$1 scenario=$2 rep=$3 tag=${4:-$1}; shift 4 || shift $#
  local port_var="PORT_$broker" args extra=()
  args=$(scenario_args "$scenario")
  local conf=${DYNAMQ_CONF:-}
  [[ $scenario == fan4_q1 || $scenario == stall_q1 ]] && conf="$WORK/dynamq-defaults.toml"
  [[ $broker == dynamq ]] && set -- "$@" --http "127.0.0.1:$PORT_metrics"
  DYNAMQ_CONF=$conf start_broker "$broker" "$@" || { echo "{\"error\":\"broker did not start\"}" > "$OUT/$tag.$scenario.$rep.json"; return 0; }
  local data_before
  data_before=$(du -sk "$WORK/data" 2>/dev/null | cut -f1)
  [[ $scenario == conn* ]] && extra=(--broker-pid "$BROKER_PID")
  local cpu_before cpu_after
  cpu_before=$(cpu_ticks "$BROKER_PID")
  # shellcheck disable=SC2086
  timeout 150 taskset -c 1 "$BENCH" $args --port "${!port_var}" --max-secs 90 --quiet "${extra[@]}" \
    > "$OUT/$tag.$scenario.$rep.json" 2>>"$WORK/bench.log" || true
  if [[ $broker == dynamq ]]; then
    # With a store in async durability, writes go on after the last PUBACK: their CPU is
    # part of what a delivery costs, so the CPU is read once the writer has nothing pending
    # (at most 60 s more; the wait is recorded). No store: no such metric, no wait.
    local waited=0 pending
    while (( waited < 600 )); do
      pending=$(curl -s --max-time 2 "http://127.0.0.1:$PORT_metrics/metrics" | awk '$1 == "dynamq_store_ops_pending" {print $2}')
      [[ -z $pending || $pending == 0 ]] && break
      sleep 0.1; waited=$(( waited + 1 ))
    done
    echo "$waited" > "$OUT/$tag.$scenario.$rep.drain"
  fi
  cpu_after=$(cpu_ticks "$BROKER_PID")
  if [[ -n $cpu_before && -n $cpu_after ]]; then
    echo "$(( cpu_after - cpu_before )) $CLK_TCK" > "$OUT/$tag.$scenario.$rep.cpu"
  fi
  # The broker's peak resident memory over its life (this run), in kB.
  awk '/^VmHWM:/ {print $2}' "/proc/$BROKER_PID/status" > "$OUT/$tag.$scenario.$rep.hwm" 2>/dev/null || true
  # What the run left in the data directory (the embedded store), in kB, before the broker
  # stops (Mosquitto writes its file only then).
  echo "$(( $(du -sk "$WORK/data" 2>/dev/null | cut -f1) - ${data_before:-0} ))" > "$OUT/$tag.$scenario.$rep.disk"
  [[ -s "$OUT/$tag.$scenario.$rep.json" ]] || echo '{"error":"no summary"}' > "$OUT/$tag.$scenario.$rep.json"
  stop_broker
  log "$tag $scenario #$rep: $(head -c 400 "$OUT/$tag.$scenario.$rep.json")"
}

write_configs
{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "load before: $(uptime)"
  echo "mosquitto: $("$MOSQUITTO" -h 2>&1 | head -1)"
  echo "rumqttd: $("$RUMQTTD" --version 2>/dev/null || echo 'not installed')"
  echo "dynamq: $(git -C "$ROOT" log -1 --format='%h %s' -- src) (binary $(date -r "$DYNAMQ" -u +%FT%TZ))"
  echo "open files: $NOFILE, idle connections: $CONNS"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# A name of --brokers: the broker, its configuration and its flags.
run_tag() { # TAG SCENARIO REP
  local tag=$1 scenario=$2 rep=$3 defaults="$WORK/dynamq-defaults.toml"
  case "$tag" in
    dynamq-defaults) DYNAMQ_CONF=$defaults run_one dynamq "$scenario" "$rep" "$tag" ;;
    dynamq-none) DYNAMQ_CONF=$defaults run_one dynamq "$scenario" "$rep" "$tag" --store none ;;
    dynamq-sync) DYNAMQ_CONF=$defaults run_one dynamq "$scenario" "$rep" "$tag" --durability sync ;;
    mosquitto-persist) MOSQ_CONF="$WORK/mosquitto-persist.conf" run_one mosquitto "$scenario" "$rep" "$tag" ;;
    dynamq|mosquitto|rumqttd) run_one "$tag" "$scenario" "$rep" ;;
    *) echo "unknown broker $tag" >&2; return 1 ;;
  esac
}

for scenario in $SCENARIOS; do
  for rep in $(seq 1 "$REPS"); do
    for broker in $BROKERS; do
      run_tag "$broker" "$scenario" "$rep"
    done
  done
done

# ---------------------------------------------------------------- persistence (dynamq alone)
# The tutorial's hooks (the default when none are configured) on the embedded store, then on
# DynamoDB as served by dynalite (pinned to the load generator's core, off the broker's).
if [[ $PERSISTENCE == 1 ]]; then
  if "$DYNAMQ" serve --help | grep -q -- '--store'; then
    for rep in $(seq 1 "$REPS"); do
      for scenario in s1_q1 mesh_q1; do
        DYNAMQ_CONF="$WORK/dynamq-base.toml" run_one dynamq "$scenario" "$rep" dynamq-embedded --store embedded
      done
    done
    DYNALITE=""
    for cli in "$ROOT/tests/node/node_modules/dynalite/cli.js" "$TOOLS/node_modules/dynalite/cli.js"; do
      [[ -f $cli ]] && { DYNALITE=$cli; break; }
    done
    if [[ -z $DYNALITE ]] && command -v npm >/dev/null; then
      log "installing dynalite into $TOOLS (npm)"
      npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error dynalite >&2 || true
      [[ -f "$TOOLS/node_modules/dynalite/cli.js" ]] && DYNALITE="$TOOLS/node_modules/dynalite/cli.js"
    fi
    if [[ -n $DYNALITE ]]; then
      taskset -c 1 node "$DYNALITE" --port 28000 >"$WORK/dynalite.log" 2>&1 &
      PIDS+=("$!")
      wait_port 28000 "$!" || log "dynalite did not start"
      { cat "$WORK/dynamq-base.toml"
        printf '[store]\nkind = "dynamo"\n[store.dynamo]\nendpoint = "http://127.0.0.1:28000"\n'
        printf 'region = "us-west-2"\naccess_key_id = "bench"\nsecret_access_key = "bench"\n'
      } > "$WORK/dynamq-dynamo.toml"
      if "$DYNAMQ" tables create --config "$WORK/dynamq-dynamo.toml" >"$WORK/tables.log" 2>&1; then
        for rep in $(seq 1 "$REPS"); do
          for scenario in dyn_s1_q1 dyn_mesh_q1; do
            DYNAMQ_CONF="$WORK/dynamq-dynamo.toml" run_one dynamq "$scenario" "$rep" dynamq-dynalite --store dynamo
          done
        done
      else
        echo "dynalite runs not run: dynamq tables create failed: $(tail -1 "$WORK/tables.log")" >> "$OUT/persistence.txt"
      fi
    else
      echo "dynalite runs not run: dynalite not found (scripts/install-deps.sh installs it)" >> "$OUT/persistence.txt"
    fi
  else
    echo "not run: this dynamq serve has no --store option yet" > "$OUT/persistence.txt"
  fi
  cat "$OUT/persistence.txt" 2>/dev/null >&2 || true
fi

# ---------------------------------------------------------------- DynamoDB writes (issue 9)
# Items written per second to dynalite, four ways, each against a fresh in-memory dynalite
# (pinned to core 1, the load generator's; the writer, broker or dynamo-raw, on core 0):
#   dyn-raw       dynamo-raw: BatchWriteItem, 25 items a request, 8 requests in flight
#   dyn-put8      dynamo-raw: one PutItem per item, 8 in flight (the original plugin's pool)
#   dynamq-async  dynamq --store dynamo --durability async, 1->1 QoS 1, the tutorial's hooks
#   dynamq-sync   the same with --durability sync
# For dynamq every item the store writer applied counts (dynamq_store_ops_written_total on
# /metrics: mqtt_msg puts, map adds, mqtt_client and mqtt_sub puts, ...), over the time from
# the load generator's start until the writer has nothing pending.
DYN_PORT=28001
HTTP_PORT=21890
DYN_MSGS=$((20000/SCALE))
RAW_ITEMS=$((60000/SCALE))
PUT_ITEMS=$((20000/SCALE))

find_dynalite() {
  for cli in "${DYNALITE_CLI:-}" "$ROOT/tests/node/node_modules/dynalite/cli.js" "$TOOLS/node_modules/dynalite/cli.js"; do
    [[ -n $cli && -f $cli ]] && { echo "$cli"; return 0; }
  done
  return 1
}

metric() { # NAME -> value on the broker's /metrics (empty if none)
  curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="dynamq_$1" '$1 == m {print $2}'
}

dynamo_one() { # TAG REP
  local tag=$1 rep=$2 file="$OUT/$1.dynamo.$2"
  taskset -c 1 node "$DYNALITE" --port "$DYN_PORT" >>"$WORK/dynalite.log" 2>&1 &
  local dyn_pid=$!
  PIDS+=("$dyn_pid")
  if ! wait_port "$DYN_PORT" "$dyn_pid" || ! "$DYNAMQ" tables create --config "$WORK/dynamq-dyn.toml" >>"$WORK/tables.log" 2>&1; then
    echo '{"error":"dynalite or its tables did not start"}' > "$file.json"
  else
    case "$tag" in
      dyn-raw|dyn-put8)
        local batch=25 items=$RAW_ITEMS
        [[ $tag == dyn-put8 ]] && { batch=1; items=$PUT_ITEMS; }
        timeout 150 taskset -c 0 "$BENCH" dynamo-raw --endpoint "http://127.0.0.1:$DYN_PORT" \
          --items "$items" --batch "$batch" --concurrency 8 --max-secs 90 \
          > "$file.json" 2>>"$WORK/bench.log" || true ;;
      dynamq-async|dynamq-sync)
        if DYNAMQ_CONF="$WORK/dynamq-dyn.toml" start_broker dynamq --store dynamo \
             --durability "${tag#dynamq-}" --http "127.0.0.1:$HTTP_PORT"; then
          local w0 t0 t1 pending=1 cpu0 cpu1
          w0=$(metric store_ops_written_total)
          cpu0=$(cpu_ticks "$BROKER_PID")
          t0=$(date +%s.%N)
          timeout 150 taskset -c 1 "$BENCH" run --pubs 1 --subs 1 --qos 1 --count "$DYN_MSGS" \
            --topic b/%i --filter b/# --port "$PORT_dynamq" --max-secs 90 --quiet \
            > "$file.json" 2>>"$WORK/bench.log" || true
          for _ in $(seq 1 1200); do  # the writer drains: at most 120 s more
            pending=$(metric store_ops_pending)
            [[ $pending == 0 ]] && break
            sleep 0.1
          done
          t1=$(date +%s.%N)
          cpu1=$(cpu_ticks "$BROKER_PID")
          # written_before written_after secs pending_at_end failed cpu_ticks ticks_per_sec
          echo "${w0:-0} $(metric store_ops_written_total) $(echo "$t1 - $t0" | bc -l) ${pending:-?} $(metric store_ops_failed_total) $(( cpu1 - cpu0 )) $CLK_TCK" > "$file.store"
          stop_broker
        else
          echo '{"error":"broker did not start"}' > "$file.json"
        fi ;;
    esac
  fi
  [[ -s "$file.json" ]] || echo '{"error":"no summary"}' > "$file.json"
  kill "$dyn_pid" 2>/dev/null || true
  wait "$dyn_pid" 2>/dev/null || true
  PIDS=("${PIDS[@]/$dyn_pid}")
  log "$tag dynamo #$rep: $(head -c 300 "$file.json") $(cat "$file.store" 2>/dev/null)"
}

if [[ $DYNAMO == 1 ]]; then
  if DYNALITE=$(find_dynalite); then
    { cat "$WORK/dynamq-defaults.toml"
      printf '[store]\nkind = "dynamo"\n[store.dynamo]\nendpoint = "http://127.0.0.1:%s"\n' "$DYN_PORT"
      printf 'region = "us-west-2"\naccess_key_id = "bench"\nsecret_access_key = "bench"\n'
    } > "$WORK/dynamq-dyn.toml"
    for rep in $(seq 1 "$REPS"); do
      for tag in dyn-raw dyn-put8 dynamq-async dynamq-sync; do
        dynamo_one "$tag" "$rep"
      done
    done
  else
    echo "DynamoDB write benchmark not run: dynalite not found (set DYNALITE_CLI)" >> "$OUT/persistence.txt"
  fi
fi

echo "load after: $(uptime)" >> "$OUT/machine.txt"
python3 "$ROOT/bench/report.py" "$OUT"
log "raw results: $OUT"
