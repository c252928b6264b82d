#!/usr/bin/env bash
# Local Kafka + Redis for development, tests and CI, without Docker.
#
#   scripts/services.sh [start|stop|status|env] [kafka|redis|redis-cluster]...
#
#   start   start what is not running yet (default; all three services unless named)
#   stop    stop what this script started (by recorded pid); never touches other processes
#   status  show what runs where; exit 1 if a service does not answer
#   env     print `export ...` lines:  eval "$(scripts/services.sh env)"
#
# Kafka: single-node KRaft broker assembled from Maven Central jars (see scripts/kafka/pom.xml),
# on non-default ports so a Kafka the user runs on 9092 is left alone. Redis: reused if one
# answers on the port, otherwise installed (apt) if needed and started. Redis Cluster: three
# masters (no replicas) on three consecutive ports, for the store's cluster tests
# (REDIS_CLUSTER_URL); a healthy cluster on those ports is reused, otherwise one is created afresh.
#
# Environment (defaults in brackets):
#   KAFKA_VERSION [3.9.1]  4.x works too; switching versions restarts our broker, wipes its data
#   KAFKA_PORT [19092]  KAFKA_CONTROLLER_PORT [19093]  REDIS_PORT [6379]
#   REDIS_CLUSTER_PORT [17001]  first of the cluster's three ports (each also uses port + 10000)
#   CLUSTER_WAIT_TIMEOUT [30] s  for the new cluster to report cluster_state:ok
#   KAFKA_HEAP_OPTS [-Xms512m -Xmx512m]  KAFKA_WAIT_TIMEOUT [60] s  KAFKA_LOG_LEVEL [WARN]
#   CARDPULSE_CACHE [~/.cache/cardpulse]  Kafka jars per version, shared by all checkouts
#   CARDPULSE_STATE [<repo>/.services]    configs, data, logs and pid files
#   CARDPULSE_STARTED_FILE  start appends the name of each service it launched, so a caller
#                           (.ci/run) can stop exactly those and not what was already running
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1 # never localhost: it may resolve to ::1, where nothing listens
KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_MAJOR="${KAFKA_VERSION%%.*}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"
KAFKA_WAIT_TIMEOUT="${KAFKA_WAIT_TIMEOUT:-60}"
KAFKA_LOG_LEVEL="${KAFKA_LOG_LEVEL:-WARN}"
REDIS_PORT="${REDIS_PORT:-6379}"
CACHE="${CARDPULSE_CACHE:-$HOME/.cache/cardpulse}"
STATE="${CARDPULSE_STATE:-$ROOT/.services}"
STARTED_FILE="${CARDPULSE_STARTED_FILE:-}"

[[ $KAFKA_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KAFKA_VERSION must look like 3.9.1, not '$KAFKA_VERSION'"

POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KSTATE="$STATE/kafka"
KDATA="$KSTATE/data"
KPID="$KSTATE/kafka.pid"
KCONF="$KSTATE/server.properties"
RSTATE="$STATE/redis"
RPID="$STATE/redis.pid"
REDIS_CLUSTER_PORT="${REDIS_CLUSTER_PORT:-17001}"
[[ $REDIS_CLUSTER_PORT =~ ^[0-9]+$ ]] && ((REDIS_CLUSTER_PORT >= 1024 && REDIS_CLUSTER_PORT + 2 + 10000 <= 65535)) ||
  die "REDIS_CLUSTER_PORT must be a port from 1024 to 55533 (the cluster bus uses port + 10000), not '$REDIS_CLUSTER_PORT'"
CLUSTER_PORTS=("$REDIS_CLUSTER_PORT" "$((REDIS_CLUSTER_PORT + 1))" "$((REDIS_CLUSTER_PORT + 2))")
CSTATE="$STATE/redis-cluster"
CLUSTER_WAIT_TIMEOUT="${CLUSTER_WAIT_TIMEOUT:-30}"

now() { local t="$EPOCHREALTIME"; echo "${t/,/.}"; } # some locales use a decimal comma
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Alive and not a zombie (a zombie still answers kill -0).
pid_alive() {
  local stat
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ ${stat%% *} != Z ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# SIGTERM, then SIGKILL after a grace period: Kafka's controlled shutdown usually takes a few
# seconds, but a wedged JVM must not block CI forever.
stop_pid() {
  local pid="$1" name="$2" grace="${3:-30}" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
}

record_started() { [[ -z $STARTED_FILE ]] || echo "$1" >>"$STARTED_FILE"; }

# Installs Debian packages when a command is missing (fresh CI machines have little).
install_pkgs() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo=(sudo)
  fi
  log "installing $* with apt-get"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
need_cmd() { command -v "$1" >/dev/null || install_pkgs "${@:2}"; }

# ---------------------------------------------------------------------------------- Kafka

# The pid recorded by a previous start, if that process is still our broker (pids get reused).
kafka_recorded_pid() {
  local pid
  pid="$(cat "$KPID" 2>/dev/null || true)"
  if pid_alive "$pid" && is_our_broker "$pid"; then echo "$pid"; fi
}

is_our_broker() {
  local -a args
  mapfile -d '' -t args <"/proc/$1/cmdline" 2>/dev/null || return 1
  [[ " ${args[*]} " == *" kafka.Kafka $KCONF "* ]]
}

# Brokers started from this state dir whose pid file was lost (e.g. .services was deleted).
kafka_orphans() {
  local f pid recorded
  recorded="$(kafka_recorded_pid)"
  for f in /proc/[0-9]*; do
    pid="${f#/proc/}"
    [[ $pid != "$recorded" ]] && is_our_broker "$pid" && echo "$pid"
  done
  return 0
}

kafka_answers() { # timeout_s [pid]
  node "$ROOT/scripts/wait-kafka.mjs" --quiet --brokers "$HOST:$KAFKA_PORT" --timeout "$1" ${2:+--pid "$2"}
}

kafka_log_opts() {
  if ((KAFKA_MAJOR >= 4)); then
    echo "-Dlog4j2.configurationFile=$KSTATE/log4j2.properties"
  else
    echo "-Dlog4j.configuration=file:$KSTATE/log4j.properties"
  fi
}

# Jars are assembled once per version into the cache; the stamp holds the pom's checksum so
# an edited pom triggers a rebuild while a warm start costs nothing.
ensure_kafka_libs() {
  local sum stamp="$KAFKA_LIBS/.complete" profile=log-reload4j tmp t0
  sum="$(sha256sum "$POM" | cut -d' ' -f1)"
  [[ -f $stamp && $(<"$stamp") == "$sum" ]] && return 0
  need_cmd java openjdk-17-jre-headless
  need_cmd mvn maven
  ((KAFKA_MAJOR >= 4)) && profile=log-log4j2
  t0="$(now)"
  log "kafka: assembling the $KAFKA_VERSION classpath from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_HOME"
  # Build beside the final folder and rename, so an interrupted download is never mistaken
  # for a complete classpath.
  tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
  # Maven's output goes to a file: even with -q it prints stray colour codes, and it only
  # matters when something fails.
  if ! mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION" -P"$profile" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$KAFKA_HOME/mvn.log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$KAFKA_HOME/mvn.log" >&2
    die "could not download Kafka $KAFKA_VERSION from Maven Central (see $KAFKA_HOME/mvn.log)"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after download"; }
  echo "$sum" >"$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  log "kafka: classpath ready ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars, $(since "$t0"))"
}

write_kafka_config() {
  mkdir -p "$KSTATE"
  cat >"$KCONF" <<EOF
# Generated by scripts/services.sh on each start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KDATA
num.partitions=3
auto.create.topics.enable=true
# One broker: internal topics cannot have more replicas, or consumer groups and
# transactions never become available.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
# Fewer internal partitions make the first group join / transaction on a fresh broker faster.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
# Tests create groups constantly; the 3 s default delay would slow every first join.
group.initial.rebalance.delay.ms=0
EOF
  if ((KAFKA_MAJOR >= 4)); then
    cat >>"$KCONF" <<EOF
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
  fi

  # WARN keeps the log small; the startup line is kept to tell when the broker came up.
  if ((KAFKA_MAJOR >= 4)); then
    cat >"$KSTATE/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KSTATE/server.log
appender.file.filePattern = $KSTATE/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = $KAFKA_LOG_LEVEL
rootLogger.appenderRef.file.ref = FILE
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
EOF
  else
    cat >"$KSTATE/log4j.properties" <<EOF
log4j.rootLogger=$KAFKA_LOG_LEVEL, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$KSTATE/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
EOF
  fi
}

# A KRaft cluster id is 16 random bytes in URL-safe base64 without padding (what
# `StorageTool random-uuid` prints); done here to save a JVM start. Kafka never hands out ids
# starting with '-' because they look like command-line flags.
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    [[ $id != -* ]] && break
  done
  echo "$id"
}

# Format only a fresh data dir. A data dir from another cluster id (or written by another
# Kafka version, which may have a newer metadata format) would stop the broker from starting,
# and its contents are disposable test data, so it is wiped.
ensure_kafka_storage() {
  local cid meta_cid="" data_version=""
  [[ -s $KSTATE/cluster.id ]] || new_cluster_id >"$KSTATE/cluster.id"
  cid="$(<"$KSTATE/cluster.id")"
  if [[ -f $KDATA/meta.properties ]]; then
    meta_cid="$(sed -n 's/^cluster\.id=//p' "$KDATA/meta.properties")"
  fi
  data_version="$(cat "$KSTATE/data.version" 2>/dev/null || true)"
  [[ $meta_cid == "$cid" && $data_version == "$KAFKA_VERSION" ]] && return 0
  if [[ -n $meta_cid ]]; then
    log "kafka: data dir was formatted for cluster $meta_cid by Kafka ${data_version:-?}; wiping it (cluster $cid, Kafka $KAFKA_VERSION)"
  fi
  rm -rf "$KDATA"
  mkdir -p "$KDATA"
  if ! java -cp "$KAFKA_LIBS/*" "$(kafka_log_opts)" kafka.tools.StorageTool format \
    -t "$cid" -c "$KCONF" >"$KSTATE/format.log" 2>&1; then
    cat "$KSTATE/format.log" >&2
    die "formatting the Kafka data dir failed (see $KSTATE/format.log)"
  fi
  echo "$KAFKA_VERSION" >"$KSTATE/data.version"
}

launch_kafka() {
  local i pid
  rm -f "$KPID"
  echo "$KAFKA_VERSION" >"$KSTATE/kafka.version"
  # setsid detaches the broker from the caller's session; the inner shell writes its own pid
  # before exec'ing java, so the pid file is right however setsid forks. fd 9 (the lock) must
  # not leak into the broker or the lock would be held as long as it runs.
  # shellcheck disable=SC2086,SC2016 # heap options are several words; $$ is for the inner shell
  (
    cd "$KSTATE"
    nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KPID" \
      java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true "$(kafka_log_opts)" \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KCONF" \
      </dev/null >"$KSTATE/kafka.out" 2>&1 9>&- &
  )
  for ((i = 0; i < 100; i++)); do
    [[ -s $KPID ]] && break
    sleep 0.05
  done
  pid="$(cat "$KPID" 2>/dev/null || true)"
  [[ -n $pid ]] || die "the Kafka broker did not start (see $KSTATE/kafka.out)"
  echo "$pid"
}

kafka_failed() {
  log "---- last lines of $KSTATE/server.log"
  tail -n 20 "$KSTATE/server.log" >&2 2>/dev/null || true
  log "---- last lines of $KSTATE/kafka.out"
  tail -n 20 "$KSTATE/kafka.out" >&2 2>/dev/null || true
  die "$1"
}

start_kafka() {
  local t0 pid running_version
  t0="$(now)"
  pid="$(kafka_recorded_pid)"
  [[ -n $pid ]] || rm -f "$KPID"
  if [[ -n $pid ]]; then
    running_version="$(cat "$KSTATE/kafka.version" 2>/dev/null || true)"
    if [[ $running_version == "$KAFKA_VERSION" ]]; then
      # Ours and alive: it may still be starting, so give it the full wait.
      if kafka_answers "$KAFKA_WAIT_TIMEOUT" "$pid"; then
        echo "kafka ready on $HOST:$KAFKA_PORT ($KAFKA_VERSION, pid $pid, reused, $(since "$t0"))"
        return 0
      fi
      log "kafka: our broker (pid $pid) does not answer; restarting it"
    else
      log "kafka: our broker (pid $pid) runs Kafka ${running_version:-?}, $KAFKA_VERSION wanted; restarting it"
    fi
    stop_pid "$pid" kafka
    rm -f "$KPID"
  fi
  for pid in $(kafka_orphans); do
    log "kafka: stopping a stale broker of ours (pid $pid) that lost its pid file"
    stop_pid "$pid" kafka
  done

  if port_open "$KAFKA_PORT"; then
    # Someone else's broker (e.g. docker compose publishes the same port): use it, leave it be.
    if kafka_answers 10; then
      echo "kafka ready on $HOST:$KAFKA_PORT (external broker, not managed by services.sh)"
      return 0
    fi
    die "port $KAFKA_PORT is held by something that is not a working Kafka broker; free it or set KAFKA_PORT"
  fi
  port_open "$KAFKA_CONTROLLER_PORT" &&
    die "controller port $KAFKA_CONTROLLER_PORT is in use; free it or set KAFKA_CONTROLLER_PORT"

  ensure_kafka_libs
  write_kafka_config
  ensure_kafka_storage
  pid="$(launch_kafka)"
  if ! kafka_answers "$KAFKA_WAIT_TIMEOUT" "$pid"; then
    pid_alive "$pid" && stop_pid "$pid" kafka 10
    rm -f "$KPID"
    kafka_failed "Kafka $KAFKA_VERSION did not become ready on $HOST:$KAFKA_PORT"
  fi
  record_started kafka
  echo "kafka ready on $HOST:$KAFKA_PORT ($KAFKA_VERSION, pid $pid, $(since "$t0"))"
}

stop_kafka() {
  local pid
  pid="$(kafka_recorded_pid)"
  if [[ -n $pid ]]; then
    stop_pid "$pid" kafka
    echo "kafka stopped (pid $pid)"
  fi
  rm -f "$KPID"
}

status_kafka() {
  local pid
  pid="$(kafka_recorded_pid)"
  if [[ -n $pid ]]; then
    if kafka_answers 5; then
      echo "kafka: running on $HOST:$KAFKA_PORT ($(cat "$KSTATE/kafka.version" 2>/dev/null), pid $pid, started by services.sh)"
      return 0
    fi
    echo "kafka: pid $pid is running but does not answer on $HOST:$KAFKA_PORT (see $KSTATE/server.log)"
    return 1
  fi
  if port_open "$KAFKA_PORT"; then
    if kafka_answers 5; then
      echo "kafka: external broker answering on $HOST:$KAFKA_PORT (not managed by services.sh)"
      return 0
    fi
    echo "kafka: port $KAFKA_PORT is held by something that does not answer as Kafka"
    return 1
  fi
  echo "kafka: not running (port $KAFKA_PORT)"
  return 1
}

# ---------------------------------------------------------------------------------- Redis

redis_ping() {
  if command -v redis-cli >/dev/null; then
    [[ $(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
  else
    # No redis-cli (e.g. Redis runs in a container): speak the protocol directly.
    (
      exec 3<>"/dev/tcp/$HOST/$REDIS_PORT" || exit 1
      printf 'PING\r\n' >&3
      IFS= read -r -t 3 line <&3 || exit 1
      [[ $line == +PONG* ]]
    ) 2>/dev/null
  fi
}

redis_recorded_pid() {
  local pid comm
  pid="$(cat "$RPID" 2>/dev/null || true)"
  pid_alive "$pid" || return 0
  read -r comm <"/proc/$pid/comm" 2>/dev/null || return 0
  [[ $comm == redis-server* ]] && echo "$pid"
  return 0
}

start_redis() {
  local t0 pid i
  t0="$(now)"
  pid="$(redis_recorded_pid)"
  if redis_ping; then
    if [[ -n $pid ]]; then
      echo "redis ready on $HOST:$REDIS_PORT (pid $pid, reused)"
    else
      echo "redis ready on $HOST:$REDIS_PORT (external, not managed by services.sh)"
    fi
    return 0
  fi
  if [[ -n $pid ]]; then
    log "redis: our redis-server (pid $pid) does not answer; restarting it"
    stop_pid "$pid" redis 10
  fi
  rm -f "$RPID"
  if ! command -v redis-server >/dev/null; then
    install_pkgs redis-server redis-tools
    # The Debian package may start its own service on 6379; if that is our port, use it.
    if redis_ping; then
      echo "redis ready on $HOST:$REDIS_PORT (system service, not managed by services.sh)"
      return 0
    fi
  fi
  mkdir -p "$RSTATE"
  # Throwaway test data: no snapshots, no AOF.
  redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$RSTATE" --logfile "$STATE/redis.log" --pidfile "$RPID" </dev/null 9>&- ||
    die "redis-server failed to start (see $STATE/redis.log)"
  for ((i = 0; i < 100; i++)); do
    if redis_ping; then
      record_started redis
      echo "redis ready on $HOST:$REDIS_PORT (pid $(cat "$RPID" 2>/dev/null || echo ?), $(since "$t0"))"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$STATE/redis.log" >&2 2>/dev/null || true
  die "redis-server did not answer on $HOST:$REDIS_PORT within 10s (see $STATE/redis.log)"
}

stop_redis() {
  local pid
  pid="$(redis_recorded_pid)"
  if [[ -n $pid ]]; then
    stop_pid "$pid" redis 10
    echo "redis stopped (pid $pid)"
  fi
  rm -f "$RPID"
}

status_redis() {
  local pid
  pid="$(redis_recorded_pid)"
  if redis_ping; then
    if [[ -n $pid ]]; then
      echo "redis: running on $HOST:$REDIS_PORT (pid $pid, started by services.sh)"
    else
      echo "redis: external server answering on $HOST:$REDIS_PORT (not managed by services.sh)"
    fi
    return 0
  fi
  echo "redis: not answering on $HOST:$REDIS_PORT"
  return 1
}

# -------------------------------------------------------------------------- Redis Cluster

# One node's reply to a command, as text; empty when it does not answer.
redis_query() { # port command...
  if command -v redis-cli >/dev/null; then
    timeout 3 redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null || true
    return 0
  fi
  # No redis-cli: an inline command, and a bulk or simple-string reply read by hand.
  (
    exec 3<>"/dev/tcp/$HOST/$1" || exit 1
    printf '%s\r\n' "${*:2}" >&3
    IFS= read -r -t 3 line <&3 || exit 1
    line="${line%$'\r'}"
    case $line in
      '$'*) ((${line#\$} >= 0)) && IFS= read -r -t 3 -N "${line#\$}" body <&3 && printf '%s\n' "$body" ;;
      '+'*) printf '%s\n' "${line#+}" ;;
    esac
  ) 2>/dev/null || true
}

# A node's `cluster info` field, e.g. cluster_state.
cluster_field() { # port field
  redis_query "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}

# All three nodes say the cluster is ok, with the three of them in it and every slot served.
cluster_healthy() {
  local p info
  for p in "${CLUSTER_PORTS[@]}"; do
    info=$'\n'"$(redis_query "$p" cluster info | tr -d '\r')"$'\n'
    [[ $info == *$'\ncluster_state:ok\n'* && $info == *$'\ncluster_known_nodes:3\n'* &&
      $info == *$'\ncluster_slots_ok:16384\n'* ]] || return 1
  done
}

cluster_pidfile() { echo "$CSTATE/$1/redis.pid"; }

# Pid of the node we started on a port, if it still runs (pids get reused).
cluster_recorded_pid() {
  local pid comm
  pid="$(cat "$(cluster_pidfile "$1")" 2>/dev/null || true)"
  pid_alive "$pid" || return 0
  read -r comm <"/proc/$pid/comm" 2>/dev/null || return 0
  [[ $comm == redis-server* ]] && echo "$pid"
  return 0
}

# The pids of our running nodes, space-separated.
cluster_pids() {
  local p pid out=()
  for p in "${CLUSTER_PORTS[@]}"; do
    pid="$(cluster_recorded_pid "$p")"
    [[ -z $pid ]] || out+=("$pid")
  done
  echo "${out[*]}"
}

cluster_url() {
  local p urls=()
  for p in "${CLUSTER_PORTS[@]}"; do urls+=("$HOST:$p"); done
  local IFS=,
  echo "redis-cluster://${urls[*]}"
}

stop_cluster_nodes() {
  local p pid
  for p in "${CLUSTER_PORTS[@]}"; do
    pid="$(cluster_recorded_pid "$p")"
    [[ -z $pid ]] || stop_pid "$pid" "redis cluster node $p" 10
    rm -f "$(cluster_pidfile "$p")"
  done
}

start_redis-cluster() {
  local t0 p pids i nodes=() ports="${CLUSTER_PORTS[*]}"
  t0="$(now)"
  pids="$(cluster_pids)"
  if cluster_healthy; then
    if [[ $pids == *" "*" "* ]]; then # all three nodes are ours
      echo "redis cluster ready on ${ports// /,} (pids $pids, reused)"
    else
      echo "redis cluster ready on ${ports// /,} (external, not managed by services.sh)"
    fi
    return 0
  fi
  if [[ -n $pids ]]; then
    log "redis cluster: our nodes (pids $pids) do not form a healthy cluster; creating it afresh"
    stop_cluster_nodes
  fi
  for p in "${CLUSTER_PORTS[@]}"; do
    port_open "$p" && die "port $p is held by something that is not a node of a healthy three-node Redis Cluster; free it or set REDIS_CLUSTER_PORT"
    port_open $((p + 10000)) && die "cluster bus port $((p + 10000)) is in use; free it or set REDIS_CLUSTER_PORT"
  done
  need_cmd redis-server redis-server redis-tools
  need_cmd redis-cli redis-tools
  for p in "${CLUSTER_PORTS[@]}"; do
    # A node's nodes.conf remembers its old cluster: throwaway test data, so start from nothing.
    rm -rf "${CSTATE:?}/$p"
    mkdir -p "$CSTATE/$p"
    redis-server --daemonize yes --bind "$HOST" --port "$p" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 --save '' --appendonly no \
      --dir "$CSTATE/$p" --logfile "$CSTATE/$p/redis.log" --pidfile "$(cluster_pidfile "$p")" </dev/null 9>&- ||
      die "redis-server failed to start on port $p (see $CSTATE/$p/redis.log)"
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    for ((i = 0; i < 100; i++)); do
      [[ $(redis_query "$p" ping) == PONG ]] && break
      sleep 0.1
    done
    [[ $(redis_query "$p" ping) == PONG ]] || { stop_cluster_nodes; die "redis cluster node $p did not answer within 10s (see $CSTATE/$p/redis.log)"; }
  done
  for p in "${CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$p"); done
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes </dev/null >"$CSTATE/create.log" 2>&1; then
    tail -n 20 "$CSTATE/create.log" >&2
    stop_cluster_nodes
    die "redis-cli --cluster create failed (see $CSTATE/create.log)"
  fi
  # Slots are assigned at once, but each node says ok only once the others' gossip reached it.
  for ((i = 0; i < CLUSTER_WAIT_TIMEOUT * 10; i++)); do
    if cluster_healthy; then
      record_started redis-cluster
      echo "redis cluster ready on ${ports// /,} (pids $(cluster_pids), $(since "$t0"))"
      return 0
    fi
    sleep 0.1
  done
  for p in "${CLUSTER_PORTS[@]}"; do log "redis cluster node $p: cluster_state:$(cluster_field "$p" cluster_state)"; done
  stop_cluster_nodes
  die "the redis cluster did not report cluster_state:ok within ${CLUSTER_WAIT_TIMEOUT}s (see $CSTATE/*/redis.log)"
}

stop_redis-cluster() {
  local pids
  pids="$(cluster_pids)"
  stop_cluster_nodes
  [[ -z $pids ]] || echo "redis cluster stopped (pids $pids)"
}

status_redis-cluster() {
  local pids p ports="${CLUSTER_PORTS[*]}"
  pids="$(cluster_pids)"
  if cluster_healthy; then
    if [[ -n $pids ]]; then
      echo "redis cluster: running on ${ports// /,} (pids $pids, started by services.sh)"
    else
      echo "redis cluster: external cluster answering on ${ports// /,} (not managed by services.sh)"
    fi
    return 0
  fi
  if [[ -n $pids ]]; then
    echo "redis cluster: our nodes (pids $pids) are not a healthy cluster:"
    for p in "${CLUSTER_PORTS[@]}"; do echo "  $HOST:$p cluster_state:$(cluster_field "$p" cluster_state)"; done
    return 1
  fi
  echo "redis cluster: not running (ports ${ports// /,})"
  return 1
}

# ----------------------------------------------------------------------------------- main

# Serialises start/stop so two callers (a developer and a test run) cannot race on pid files.
lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "another services.sh has held $STATE/.lock for 5 minutes"
}

cmd="${1:-start}"
[[ $# -gt 0 ]] && shift
services=("$@")
((${#services[@]})) || services=(kafka redis redis-cluster)
for s in "${services[@]}"; do
  [[ $s == kafka || $s == redis || $s == redis-cluster ]] || die "unknown service '$s' (kafka, redis, redis-cluster)"
done

case "$cmd" in
  start)
    lock_state
    for s in "${services[@]}"; do "start_$s"; done
    ;;
  stop)
    lock_state
    for s in "${services[@]}"; do "stop_$s"; done
    ;;
  status)
    rc=0
    for s in "${services[@]}"; do "status_$s" || rc=1; done
    exit "$rc"
    ;;
  env)
    # Only the services named, so that a cluster not started is not handed to the tests.
    for s in "${services[@]}"; do
      case "$s" in
        kafka) echo "export KAFKA_BROKERS=$HOST:$KAFKA_PORT" ;;
        redis) echo "export REDIS_URL=redis://$HOST:$REDIS_PORT" ;;
        redis-cluster) echo "export REDIS_CLUSTER_URL=$(cluster_url)" ;;
      esac
    done
    ;;
  -h | --help | help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    ;;
  *) die "unknown command '$cmd' (start, stop, status, env)" ;;
esac
