// The page's half of mqtt-js.test.js: MQTT.js clients (its browser bundle, loaded
// before this file as `window.mqtt`) that the test drives by name with page.evaluate.
// Only plain values cross to the test: payloads go as arrays of bytes, so a changed
// byte shows, and every wait here is bounded.

const clients = new Map();

function named(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no client ${name}`);
  return entry;
}

window.wasmq = {
  // Connects `name` to `url`; resolves with the CONNACK's session present flag, or
  // rejects with what the page saw instead (MQTT.js 'error' or 'close'). reconnectPeriod
  // 0: a refused connection is an answer, not something to retry. `subprotocols`, when
  // given, replaces the `mqtt` that MQTT.js offers.
  connect(name, url, { subprotocols, ...options } = {}) {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(url, {
        clientId: name,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...(subprotocols && { createWebsocket: (wsUrl) => new WebSocket(wsUrl, subprotocols) }),
        ...options,
      });
      const entry = { client, messages: [], waiting: [] };
      clients.set(name, entry);
      client.on('message', (topic, payload, packet) => {
        entry.messages.push({
          topic,
          payload: Array.from(payload),
          qos: packet.qos,
          retain: packet.retain,
        });
        for (const wake of entry.waiting.splice(0)) wake();
      });
      client.once('connect', (connack) => resolve({ sessionPresent: connack.sessionPresent }));
      client.once('error', (error) => reject(new Error(`MQTT.js error: ${error.message}`)));
      client.once('close', () => reject(new Error('MQTT.js close: no CONNACK')));
    });
  },

  // Subscribes and resolves with the granted QoS of each filter (128: refused).
  subscribe(name, filter, qos) {
    const { client } = named(name);
    return new Promise((resolve, reject) => {
      client.subscribe(filter, { qos }, (error, granted) =>
        error ? reject(error) : resolve(granted.map((g) => g.qos)),
      );
    });
  },

  // Publishes a string (MQTT.js sends it as UTF-8); resolves when the flow is done,
  // at QoS 1 on the PUBACK.
  publish(name, topic, payload, options) {
    const { client } = named(name);
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, options, (error) => (error ? reject(error) : resolve()));
    });
  },

  // The next message `name` received, oldest first, waiting up to `timeoutMs`.
  async nextMessage(name, timeoutMs) {
    const entry = named(name);
    const deadline = Date.now() + timeoutMs;
    while (entry.messages.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${name}: no message within ${timeoutMs} ms`);
      await new Promise((wake) => {
        entry.waiting.push(wake);
        setTimeout(wake, left);
      });
    }
    return entry.messages.shift();
  },

  // DISCONNECT and close; resolves when MQTT.js has closed the socket.
  end(name) {
    const { client } = named(name);
    clients.delete(name);
    return new Promise((resolve) => client.end(false, {}, () => resolve()));
  },
};
