// `{{name}}`: a Wasmq authentication plugin (the `authn` hook, asked once per
// CONNECT).
//
// The rule it starts with, to replace with yours: a client that sends no user
// name is denied (the reason goes to the broker's log, never to the client); a
// user named in the setting `superuser` is let in as a superuser when its
// password is the setting `superuser_password`; every other client is answered
// "ignore", so the next plugin, or the broker's `allow_anonymous`, decides.

import { get } from "wasmq:plugin/config@0.2.0";

function result(decision, superuser, reason) {
  return { decision, superuser, reason };
}

export const authn = {
  authenticate(client, password) {
    if (client.username === undefined) {
      return result("deny", false, "no user name");
    }
    if (get("superuser") === client.username) {
      const expected = new TextEncoder().encode(get("superuser_password") ?? "");
      const same =
        password !== undefined &&
        password.length === expected.length &&
        password.every((byte, i) => byte === expected[i]);
      if (same) {
        return result("allow", true, undefined);
      }
      return result("deny", false, `wrong password for ${client.username}`);
    }
    return result("ignore", false, undefined);
  },
};
