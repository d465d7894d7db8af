//! `{{name}}`: a Wasmq authentication plugin (the `authn` hook, asked once per
//! CONNECT).
//!
//! The rule it starts with, to replace with yours: a client that sends no user name is
//! denied (the reason goes to the broker's log, never to the client); a user named in
//! the setting `superuser` is let in as a superuser when its password is the setting
//! `superuser_password`; every other client is answered `ignore`, so the next plugin,
//! or the broker's `allow_anonymous`, decides.

use wasmq_plugin_sdk::{AuthResult, Client, Plugin, config, export_plugin};

struct Login;

impl Plugin for Login {
    fn authenticate(client: Client, password: Option<Vec<u8>>) -> AuthResult {
        let Some(username) = client.username else {
            return AuthResult::deny("no user name");
        };
        if config::get("superuser").as_deref() == Some(username.as_str()) {
            let expected = config::get("superuser_password").unwrap_or_default();
            if password.as_deref() == Some(expected.as_bytes()) {
                return AuthResult::superuser();
            }
            return AuthResult::deny(format!("wrong password for {username}"));
        }
        AuthResult::ignore()
    }
}

export_plugin!(Login: authn);
