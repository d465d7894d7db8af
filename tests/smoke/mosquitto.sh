#!/usr/bin/env bash
# Smoke test with Mosquitto's own command-line clients (Debian's mosquitto-clients):
# starts the real `wasmq` binary on 127.0.0.1:0, then for MQTT 3.1.1 and 5.0 sends
# messages at QoS 0, 1 and 2 with mosquitto_pub to a waiting mosquitto_sub, checks a
# retained message reaches a later subscriber, and finally stops the broker with SIGTERM
# and checks it exits 0.
#
# Usage: tests/smoke/mosquitto.sh   (WASMQ_BIN overrides target/debug/wasmq)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${WASMQ_BIN:-$repo/target/debug/wasmq}
[[ -x $bin ]] || { echo "smoke: $bin not found: run 'cargo build -p wasmq'" >&2; exit 2; }
for tool in mosquitto_pub mosquitto_sub; do
    command -v "$tool" >/dev/null || { echo "smoke: $tool missing (apt-get install mosquitto-clients)" >&2; exit 2; }
done

work=$(mktemp -d -t wasmq-smoke.XXXXXX)
broker_pid=
cleanup() {
    [[ -n $broker_pid ]] && kill -KILL "$broker_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "  ok    $1"; passed=$((passed + 1)); }
fail() { echo "  FAIL  $1"; failed=$((failed + 1)); }

# The broker: a free port chosen by the kernel, read back from the log line
# `listening address=127.0.0.1:PORT`.
# Run in $work: the default plugin folder and compiled-plugin cache are relative paths.
(cd "$work" && NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} exec "$bin" --listen 127.0.0.1:0 </dev/null >"$work/broker.log" 2>&1) &
broker_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -e 's/\x1b\[[0-9;]*m//g' "$work/broker.log" | sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' | head -n1)
    [[ -n $port ]] && break
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.05
done
if [[ -z $port ]]; then
    echo "smoke: the broker did not start:" >&2
    cat "$work/broker.log" >&2
    exit 1
fi
echo "smoke: wasmq listening on 127.0.0.1:$port"

# Starts `mosquitto_sub -C count` in the background on $1 at QoS $2 (protocol $3) and
# waits until its subscription is in place (the broker logs nothing per subscription,
# so the subscriber's own -d output tells: it prints "received SUBACK").
start_sub() {
    local topic=$1 qos=$2 version=$3 count=$4 out=$5
    # stdbuf: mosquitto_sub block-buffers stdout into a file, hiding the SUBACK line.
    stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$port" -V "$version" -q "$qos" -t "$topic" \
        -C "$count" -W 5 -v -d >"$out.raw" 2>&1 &
    sub_pid=$!
    for _ in $(seq 100); do
        grep -qs "received SUBACK" "$out.raw" && return 0
        sleep 0.05
    done
    echo "smoke: mosquitto_sub got no SUBACK" >&2
    cat "$out.raw" >&2
    return 1
}

# mosquitto_sub -v -d output without the debug lines: "topic payload" per message.
messages_of() {
    grep -v -e '^Client ' -e '^Subscribed' "$1.raw" || true
}

for version in mqttv311 mqttv5; do
    echo "smoke: $version"
    for qos in 0 1 2; do
        topic="smoke/$version/qos$qos"
        out="$work/$version-qos$qos"
        name="$version QoS $qos: 3 messages published by mosquitto_pub arrive at mosquitto_sub"
        if ! start_sub "$topic" "$qos" "$version" 3 "$out"; then fail "$name"; continue; fi
        for i in 1 2 3; do
            mosquitto_pub -h 127.0.0.1 -p "$port" -V "$version" -q "$qos" -t "$topic" -m "hello $i" \
                || echo "smoke: mosquitto_pub failed" >&2
        done
        wait "$sub_pid" && sub_rc=0 || sub_rc=$?
        expected=$(printf '%s hello 1\n%s hello 2\n%s hello 3' "$topic" "$topic" "$topic")
        got=$(messages_of "$out")
        # Every PUBLISH the subscriber received carries the granted QoS (debug lines).
        received_qos=$(grep -o 'Client [^ ]* received PUBLISH (d[01], q[0-2]' "$out.raw" | grep -o 'q[0-2]' | sort -u | tr '\n' ' ')
        if [[ $sub_rc -eq 0 && $got == "$expected" && $received_qos == "q$qos " ]]; then
            pass "$name"
        else
            fail "$name"
            echo "        mosquitto_sub exit $sub_rc, QoS seen: '$received_qos'; expected:"
            sed 's/^/          /' <<<"$expected"
            echo "        got:"
            sed 's/^/          /' "$out.raw"
        fi
    done

    topic="smoke/$version/retained"
    name="$version retained message reaches a later subscriber, with the retain flag"
    mosquitto_pub -h 127.0.0.1 -p "$port" -V "$version" -q 1 -r -t "$topic" -m "kept" \
        || echo "smoke: mosquitto_pub -r failed" >&2
    out="$work/$version-retained"
    # --retained-only: mosquitto_sub prints only messages with the retain flag set.
    if mosquitto_sub -h 127.0.0.1 -p "$port" -V "$version" -q 1 -t "$topic" --retained-only \
        -C 1 -W 5 -v >"$out.raw" 2>&1 && [[ $(cat "$out.raw") == "$topic kept" ]]; then
        pass "$name"
    else
        fail "$name"
        sed 's/^/          /' "$out.raw"
    fi
done

name="SIGTERM stops the broker with exit code 0"
kill -TERM "$broker_pid"
if wait "$broker_pid"; then broker_rc=0; else broker_rc=$?; fi
broker_pid=
if [[ $broker_rc -eq 0 ]] && grep -q "stopped" "$work/broker.log"; then
    pass "$name"
else
    fail "$name (exit $broker_rc)"
    sed 's/^/          /' "$work/broker.log"
fi

echo "smoke: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
