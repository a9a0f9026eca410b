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
#                     [--scenarios "s1_q0 s1_q1 ..."] [--persistence] [--no-build]
#                     [--out DIR]
#   --quick        counts divided by 10 (a check of the harness, not a benchmark)
#   --persistence  also run dynamq alone with its store (embedded, and DynamoDB on dynalite)
#   --no-build     use the binaries already in target/ (default: cargo build --release)
# DYNAMQ_BIN and BENCH_BIN name other binaries (e.g. a build of an earlier commit).
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
    --no-build) BUILD=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
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
DYNAMQ="${DYNAMQ_BIN:-$ROOT/target/release/dynamq}"
BENCH="${BENCH_BIN:-$ROOT/target/release/dynamq-bench}"
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

start_broker() { # NAME [extra dynamq args...]
  local name=$1; shift
  local port_var="PORT_$name" port
  port=${!port_var}
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  case "$name" in
    mosquitto) taskset -c 0 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/$name.log" 2>&1 & ;;
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
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

run_one() { # BROKER SCENARIO REP [tag] [extra dynamq args...]
  local broker=$1 scenario=$2 rep=$3 tag=${4:-$1}; shift 4 || shift $#
  local port_var="PORT_$broker" args extra=()
  args=$(scenario_args "$scenario")
  local conf=${DYNAMQ_CONF:-}
  [[ $scenario == fan4_q1 || $scenario == stall_q1 ]] && conf="$WORK/dynamq-defaults.toml"
  DYNAMQ_CONF=$conf start_broker "$broker" "$@" || { echo "{\"error\":\"broker did not start\"}" > "$OUT/$tag.$scenario.$rep.json"; return 0; }
  [[ $scenario == conn ]] && extra=(--broker-pid "$BROKER_PID")
  local cpu_before cpu_after
  cpu_before=$(cpu_ticks "$BROKER_PID")
  # shellcheck disable=SC2086
  timeout 150 taskset -c 1 "$BENCH" $args --port "${!port_var}" --max-secs 90 --quiet "${extra[@]}" \
    > "$OUT/$tag.$scenario.$rep.json" 2>>"$WORK/bench.log" || true
  cpu_after=$(cpu_ticks "$BROKER_PID")
  if [[ -n $cpu_before && -n $cpu_after ]]; then
    echo "$(( cpu_after - cpu_before )) $CLK_TCK" > "$OUT/$tag.$scenario.$rep.cpu"
  fi
  # The broker's peak resident memory over its life (this run), in kB.
  awk '/^VmHWM:/ {print $2}' "/proc/$BROKER_PID/status" > "$OUT/$tag.$scenario.$rep.hwm" 2>/dev/null || true
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

for scenario in $SCENARIOS; do
  for rep in $(seq 1 "$REPS"); do
    for broker in $BROKERS; do
      run_one "$broker" "$scenario" "$rep"
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

echo "load after: $(uptime)" >> "$OUT/machine.txt"
python3 "$ROOT/bench/report.py" "$OUT"
log "raw results: $OUT"
