// `auth-challenge`: a Wasmq enhanced authentication plugin (the `auth` hook: MQTT 5
// AUTH packets, asked at each step of the exchange after a CONNECT that names
// its method).
//
// The method it starts with, `demo-challenge`, to replace with yours: the
// broker sends the client a fresh random nonce (AUTH 0x18); the client answers
// `NONCE:SECRET`, where SECRET is the setting `secret_USER` for its CONNECT's
// User Name. The nonce travels to the second step in the exchange's state
// (instances remember nothing between calls), so an answer to another
// exchange's challenge is refused. Other methods are left to the next plugin.
//
// The secret is sent as it is, as a CONNECT password would be (use TLS): a
// real method answers a keyed hash of the nonce instead (HMAC, SCRAM). This
// runtime has no hash a hook can use: `crypto.subtle` answers with Promises,
// and a hook answers at once. So the template, the same in Rust and Python,
// uses none.
//
// What `wasmq plugin new --hook auth --lang js` writes, kept as an example:
// the same behaviour as plugins/examples/rust/auth-challenge.

import { get } from "wasmq:plugin/config@0.2.0";

/** The Authentication Method this plugin answers for. */
const METHOD = "demo-challenge";

function failure(reason) {
  return { tag: "failure", val: reason };
}

export const auth = {
  methods() {
    return [METHOD];
  },

  start(client, method, _data) {
    if (method !== METHOD) {
      return { tag: "ignore" };
    }
    // Authorization keys on the User Name: it is the identity this exchange proves.
    if (client.username === undefined) {
      return failure("no user name");
    }
    const random = crypto.getRandomValues(new Uint8Array(16));
    const nonce = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
    const bytes = new TextEncoder().encode(nonce);
    return { tag: "continue", val: { data: bytes, state: bytes } };
  },

  step(client, _method, data, state) {
    const username = client.username ?? "";
    const answer = new TextDecoder().decode(data ?? new Uint8Array());
    const colon = answer.indexOf(":");
    if (colon < 0) {
      return failure("the answer is not NONCE:SECRET");
    }
    const nonce = answer.slice(0, colon);
    const secret = answer.slice(colon + 1);
    if (nonce !== new TextDecoder().decode(state)) {
      return failure("the answer is to another challenge");
    }
    const expected = get(`secret_${username}`);
    if (expected === undefined) {
      return failure(`no secret_${username} setting`);
    }
    if (expected !== secret) {
      return failure(`wrong secret for ${username}`);
    }
    return { tag: "success", val: { data: undefined, superuser: false } };
  },
};
