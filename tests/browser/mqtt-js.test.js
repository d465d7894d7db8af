// MQTT.js in a real headless Chromium against the real `wasmq` binary, over its ws and
// wss listeners: what a web page does when it talks to the broker.
//
//   node --test tests/browser/      (scripts/test: the "browser tests" step)
//
// The broker runs with a tcp, a ws and a wss listener on 127.0.0.1 ports the kernel
// picks, read back from its `listening address=... listener=NAME` log lines, and is
// stopped with SIGTERM at the end (it must exit 0). A loopback HTTP server serves the
// page: MQTT.js's browser bundle and page.js, whose helpers the tests call. The other
// side of each exchange is MQTT.js in Node over plain TCP, so every message crosses
// transports. wss is checked as a browser user would have it: the test CA from
// scripts/make-certs is trusted in the browser's NSS database (certutil), not by
// ignoring certificate errors, and a browser without it must be refused. The README's
// "From a browser" section runs as written too: its listeners are the broker's (on
// ports picked here), and its MQTT.js lines run in the page.
//
// The binary is $WASMQ_BIN, else target/debug/wasmq; the browser is $CHROMIUM, else
// Debian's /usr/bin/chromium, driven by playwright-core (its own browser download is
// not used). scripts/test installs both, and this folder's node_modules.
// WASMQ_KEEP_WORKDIR=1 keeps the broker's folder (its config and log) for a look.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import mqtt from 'mqtt';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const wasmqBin = process.env.WASMQ_BIN ?? path.join(repo, 'target/debug/wasmq');
const chromiumBin = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Every wait on the broker, a client or the page, milliseconds. */
const WAIT_MS = 5000;

/** The README's "From a browser" section: its toml and js blocks and what the page prints. */
function readmeSection() {
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
  const heading = '\n## From a browser\n';
  const start = readme.indexOf(heading);
  assert.ok(start >= 0, 'the README has no "## From a browser" section');
  const rest = readme.slice(start + heading.length);
  const end = rest.indexOf('\n## ');
  const text = end < 0 ? rest : rest.slice(0, end);
  const block = (lang) => {
    const found = text.match(new RegExp('```' + lang + '\\n([\\s\\S]*?)```'));
    assert.ok(found, `the README's "From a browser" has no ${lang} block`);
    return found[1];
  };
  const prints = text.match(/The page prints `([^`]+)`/);
  assert.ok(prints, 'the README\'s "From a browser" does not say what the page prints');
  return { toml: block('toml'), js: block('js'), prints: prints[1] };
}

const readme = readmeSection();

// The README's listeners on ports the kernel picks, and a wss one.
const CONFIG = `\
[sys]
interval_secs = 0

${readme.toml.replace(/^bind = ".*"$/gm, 'bind = "127.0.0.1:0"')}
[[listener]]
name = "wss"
bind = "127.0.0.1:0"
kind = "wss"
cert_file = "certs/server.pem"
key_file = "certs/server.key"
`;

const LISTENING = /listening address=(\S+):(\d+) listener=(\S+) kind=(\S+)/g;
const ANSI = /\x1b\[[0-9;]*m/g;

/** The running `wasmq`: its process, log and listeners ({name: port}). */
class Broker {
  static async start(workdir) {
    const configPath = path.join(workdir, 'wasmq.toml');
    fs.writeFileSync(configPath, CONFIG);
    const logPath = path.join(workdir, 'wasmq.log');
    const log = fs.openSync(logPath, 'w');
    // cwd: the default plugin folder, database and cache are relative paths.
    const child = spawn(wasmqBin, ['--config', configPath], {
      cwd: workdir,
      stdio: ['ignore', log, log],
      env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG ?? 'info' },
    });
    fs.closeSync(log);
    const broker = new Broker(child, logPath);
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const ports = broker.listeners();
      if (['tcp', 'ws', 'wss'].every((name) => name in ports)) {
        broker.ports = ports;
        return broker;
      }
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`wasmq did not start its listeners:\n${broker.log()}`);
      }
      await sleep(20);
    }
  }

  constructor(child, logPath) {
    this.child = child;
    this.logPath = logPath;
    this.exited = once(child, 'exit');
  }

  log() {
    return fs.readFileSync(this.logPath, 'utf8').replace(ANSI, '');
  }

  /** Waits until the log has a line matching `pattern`. */
  async logged(pattern) {
    const deadline = Date.now() + WAIT_MS;
    while (
      !this.log()
        .split('\n')
        .some((line) => pattern.test(line))
    ) {
      assert.ok(
        Date.now() < deadline,
        `no log line ${pattern} within ${WAIT_MS} ms:\n${this.log()}`,
      );
      await sleep(20);
    }
  }

  listeners() {
    const ports = {};
    for (const [, , port, name] of this.log().matchAll(LISTENING)) ports[name] = Number(port);
    return ports;
  }

  /** SIGTERM, then the exit code; SIGKILL (and null) when it does not stop in time. */
  async stop() {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    try {
      const [code] = await within(10_000, 'wasmq stopping on SIGTERM', this.exited);
      return code;
    } catch {
      this.child.kill('SIGKILL');
      await this.exited;
      return null;
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or an error naming `what` after `ms`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The page the browser loads: MQTT.js's browser bundle, then page.js. */
function servePage() {
  const files = {
    '/': [
      'text/html',
      '<!doctype html><title>wasmq</title><script src="/mqtt.min.js"></script><script src="/page.js"></script>',
    ],
    '/mqtt.min.js': [
      'text/javascript',
      fs.readFileSync(path.join(here, 'node_modules/mqtt/dist/mqtt.min.js')),
    ],
    '/page.js': ['text/javascript', fs.readFileSync(path.join(here, 'page.js'))],
  };
  const server = http.createServer((request, response) => {
    const file = files[request.url];
    response.writeHead(file ? 200 : 404, { 'content-type': file ? file[0] : 'text/plain' });
    response.end(file ? file[1] : 'not found');
  });
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => server);
}

/** A browser whose NSS database (in `home`) trusts `caFile` when given. */
async function launchBrowser(home, caFile) {
  const nssdb = path.join(home, '.pki/nssdb');
  fs.mkdirSync(nssdb, { recursive: true });
  execFileSync('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
  if (caFile) {
    execFileSync('certutil', [
      '-A',
      '-d',
      `sql:${nssdb}`,
      '-n',
      'Wasmq test CA',
      '-t',
      'C,,',
      '-i',
      caFile,
    ]);
  }
  return chromium.launch({
    executablePath: chromiumBin,
    args: ['--headless', '--no-sandbox'],
    env: { ...process.env, HOME: home },
    timeout: 30_000,
  });
}

async function openPage(browser) {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(`http://127.0.0.1:${pageServer.address().port}/`);
  await page.waitForFunction(() => window.mqtt && window.wasmq);
  return page;
}

/** MQTT.js in Node over plain TCP, connected. */
async function nodeClient(clientId, protocolVersion) {
  const client = mqtt.connect(`mqtt://127.0.0.1:${broker.ports.tcp}`, {
    clientId,
    protocolVersion,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
  });
  nodeClients.push(client);
  await within(WAIT_MS, `${clientId}: CONNACK`, once(client, 'connect'));
  return client;
}

/** Next message of a Node client, as {topic, payload: Buffer, qos, retain}. */
function nextNodeMessage(client) {
  return within(
    WAIT_MS,
    `${client.options.clientId}: a message`,
    new Promise((resolve) =>
      client.once('message', (topic, payload, packet) =>
        resolve({ topic, payload, qos: packet.qos, retain: packet.retain }),
      ),
    ),
  );
}

let workdir;
let broker;
let pageServer;
let browser; // trusts the test CA
const nodeClients = [];

before(
  async () => {
    workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasmq-browser-'));
    assert.ok(fs.existsSync(wasmqBin), `${wasmqBin} not found: build it with cargo build -p wasmq`);
    execFileSync(path.join(repo, 'scripts/make-certs'), [path.join(workdir, 'certs')]);
    broker = await Broker.start(workdir);
    pageServer = await servePage();
    browser = await launchBrowser(
      path.join(workdir, 'home-trusting'),
      path.join(workdir, 'certs/ca.pem'),
    );
  },
  { timeout: 60_000 },
);

after(
  async () => {
    for (const client of nodeClients) client.end(true);
    await browser?.close();
    pageServer?.close();
    const code = await broker?.stop();
    const log = broker?.log();
    if (process.env.WASMQ_KEEP_WORKDIR) console.log(`kept ${workdir} (wasmq.toml, wasmq.log)`);
    else if (workdir) fs.rmSync(workdir, { recursive: true, force: true });
    if (broker) assert.equal(code, 0, `wasmq exited with ${code} on SIGTERM:\n${log}`);
  },
  { timeout: 30_000 },
);

// A broker still running when the test process ends (a crash, a failed hook) is killed.
process.on('exit', () => {
  if (broker && broker.child.exitCode === null) broker.child.kill('SIGKILL');
});

test('the README\'s "From a browser" runs as written', { timeout: 20_000 }, async () => {
  // Stands for the README's mosquitto_sub on the tcp listener.
  const terminal = await nodeClient('node-readme', 4);
  await within(WAIT_MS, 'SUBACK', terminal.subscribeAsync('sensors/#', { qos: 1 }));
  const arriving = nextNodeMessage(terminal);

  const page = await openPage(browser);
  try {
    const lines = [];
    page.on('console', (message) => lines.push(message.text()));
    // The README's port is this broker's ws port; the rest as written.
    const script = readme.js.replace(
      /ws:\/\/127\.0\.0\.1:\d+\//,
      `ws://127.0.0.1:${broker.ports.ws}/`,
    );
    assert.notEqual(script, readme.js, "the README's js block connects to no ws://127.0.0.1:PORT/");
    await page.addScriptTag({ content: script });
    const deadline = Date.now() + WAIT_MS;
    while (!lines.includes(readme.prints) && Date.now() < deadline) await sleep(20);
    assert.ok(
      lines.includes(readme.prints),
      `the page printed ${JSON.stringify(lines)}, not ${readme.prints}`,
    );

    const got = await arriving;
    assert.equal(`${got.topic} ${got.payload}`, readme.prints);
  } finally {
    await page.close();
    // The README's message is retained: cleared, so the broker is as before.
    await within(
      WAIT_MS,
      'PUBACK',
      terminal.publishAsync(readme.prints.split(' ')[0], '', { qos: 1, retain: true }),
    );
  }
});

// Not valid UTF-8 on purpose: the page must get these bytes, not a decoded string.
const BINARY = Buffer.from([0x00, 0xff, 0x80, 0x7f, 0x0a, 0xc3, 0x28, 0x57, 0x51]);
const TEXT = 'grüße 🌡 21.5 °C';

for (const [transport, protocolVersion] of [
  ['ws', 4],
  ['ws', 5],
  ['wss', 4],
  ['wss', 5],
]) {
  const label = `${transport} v${protocolVersion === 5 ? '5' : '3.1.1'}`;
  const tag = `${transport}-v${protocolVersion}`;
  const url = () =>
    transport === 'ws'
      ? `ws://127.0.0.1:${broker.ports.ws}/mqtt`
      : `wss://localhost:${broker.ports.wss}/mqtt`;

  test(
    `${label}: the page subscribes and publishes at QoS 1, a TCP client is the other side`,
    { timeout: 20_000 },
    async () => {
      const page = await openPage(browser);
      try {
        const name = `page-${tag}`;
        await page.evaluate(
          ([n, u, v]) => wasmq.connect(n, u, { protocolVersion: v }),
          [name, url(), protocolVersion],
        );
        const granted = await page.evaluate(
          ([n, t]) => wasmq.subscribe(n, t, 1),
          [name, `browser/${tag}/to-page`],
        );
        assert.deepEqual(granted, [1]);

        const peer = await nodeClient(`node-${tag}`, protocolVersion);
        await within(
          WAIT_MS,
          'SUBACK',
          peer.subscribeAsync(`browser/${tag}/from-page`, { qos: 1 }),
        );

        await within(
          WAIT_MS,
          'PUBACK',
          peer.publishAsync(`browser/${tag}/to-page`, BINARY, { qos: 1 }),
        );
        const got = await page.evaluate(([n, ms]) => wasmq.nextMessage(n, ms), [name, WAIT_MS]);
        assert.deepEqual(got, {
          topic: `browser/${tag}/to-page`,
          payload: [...BINARY],
          qos: 1,
          retain: false,
        });

        const arriving = nextNodeMessage(peer);
        // Resolves on the broker's PUBACK.
        await page.evaluate(
          ([n, t, p]) => wasmq.publish(n, t, p, { qos: 1 }),
          [name, `browser/${tag}/from-page`, TEXT],
        );
        const back = await arriving;
        assert.equal(back.topic, `browser/${tag}/from-page`);
        assert.deepEqual(back.payload, Buffer.from(TEXT, 'utf8'));
        assert.equal(back.qos, 1);

        await page.evaluate((n) => wasmq.end(n), name);
      } finally {
        await page.close();
      }
    },
  );

  test(
    `${label}: a retained message reaches a page that subscribes later`,
    { timeout: 20_000 },
    async () => {
      const topic = `browser/${tag}/retained`;
      const publisher = await nodeClient(`node-retain-${tag}`, protocolVersion);
      await within(
        WAIT_MS,
        'PUBACK',
        publisher.publishAsync(topic, BINARY, { qos: 1, retain: true }),
      );

      const page = await openPage(browser);
      try {
        const name = `page-retain-${tag}`;
        await page.evaluate(
          ([n, u, v]) => wasmq.connect(n, u, { protocolVersion: v }),
          [name, url(), protocolVersion],
        );
        await page.evaluate(([n, t]) => wasmq.subscribe(n, t, 1), [name, topic]);
        const got = await page.evaluate(([n, ms]) => wasmq.nextMessage(n, ms), [name, WAIT_MS]);
        assert.deepEqual(got, { topic, payload: [...BINARY], qos: 1, retain: true });
        await page.evaluate((n) => wasmq.end(n), name);
      } finally {
        await page.close();
        // Cleared, so a rerun against the same broker would not see it.
        await within(
          WAIT_MS,
          'PUBACK',
          publisher.publishAsync(topic, '', { qos: 1, retain: true }),
        );
      }
    },
  );
}

test(
  'a page is refused: a wrong ws path, a wrong subprotocol, wss with an untrusted CA',
  { timeout: 30_000 },
  async () => {
    const refused = /MQTT\.js (error|close)/;
    const page = await openPage(browser);
    try {
      const connect = (name, url, options) =>
        page.evaluate(([n, u, o]) => wasmq.connect(n, u, o), [name, url, options]);
      await assert.rejects(
        connect('page-wrong-path', `ws://127.0.0.1:${broker.ports.ws}/nope`, {}),
        refused,
      );
      // The page cannot tell why; the broker's log does.
      await broker.logged(
        /listener=ws\}.*WebSocket upgrade to "\/nope": MQTT is at "\/mqtt": refused/,
      );
      await assert.rejects(
        connect('page-wrong-subprotocol', `ws://127.0.0.1:${broker.ports.ws}/mqtt`, {
          subprotocols: ['mqttv9'],
        }),
        refused,
      );
      await broker.logged(/WebSocket upgrade without subprotocol "mqtt" \(offered: "mqttv9"\)/);
    } finally {
      await page.close();
    }

    // The wss connection that works above fails in a browser that does not trust the
    // test CA, and for that reason: the certificate is checked, not waved through.
    const untrusting = await launchBrowser(path.join(workdir, 'home-untrusting'), null);
    try {
      const other = await openPage(untrusting);
      await assert.rejects(
        other.evaluate(
          (u) => wasmq.connect('page-untrusted', u, {}),
          `wss://localhost:${broker.ports.wss}/mqtt`,
        ),
        refused,
      );
      await broker.logged(
        /listener=wss\}.*TLS handshake failed: received fatal alert: (CertificateUnknown|UnknownCA|BadCertificate)/,
      );
    } finally {
      await untrusting.close();
    }
  },
);
