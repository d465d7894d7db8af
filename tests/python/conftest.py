"""Fixtures for the paho-mqtt end-to-end tests.

`broker` starts the real `wasmq` binary on 127.0.0.1:0 (a fresh broker per test), reads
the address it bound from its `listening address=...` log line, and on teardown stops it
with SIGTERM and asserts it exits 0. `mqtt_client` makes connected paho-mqtt 2.x clients
whose received messages land in a queue, so every wait in a test is bounded.

The binary is `$WASMQ_BIN` when set, else `target/debug/wasmq` (`scripts/test` builds it
with `cargo build -p wasmq` before running pytest).
"""

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT_SECS = 5.0
LISTENING = re.compile(r"listening address=(\S+):(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# `$SYS` every second, so the `$SYS` test waits about a second, not ten.
TEST_CONFIG = """\
[sys]
interval_secs = 1
"""


def broker_binary() -> Path:
    binary = Path(os.environ.get("WASMQ_BIN", REPO / "target" / "debug" / "wasmq"))
    if not binary.exists():
        pytest.exit(f"{binary} not found: build it with `cargo build -p wasmq`", returncode=2)
    return binary


class Broker:
    """A running `wasmq` process."""

    def __init__(self, workdir: Path, config: str):
        config_path = workdir / "wasmq.toml"
        config_path.write_text(config)
        self.log_path = workdir / "wasmq.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(broker_binary()), "--config", str(config_path), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            # The default plugin folder and cache are relative: keep them in the workdir.
            cwd=workdir,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        self.host, self.port = self._wait_for_address()

    def _wait_for_address(self):
        deadline = time.monotonic() + WAIT_SECS
        while time.monotonic() < deadline:
            found = LISTENING.search(ANSI.sub("", self.log_path.read_text(errors="replace")))
            if found:
                return found.group(1), int(found.group(2))
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.process.kill()
        raise RuntimeError(f"wasmq did not start listening:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed and -9 if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


@pytest.fixture
def broker():
    with tempfile.TemporaryDirectory(prefix="wasmq-pytest-") as workdir:
        running = Broker(Path(workdir), TEST_CONFIG)
        clients = []
        running.clients = clients
        try:
            yield running
        finally:
            for client in clients:
                client.close()
            code = running.stop()
            assert code == 0, f"wasmq exited with {code} on SIGTERM:\n{running.log()}"


@pytest.fixture(params=[mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def protocol(request):
    return request.param


class Client:
    """A paho-mqtt 2.x client with a network thread, whose messages go to a queue."""

    _ids = iter(range(1_000_000))

    def __init__(
        self, broker: Broker, protocol: int, client_id: str | None = None, persistent=False
    ):
        """`persistent` asks for a session that outlives the connection: clean session 0
        (v3.1.1), or Clean Start 0 with a Session Expiry Interval (v5; see `connect`)."""
        self.broker = broker
        self.protocol = protocol
        self.persistent = persistent
        self.client_id = client_id or f"pytest-{next(Client._ids)}"
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None
        self._subacks: dict[int, threading.Event] = {}
        self._suback_codes: dict[int, list] = {}
        self._lock = threading.Lock()
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            # v3.1.1 sets clean session here; v5 says Clean Start in connect().
            clean_session=None if protocol == mqtt.MQTTv5 else not persistent,
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_subscribe = self._on_subscribe
        self._loop_running = False
        broker.clients.append(self)

    @property
    def v5(self) -> bool:
        return self.protocol == mqtt.MQTTv5

    # Callbacks (network thread).

    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = (flags, reason_code, properties)
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties):
        self.disconnected.set()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._lock:
            self._suback_codes[mid] = reason_codes
            event = self._subacks.setdefault(mid, threading.Event())
        event.set()

    # Actions (test thread).

    def connect(self, *, clean_start=True, session_expiry_secs=0, keepalive=30):
        """Connects and waits for CONNACK; returns its flags (`session_present`).
        v5 only: `clean_start` and `session_expiry_secs` (a persistent v5 client sets the
        latter, since a v5 session with expiry 0 ends with the connection)."""
        if self.v5:
            properties = None
            if session_expiry_secs:
                properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
                properties.SessionExpiryInterval = session_expiry_secs
            self.paho.connect(
                self.broker.host,
                self.broker.port,
                keepalive,
                clean_start=clean_start,
                properties=properties,
            )
        else:
            self.paho.connect(self.broker.host, self.broker.port, keepalive)
        self.paho.loop_start()
        self._loop_running = True
        assert self.connected.wait(WAIT_SECS), f"{self.client_id}: no CONNACK"
        flags, reason_code, _ = self.connack
        assert not reason_code.is_failure, f"{self.client_id}: CONNACK {reason_code}"
        return flags

    def subscribe(self, topic: str, qos: int = 0):
        """Subscribes and waits for SUBACK; asserts the subscription was granted."""
        result, mid = self.paho.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        with self._lock:
            event = self._subacks.setdefault(mid, threading.Event())
        assert event.wait(WAIT_SECS), f"{self.client_id}: no SUBACK for {topic}"
        codes = self._suback_codes[mid]
        assert all(not code.is_failure for code in codes), f"SUBACK {topic}: {codes}"
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain=False, properties=None):
        """Publishes and waits until the flow completes (PUBACK / PUBCOMP for QoS 1 / 2)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        info.wait_for_publish(WAIT_SECS)
        assert info.is_published(), f"{self.client_id}: publish to {topic} not acknowledged"
        return info

    def expect_message(self, timeout: float = WAIT_SECS) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout} s") from None

    def expect_nothing(self, timeout: float = 0.5):
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message on {message.topic}")

    def disconnect(self):
        """A normal DISCONNECT, then waits until paho has closed the connection."""
        self.paho.disconnect()
        assert self.disconnected.wait(WAIT_SECS), f"{self.client_id}: disconnect not done"
        self.close()

    def drop(self):
        """Closes the TCP connection without DISCONNECT, as a crashed client would."""
        sock = self.paho.socket()
        self.paho.loop_stop()
        self._loop_running = False
        sock.shutdown(2)  # socket.SHUT_RDWR
        sock.close()

    def close(self):
        if self._loop_running:
            self._loop_running = False
            try:
                self.paho.disconnect()
            except Exception:
                pass
            self.paho.loop_stop()


@pytest.fixture
def mqtt_client(broker):
    """`mqtt_client(protocol, client_id=None, persistent=False)` makes an unconnected
    Client."""

    def make(protocol: int, client_id: str | None = None, persistent=False) -> Client:
        return Client(broker, protocol, client_id, persistent)

    return make
