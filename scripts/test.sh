#!/usr/bin/env bash
# scripts/test.sh: the project's one test command (`make test`, `.ci/run`).
#
# Starts real servers on loopback, exports where they listen, checks formatting
# and vet, then runs `go test -race`. Everything it starts it stops on exit
# (success, failure or Ctrl-C); the exit code is the checks'/tests' exit code.
#
#   scripts/test.sh                          # everything: ./...
#   scripts/test.sh -run Smoke ./internal/...  # args go to `go test` instead of ./...
#
# Servers (all our own processes on free ports in 10000-21999, never the
# distro's service, which apt may start on 6379):
#   - redis-server, standalone                     SUPPRESSD_TEST_REDIS_ADDR
#   - Redis Cluster, 3 masters, no replicas        SUPPRESSD_TEST_REDIS_CLUSTER
#   - Apache Kafka, one KRaft broker+controller    SUPPRESSD_TEST_KAFKA_BROKERS
#     run from Maven Central jars (scripts/kafka/pom.xml), cached outside the
#     work tree in ${SUPPRESSD_CACHE:-$HOME/.cache/suppressd}.
#     The same broker's SASL_SSL listener          SUPPRESSD_TEST_KAFKA_SASL_BROKERS
#     (SCRAM-SHA-512 over TLS): its user and       SUPPRESSD_TEST_KAFKA_SASL_USERNAME
#     password (random per run), and the CA        SUPPRESSD_TEST_KAFKA_SASL_PASSWORD
#     that signed its certificate (PEM)            SUPPRESSD_TEST_KAFKA_TLS_CA_FILE
#   - redis-server, TLS only, with an ACL user     SUPPRESSD_TEST_REDIS_TLS_ADDR
#     limited to keys sd:* and the store's         SUPPRESSD_TEST_REDIS_TLS_USERNAME
#     commands (default user off); password        SUPPRESSD_TEST_REDIS_TLS_PASSWORD
#     random per run; the CA (PEM)                 SUPPRESSD_TEST_REDIS_TLS_CA_FILE
#     The CA and certificate are made with openssl per run in the temp dir.
#   plus SUPPRESSD_TEST_SCHEMATHESIS: schemathesis's `st`, installed from PyPI
#   once into a virtualenv, ${SUPPRESSD_CACHE:-$HOME/.cache/suppressd}/venv.
#   plus SUPPRESSD_TEST_KAFKA_HOME (the cached jars, whose lib/ a test that
#   kills a broker starts its own from: internal/testkafka.StartBroker),
#   plus SUPPRESSD_TEST_REDIS_SERVER (the binary) and SUPPRESSD_TEST_REQUIRE=1,
#   which makes internal/testenv fail, not skip, a test whose server is missing.
#
# Knobs (environment):
#   KAFKA_VERSION             Kafka release to run (default below)
#   SUPPRESSD_CACHE           cache directory (Kafka jars, schemathesis venv)
#   SUPPRESSD_READY_TIMEOUT   seconds to wait for the servers (default 120)
#   SUPPRESSD_KEEP_LOGS=1     keep the temp dir (server logs) instead of deleting it
#   SUPPRESSD_RACE=0          run without -race (for benchmarks: scripts/bench.sh)
#
# Needs: Go, bash. Installs from Debian when missing: redis-server, a JRE, Maven,
# openssl, python3 and python3-venv (then schemathesis from PyPI).
# Does not need kcat, Docker, or a Kafka tarball.
set -euo pipefail

# Kafka 4.4.0: the newest release on Maven Central when this was written
# (2026-11), and kafka-go v0.4.51 passes the consumer-group smoke test against it.
# Any 4.x works with kafka-go >= v0.4.48: Kafka 4.0.0 dropped JoinGroup v0/v1
# (KIP-896; its ApiVersions say JoinGroup v2-v9), and kafka-go v0.4.48+
# negotiates JoinGroup v1..v2, so it uses v2 (v0.4.47 only sent v1 and fails
# on 4.0.0: segmentio/kafka-go#1378). 4.0.1 and 4.1.0+ accept v0/v1 again
# (KAFKA-19444). Tested here with 4.0.0, 4.1.2, 4.4.0 and 3.9.2
# (KAFKA_VERSION=3.9.2 uses the pom's "kafka3" profile for the log4j 1
# binding that 3.x needs).
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
CACHE=${SUPPRESSD_CACHE:-$HOME/.cache/suppressd}
READY_TIMEOUT=${SUPPRESSD_READY_TIMEOUT:-120}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

START=$SECONDS
log() { printf '[test.sh +%3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Clean-up: registered first, so even a failure half-way through set-up stops
# what was started. Redis stops at once on SIGTERM; Kafka's controlled
# shutdown can take a while and its data is thrown away anyway, so anything
# still alive after a short grace period is killed.
# ---------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/suppressd-test.XXXXXX")
PIDS=()
CLEAN_DIRS=("$WORK")
# shellcheck disable=SC2317 # reached through the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if ((${#PIDS[@]})); then
		kill -TERM "${PIDS[@]}" 2>/dev/null
		for _ in $(seq 50); do
			local alive=0
			for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
			((alive)) || break
			sleep 0.1
		done
		kill -KILL "${PIDS[@]}" 2>/dev/null
		wait "${PIDS[@]}" 2>/dev/null
	fi
	if [[ ${SUPPRESSD_KEEP_LOGS:-} == 1 ]]; then
		log "logs kept in $WORK"
		CLEAN_DIRS=("${CLEAN_DIRS[@]:1}")
	fi
	((${#CLEAN_DIRS[@]})) && rm -rf "${CLEAN_DIRS[@]}"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Arguments: package patterns among them (./x, ../x, ., module path) are also
# what gofmt and vet check; without any, everything (./...).
# ---------------------------------------------------------------------------
MODULE=$(go list -m)
TEST_ARGS=("$@")
PKGS=()
for a in "$@"; do
	case $a in
	. | ./* | ../* | "$MODULE" | "$MODULE"/*) PKGS+=("$a") ;;
	esac
done
if ((${#PKGS[@]} == 0)); then
	PKGS=(./...)
	TEST_ARGS+=(./...)
fi
FMT_DIRS=()
for p in "${PKGS[@]}"; do
	p=${p/#$MODULE/.}
	p=${p%/...}
	[[ $p == ... ]] && p=.
	FMT_DIRS+=("${p:-.}")
done

# ---------------------------------------------------------------------------
# Tools. A fresh Debian machine has Go but maybe not these; install what is
# missing (apt-get update at most once). Non-interactive for CI (no stdin).
# ---------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
	[[ $(id -u) == 0 ]] || die "need root to apt-get install $*; install it yourself"
	if ((!APT_UPDATED)); then
		log "apt-get update"
		apt-get update -qq
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
		</dev/null >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get install $* failed"; }
}
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	apt_install redis-server redis-tools
fi
command -v chromium >/dev/null || apt_install chromium
command -v java >/dev/null || apt_install default-jre-headless
command -v mvn >/dev/null || apt_install maven
command -v openssl >/dev/null || apt_install openssl
REDIS_SERVER=$(command -v redis-server)

JAVA_MAJOR=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
JAVA_MAJOR=${JAVA_MAJOR:-unknown}
if [[ $KAFKA_VERSION != 3.* && ! ${JAVA_MAJOR%%.*} -ge 17 ]] 2>/dev/null; then
	die "Kafka $KAFKA_VERSION needs Java 17+, found $JAVA_MAJOR"
fi

# ---------------------------------------------------------------------------
# schemathesis (PyPI), which API tests run against the service: one virtualenv
# under the cache, made with Debian's python3 (python3-venv brings ensurepip)
# and reused by later runs. Built in the background while the servers start;
# a lock keeps two runs from building it at once, and the marker, written
# last, makes an interrupted build start over.
# ---------------------------------------------------------------------------
SCHEMATHESIS_VERSION=4.32.5
VENV=$CACHE/venv
venv_ok() {
	[[ $(cat "$VENV/.complete" 2>/dev/null) == "schemathesis==$SCHEMATHESIS_VERSION" && -x $VENV/bin/st ]] &&
		"$VENV/bin/python" -c '' 2>/dev/null
}
make_venv() {
	exec 9>"$CACHE/.venv.lock"
	flock 9
	venv_ok && return
	rm -rf "$VENV"
	/usr/bin/python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q --disable-pip-version-check --no-input "schemathesis==$SCHEMATHESIS_VERSION"
	"$VENV/bin/st" --version
	echo "schemathesis==$SCHEMATHESIS_VERSION" >"$VENV/.complete"
}
mkdir -p "$CACHE"
VENV_BUILD=0
if ! venv_ok; then
	VENV_BUILD=1
	/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
	log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $VENV (in the background)"
fi
make_venv >"$WORK/venv.log" 2>&1 </dev/null &
VENV_PID=$!
PIDS+=("$VENV_PID")

# ---------------------------------------------------------------------------
# Ports: the first free port from a random start in 10000-21999, so the
# distro's redis on 6379 never collides with ours and two runs at once (two
# checkouts, a developer and CI) rarely pick the same ports. The range stays
# below Linux's ephemeral ports (32768+) even for a cluster node's bus port,
# which is port+10000. Checking then binding is racy, so once started, each
# server is also checked to be ours (redis process_id, Kafka cluster id).
# ---------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
RESERVED=" "
pick_port() { # pick_port VAR [bus]
	local var=$1 bus=${2:-} p=$((10000 + RANDOM % 12000))
	while :; do
		((p < 22768)) || p=10000
		if [[ $RESERVED != *" $p "* && $RESERVED != *" $((p + 10000)) "* ]] && ! port_in_use "$p" &&
			{ [[ -z $bus ]] || ! port_in_use $((p + 10000)); }; then
			RESERVED+="$p "
			[[ -z $bus ]] || RESERVED+="$((p + 10000)) "
			printf -v "$var" '%s' "$p"
			return
		fi
		p=$((p + 1))
	done
}
pick_port KAFKA_PORT
pick_port KAFKA_CONTROLLER_PORT
pick_port KAFKA_SASL_PORT
pick_port REDIS_PORT
pick_port REDIS_TLS_PORT
pick_port CLUSTER_PORT1 bus
pick_port CLUSTER_PORT2 bus
pick_port CLUSTER_PORT3 bus
CLUSTER_PORTS=("$CLUSTER_PORT1" "$CLUSTER_PORT2" "$CLUSTER_PORT3")

# ---------------------------------------------------------------------------
# Kafka jars: resolved once per version from Maven Central into the cache,
# built in a temp dir and renamed into place so an interrupted download never
# leaves a half-filled cache that later runs would trust.
# ---------------------------------------------------------------------------
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
if [[ ! -f $KAFKA_HOME/.complete ]]; then
	log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME"
	mkdir -p "$CACHE"
	staging=$(mktemp -d "$CACHE/.kafka-$KAFKA_VERSION.XXXXXX")
	CLEAN_DIRS+=("$staging")
	case $KAFKA_VERSION in 3.*) profile=kafka3 ;; *) profile=kafka4 ;; esac
	# Output goes to a log (shown on failure): even with -q -B, Maven 3.8 prints stray colour codes.
	mvn -q -B --no-transfer-progress -Dstyle.color=never -f scripts/kafka/pom.xml -P "$profile" \
		dependency:copy-dependencies -DoutputDirectory="$staging/lib" \
		-DincludeScope=runtime -Dkafka.version="$KAFKA_VERSION" </dev/null >"$WORK/mvn.log" 2>&1 ||
		{ cat "$WORK/mvn.log" >&2; die "Maven could not resolve Kafka $KAFKA_VERSION (is it on Maven Central?)"; }
	touch "$staging/.complete"
	rm -rf "$KAFKA_HOME"
	mv "$staging" "$KAFKA_HOME"
	log "Kafka jars cached ($(du -sh "$KAFKA_HOME/lib" | cut -f1))"
fi
# The version actually run, from the broker jar's name (kafka_2.13-X.jar).
KAFKA_JARS=("$KAFKA_HOME"/lib/kafka_2.13-*.jar)
KAFKA_RUNNING_VERSION=$(basename "${KAFKA_JARS[0]}" .jar)
KAFKA_RUNNING_VERSION=${KAFKA_RUNNING_VERSION#kafka_2.13-}

# ---------------------------------------------------------------------------
# Secrets and certificates of the secured servers, made per run in the work
# dir (removed on exit): a CA and one server certificate (EC P-256, for
# 127.0.0.1 and localhost, two days) that Kafka's SASL_SSL listener and the
# TLS redis-server both present. The passwords are random per run and never
# printed; the Redis config holds only the password's SHA-256.
# ---------------------------------------------------------------------------
TLS_DIR=$WORK/tls
mkdir -p "$TLS_DIR"
chmod 700 "$TLS_DIR"
cat >"$TLS_DIR/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = suppressd test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
EOF
(
	cd "$TLS_DIR"
	openssl req -config openssl.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout ca.key -out ca.pem -days 2 -subj "/CN=suppressd test CA $$" -extensions ca
	openssl req -config openssl.cnf -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout server.key -out server.csr -subj /CN=localhost
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
		-days 2 -extfile openssl.cnf -extensions server -out server.pem
	# Kafka reads a PEM key store: the (unencrypted PKCS#8) key, then the chain.
	cat server.key server.pem >kafka-keystore.pem
	openssl verify -CAfile ca.pem server.pem
) >"$WORK/certs.log" 2>&1 || { cat "$WORK/certs.log" >&2; die "openssl could not make the test certificates"; }
KAFKA_SASL_USER=suppressd
KAFKA_SASL_PASSWORD=$(openssl rand -hex 16)
REDIS_TLS_USER=suppressd
REDIS_TLS_PASSWORD=$(openssl rand -hex 16)
# Hides them in what is shown of a server's output.
mask() { sed -e "s/$KAFKA_SASL_PASSWORD/<password>/g" -e "s/$REDIS_TLS_PASSWORD/<password>/g"; }

# ---------------------------------------------------------------------------
# Kafka: one node in KRaft combined mode (broker + controller), loopback only.
# Two client listeners: PLAINTEXT for every test, and SASL_SSL (SCRAM-SHA-512
# over TLS) for the secured-connection tests; brokers talk PLAINTEXT.
# Replication factors are 1 because there is one broker; the small-heap and
# thread settings keep it light on a 2-core machine (the log cleaner's default
# 128 MiB dedupe buffer does not fit a 512 MiB heap).
# ---------------------------------------------------------------------------
KDIR=$WORK/kafka
mkdir -p "$KDIR/data"
cat >"$KDIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/kafka-keystore.pem
log.dirs=$KDIR/data
num.partitions=3
auto.create.topics.enable=true
# Topics judge age by the broker's clock, as docs/operations.md tells
# operators to make the intake topics (internal/smoke TestSmokeLogAppendTime).
log.message.timestamp.type=LogAppendTime
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.cleaner.dedupe.buffer.size=33554432
EOF
if [[ $KAFKA_VERSION == 3.* ]]; then
	cat >"$KDIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KDIR/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
	LOG_OPT=-Dlog4j.configuration=file:$KDIR/log4j.properties
else
	cat >"$KDIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $KDIR/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
	LOG_OPT=-Dlog4j2.configurationFile=$KDIR/log4j2.properties
fi
JAVA_OPTS=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
	-Djava.awt.headless=true -Djava.net.preferIPv4Stack=true "-Dkafka.logs.dir=$KDIR" "$LOG_OPT")

# A cluster id is a base64url (unpadded) 16-byte UUID; making it here saves a
# JVM start for `StorageTool random-uuid`. One draw in 64 starts with '-',
# which the storage tool's parser reads as a flag ("argument --cluster-id:
# expected one argument"), so, like Kafka's own Uuid.randomUuid, draw again
# until it starts with a letter; and pass it as --cluster-id=VALUE anyway.
CLUSTER_ID=
until [[ $CLUSTER_ID == [A-Za-z]* ]]; do
	CLUSTER_ID=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
done
# The SCRAM user goes into the bootstrap metadata at format time (KRaft has
# no ZooKeeper to run kafka-configs against before the broker is up).
log "formatting Kafka storage"
java "${JAVA_OPTS[@]}" -cp "$KAFKA_HOME/lib/*" kafka.tools.StorageTool format \
	--cluster-id="$CLUSTER_ID" -c "$KDIR/server.properties" \
	--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" >"$KDIR/format.log" 2>&1 ||
	{ mask <"$KDIR/format.log" >&2; die "kafka-storage format failed"; }

log "starting Kafka $KAFKA_RUNNING_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT)"
java "${JAVA_OPTS[@]}" -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KDIR/server.properties" \
	>"$KDIR/stdout.log" 2>&1 </dev/null &
KAFKA_PID=$!
PIDS+=("$KAFKA_PID")

kafka_logs() {
	echo "----- Kafka stdout/stderr (tail) -----" >&2
	tail -n 30 "$KDIR/stdout.log" >&2 || true
	echo "----- Kafka server.log (tail) -----" >&2
	tail -n 60 "$KDIR/server.log" >&2 || true
	echo "----- readiness probe (tail) -----" >&2
	tail -n 10 "$KDIR/ready.log" >&2 || true
}

# ---------------------------------------------------------------------------
# While the JVM boots: formatting and vet (cheap failures first).
# ---------------------------------------------------------------------------
log "gofmt -l ${FMT_DIRS[*]}"
unformatted=$(gofmt -l "${FMT_DIRS[@]}")
[[ -z $unformatted ]] || die "gofmt needed on:"$'\n'"$unformatted"
log "go vet ${PKGS[*]}"
go vet "${PKGS[@]}"

# ---------------------------------------------------------------------------
# Redis: standalone + a 3-master cluster + a TLS-only server with an ACL user,
# no persistence, each in its own dir.
# ---------------------------------------------------------------------------
declare -A REDIS_PID
start_redis() { # start_redis NAME PORT [extra redis-server args]
	local name=$1 port=$2
	shift 2
	local dir=$WORK/redis-$name
	mkdir -p "$dir"
	"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --daemonize no \
		--save '' --appendonly no --dir "$dir" --logfile "$dir/redis.log" "$@" </dev/null &
	PIDS+=("$!")
	REDIS_PID[$port]=$!
}
wait_redis() { # wait_redis PORT [redis-cli args]: until it answers PING, then check it is ours
	local port=$1 deadline=$((SECONDS + 15))
	shift
	local cli=(redis-cli -h 127.0.0.1 -p "$port" "$@")
	until [[ $("${cli[@]}" ping 2>/dev/null) == PONG ]]; do
		((SECONDS < deadline)) || { tail -n 20 "$WORK"/redis-*/redis.log >&2; die "redis on port $port did not start"; }
		sleep 0.05
	done
	local pid
	pid=$("${cli[@]}" info server | tr -d '\r' | sed -n 's/^process_id://p')
	[[ $pid == "${REDIS_PID[$port]}" ]] ||
		die "port $port is served by another redis (pid $pid), not ours (${REDIS_PID[$port]}): port race, run again"
}
log "starting redis-server on :$REDIS_PORT and a cluster on :${CLUSTER_PORTS[*]}"
start_redis standalone "$REDIS_PORT"
for p in "${CLUSTER_PORTS[@]}"; do
	start_redis "cluster-$p" "$p" --cluster-enabled yes \
		--cluster-config-file "$WORK/redis-cluster-$p/nodes.conf" --cluster-node-timeout 5000
done
# TLS only (port 0), the certificate above; clients are not asked for one.
# The default user is off; the one user may touch the keys sd:* with the
# commands of the suppression store (hashes, strings, scripts, SCAN, UNLINK,
# MULTI, WAIT) and what a client needs to connect (HELLO, PING, INFO...), no
# admin or dangerous command (FLUSHALL, CONFIG, KEYS, SCRIPT FLUSH...).
# Redis 7.0 has no CLIENT SETINFO to grant; go-redis ignores its refusal.
REDIS_TLS_DIR=$WORK/redis-tls
mkdir -p "$REDIS_TLS_DIR"
(
	umask 077
	cat >"$REDIS_TLS_DIR/redis.conf" <<EOF
port 0
tls-port $REDIS_TLS_PORT
bind 127.0.0.1
daemonize no
save ""
appendonly no
dir $REDIS_TLS_DIR
logfile $REDIS_TLS_DIR/redis.log
tls-cert-file $TLS_DIR/server.pem
tls-key-file $TLS_DIR/server.key
tls-ca-cert-file $TLS_DIR/ca.pem
tls-auth-clients no
user default off resetpass nocommands
user $REDIS_TLS_USER on #$(printf '%s' "$REDIS_TLS_PASSWORD" | sha256sum | cut -d' ' -f1) resetkeys ~sd* resetchannels -@all +@hash +@string +del +unlink +exists +type +expire +pexpire +ttl +pttl +persist +scan +eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists +multi +exec +discard +watch +unwatch +wait +ping +time +echo +hello +auth +select +info +role +client|setname +client|getname +client|id
EOF
)
log "starting a TLS redis-server on :$REDIS_TLS_PORT"
"$REDIS_SERVER" "$REDIS_TLS_DIR/redis.conf" </dev/null &
PIDS+=("$!")
REDIS_PID[$REDIS_TLS_PORT]=$!
for p in "$REDIS_PORT" "${CLUSTER_PORTS[@]}"; do wait_redis "$p"; done
REDISCLI_AUTH=$REDIS_TLS_PASSWORD wait_redis "$REDIS_TLS_PORT" --tls --cacert "$TLS_DIR/ca.pem" --user "$REDIS_TLS_USER"

redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
	>"$WORK/cluster-create.log" 2>&1 </dev/null ||
	{ cat "$WORK/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
# create returns once the nodes agree on the config; each node reports ok only
# when it sees all 16384 slots served, so poll every node.
deadline=$((SECONDS + READY_TIMEOUT))
for p in "${CLUSTER_PORTS[@]}"; do
	until redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
		((SECONDS < deadline)) || { redis-cli -h 127.0.0.1 -p "$p" cluster info >&2 || true; die "redis cluster not ok on :$p"; }
		sleep 0.1
	done
done
log "redis cluster ok"

# ---------------------------------------------------------------------------
# Kafka readiness: a Go probe (scripts/kafkaready, same kafka-go as the code)
# that needs metadata, topic creation with a leader, and a group coordinator.
# Polled in short attempts so a crashed JVM is noticed at once.
# ---------------------------------------------------------------------------
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/kafkaready" ./scripts/kafkaready
deadline=$((SECONDS + READY_TIMEOUT))
until "$WORK/bin/kafkaready" -brokers "127.0.0.1:$KAFKA_PORT" -cluster-id="$CLUSTER_ID" -timeout 3s \
	>>"$KDIR/ready.log" 2>&1; do
	if ! kill -0 "$KAFKA_PID" 2>/dev/null; then
		kafka_logs
		die "Kafka exited during start-up"
	fi
	if ((SECONDS >= deadline)); then
		kafka_logs
		die "Kafka not ready after ${READY_TIMEOUT}s"
	fi
done
log "Kafka ready"

# ---------------------------------------------------------------------------
# What the tests ran against (for the README).
# ---------------------------------------------------------------------------
log "versions: Kafka $KAFKA_RUNNING_VERSION (kafka_2.13, KRaft, Java $JAVA_MAJOR); $("$REDIS_SERVER" --version | cut -d' ' -f1-3)"

export SUPPRESSD_TEST_REDIS_ADDR=127.0.0.1:$REDIS_PORT
export SUPPRESSD_TEST_REDIS_CLUSTER=127.0.0.1:$CLUSTER_PORT1,127.0.0.1:$CLUSTER_PORT2,127.0.0.1:$CLUSTER_PORT3
export SUPPRESSD_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SUPPRESSD_TEST_REDIS_SERVER=$REDIS_SERVER
export SUPPRESSD_TEST_KAFKA_HOME=$KAFKA_HOME
export SUPPRESSD_TEST_KAFKA_SASL_BROKERS=127.0.0.1:$KAFKA_SASL_PORT
export SUPPRESSD_TEST_KAFKA_SASL_USERNAME=$KAFKA_SASL_USER
export SUPPRESSD_TEST_KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD
export SUPPRESSD_TEST_KAFKA_TLS_CA_FILE=$TLS_DIR/ca.pem
export SUPPRESSD_TEST_REDIS_TLS_ADDR=127.0.0.1:$REDIS_TLS_PORT
export SUPPRESSD_TEST_REDIS_TLS_CA_FILE=$TLS_DIR/ca.pem
export SUPPRESSD_TEST_REDIS_TLS_USERNAME=$REDIS_TLS_USER
export SUPPRESSD_TEST_REDIS_TLS_PASSWORD=$REDIS_TLS_PASSWORD
wait "$VENV_PID" || { cat "$WORK/venv.log" >&2; die "could not install schemathesis into $VENV"; }
if ((VENV_BUILD)); then log "schemathesis installed: $(tail -n 1 "$WORK/venv.log")"; fi
for i in "${!PIDS[@]}"; do
	if [[ ${PIDS[i]} == "$VENV_PID" ]]; then unset 'PIDS[i]'; fi
done
export SUPPRESSD_TEST_SCHEMATHESIS=$VENV/bin/st
export SUPPRESSD_TEST_REQUIRE=1
env | grep '^SUPPRESSD_TEST_' | sort | sed -E 's/^([A-Z_]*PASSWORD)=.*/\1=(random, not shown)/; s/^/  /'

# Benchmarks want the plain build: SUPPRESSD_RACE=0 drops -race.
RACE=(-race)
[[ ${SUPPRESSD_RACE:-1} == 0 ]] && RACE=()
# ---------------------------------------------------------------------------
# Separate Go modules: `./...` stops at a nested go.mod, so list each such
# module directory here (relative to the root): the Helm chart's. They run only
# for a full run (no arguments), against the same servers, beside the main
# module's tests (they need no server and little CPU: 35 s saved), their
# output held until those are done.
# ---------------------------------------------------------------------------
EXTRA_MODULES=(helm)
EXTRA_PIDS=()
if (($# == 0)); then
	for m in "${EXTRA_MODULES[@]}"; do
		(
			cd "$m"
			unformatted=$(gofmt -l .)
			[[ -z $unformatted ]] || { echo "gofmt needed on: $unformatted" >&2; exit 1; }
			go vet ./...
			go test -race -count=1 ./...
		) >"$WORK/module-$m.log" 2>&1 &
		EXTRA_PIDS+=($!)
		PIDS+=($!) # stopped with the servers if the run is interrupted
	done
fi

log "go test ${RACE[*]} -count=1 ${TEST_ARGS[*]}"
rc=0
go test "${RACE[@]}" -count=1 "${TEST_ARGS[@]}" || rc=$?

for i in "${!EXTRA_PIDS[@]}"; do
	m=${EXTRA_MODULES[i]}
	log "module $m: gofmt, vet, test"
	wait "${EXTRA_PIDS[i]}" || rc=1
	cat "$WORK/module-$m.log"
done

if ((rc == 0)); then
	log "PASS (total ${SECONDS}s)"
else
	# The temp dir is deleted on exit, so leave a trace of the broker's view.
	log "FAIL: exit $rc (SUPPRESSD_KEEP_LOGS=1 keeps all server logs); Kafka's last warnings:"
	grep -E '^\[[^]]*\] (WARN|ERROR) ' "$KDIR/server.log" | tail -n 20 || echo "  (none)"
fi
exit "$rc"
