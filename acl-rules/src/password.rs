//! Password verification against `mqtt_user (password, salt)`, the way EMQX
//! 4.x stores them: pure code, tested natively.
//!
//! The `password_hash` setting names the scheme, as EMQX's
//! `auth.mysql.password_hash` does:
//!
//! - `plain`, `md5`, `sha` (SHA-1), `sha256`, `sha512`: the stored password is
//!   the digest in hex (any case; EMQX writes lowercase), or the password
//!   itself for `plain`. The salt column is not used.
//! - `salt,ALGO` / `ALGO,salt`: the same, over salt + password (salt as
//!   prefix) or password + salt (salt as suffix).
//! - `bcrypt`: the stored password is a whole bcrypt hash (`$2a$`, `$2b$`,
//!   `$2y$`, `$2x$`), which holds its own salt and cost; the salt column is
//!   not used (EMQX stores the hash's first 29 characters there).
//! - `pbkdf2` or `pbkdf2,MACFUN,ITERATIONS,DKLEN` (EMQX's form): the stored
//!   password is the hex of PBKDF2-HMAC-MACFUN(password, salt, ITERATIONS,
//!   DKLEN), the salt column's bytes used as they are. MACFUN is one of
//!   `md5`, `sha`, `sha224`, `sha256`, `sha384`, `sha512`. In the short form
//!   the parameters come from the settings `pbkdf2_macfun` (default
//!   `sha256`), `pbkdf2_iterations` (default 1000) and `pbkdf2_dklen`
//!   (default 20), EMQX's example values.
//!
//! Every comparison is constant-time (`subtle`).

use std::fmt;

use hmac::Hmac;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// A digest algorithm of the plain schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    /// The password itself.
    Plain,
    /// MD5, hex.
    Md5,
    /// SHA-1, hex (EMQX calls it `sha`).
    Sha1,
    /// SHA-256, hex.
    Sha256,
    /// SHA-512, hex.
    Sha512,
}

/// The MAC of PBKDF2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacFun {
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA-1 (`sha`).
    Sha1,
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

impl MacFun {
    /// `md5`, `sha`, `sha224`, `sha256`, `sha384` or `sha512` (EMQX's names;
    /// `sha1` is accepted too).
    pub fn parse(name: &str) -> Option<MacFun> {
        Some(match name {
            "md5" => MacFun::Md5,
            "sha" | "sha1" => MacFun::Sha1,
            "sha224" => MacFun::Sha224,
            "sha256" => MacFun::Sha256,
            "sha384" => MacFun::Sha384,
            "sha512" => MacFun::Sha512,
            _ => return None,
        })
    }
}

/// Where the salt goes for the digest schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Salt {
    /// No salt.
    None,
    /// salt + password (`salt,sha256`).
    Prefix,
    /// password + salt (`sha256,salt`).
    Suffix,
}

/// PBKDF2's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pbkdf2 {
    /// The MAC.
    pub macfun: MacFun,
    /// Iterations, at least 1.
    pub iterations: u32,
    /// The derived key's length in bytes, 1 to [`DKLEN_MAX`].
    pub dklen: usize,
}

/// The largest derived key accepted.
pub const DKLEN_MAX: usize = 1024;

impl Default for Pbkdf2 {
    /// EMQX's example: `pbkdf2,sha256,1000,20`.
    fn default() -> Self {
        Pbkdf2 {
            macfun: MacFun::Sha256,
            iterations: 1000,
            dklen: 20,
        }
    }
}

impl Pbkdf2 {
    /// Checks the parameters, from their settings' text.
    pub fn from_parts(macfun: &str, iterations: &str, dklen: &str) -> Result<Pbkdf2, String> {
        let macfun =
            MacFun::parse(macfun).ok_or_else(|| format!("unknown pbkdf2 macfun {macfun:?}"))?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                format!("pbkdf2 iterations must be a positive integer, not {iterations:?}")
            })?;
        let dklen = dklen
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=DKLEN_MAX).contains(&n))
            .ok_or_else(|| format!("pbkdf2 dklen must be 1 to {DKLEN_MAX}, not {dklen:?}"))?;
        Ok(Pbkdf2 {
            macfun,
            iterations,
            dklen,
        })
    }
}

/// A password scheme, from the `password_hash` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// A digest (or plain), with the salt placed as said.
    Digest(Algo, Salt),
    /// A whole bcrypt hash.
    Bcrypt,
    /// PBKDF2 with the salt column as its salt.
    Pbkdf2(Pbkdf2),
}

impl Default for Scheme {
    /// EMQX 4.x's default: `sha256`, no salt.
    fn default() -> Self {
        Scheme::Digest(Algo::Sha256, Salt::None)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn algo(name: &str) -> Option<Algo> {
    Some(match name {
        "plain" => Algo::Plain,
        "md5" => Algo::Md5,
        "sha" | "sha1" => Algo::Sha1,
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        _ => return None,
    })
}

impl Scheme {
    /// The scheme the plugin's settings choose: `password_hash`, with the `pbkdf2_*`
    /// settings for a bare `pbkdf2`; `setting(key)` reads one setting. The plugin reads
    /// its own settings this way, and `wasmq user add` the same `acl-sql.toml`, so the
    /// two always agree on how a password is stored.
    pub fn from_settings(setting: impl Fn(&str) -> Option<String>) -> Result<Scheme, String> {
        let defaults = Pbkdf2::default();
        let pbkdf2 = Pbkdf2::from_parts(
            &setting("pbkdf2_macfun").unwrap_or_else(|| "sha256".into()),
            &setting("pbkdf2_iterations").unwrap_or_else(|| defaults.iterations.to_string()),
            &setting("pbkdf2_dklen").unwrap_or_else(|| defaults.dklen.to_string()),
        )?;
        match setting("password_hash") {
            None => Ok(Scheme::default()),
            Some(v) => Scheme::parse(&v, pbkdf2),
        }
    }

    /// Reads `password_hash`. `pbkdf2` alone takes its parameters from
    /// `pbkdf2_default` (built from the `pbkdf2_*` settings).
    pub fn parse(setting: &str, pbkdf2_default: Pbkdf2) -> Result<Scheme, String> {
        let parts: Vec<&str> = setting.split(',').map(str::trim).collect();
        let bad = || format!("unknown password_hash {setting:?}");
        match parts.as_slice() {
            ["bcrypt"] => Ok(Scheme::Bcrypt),
            ["pbkdf2"] => Ok(Scheme::Pbkdf2(pbkdf2_default)),
            ["pbkdf2", macfun, iterations, dklen] => {
                Pbkdf2::from_parts(macfun, iterations, dklen).map(Scheme::Pbkdf2)
            }
            [name] => algo(name)
                .map(|a| Scheme::Digest(a, Salt::None))
                .ok_or_else(bad),
            ["salt", name] => algo(name)
                .map(|a| Scheme::Digest(a, Salt::Prefix))
                .ok_or_else(bad),
            [name, "salt"] => algo(name)
                .map(|a| Scheme::Digest(a, Salt::Suffix))
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// The digest's input: the password with the salt where `place` says.
fn salted(place: Salt, password: &[u8], salt: &[u8]) -> Vec<u8> {
    match place {
        Salt::None => password.to_vec(),
        Salt::Prefix => [salt, password].concat(),
        Salt::Suffix => [password, salt].concat(),
    }
}

/// `input`'s digest in lowercase hex; `None` for `plain` (no digest).
fn hex_digest(algo: Algo, input: &[u8]) -> Option<String> {
    Some(match algo {
        Algo::Plain => return None,
        Algo::Md5 => hex::encode(md5::Md5::digest(input)),
        Algo::Sha1 => hex::encode(sha1::Sha1::digest(input)),
        Algo::Sha256 => hex::encode(sha2::Sha256::digest(input)),
        Algo::Sha512 => hex::encode(sha2::Sha512::digest(input)),
    })
}

/// The stored form of `password` under `scheme`, with `salt` where the scheme
/// uses one: what `wasmq user add` writes into `mqtt_user.password`, and by
/// construction what [`verify`] accepts. bcrypt makes its own salt (at `cost`)
/// and ignores `salt`.
pub fn hash(
    scheme: Scheme,
    password: &[u8],
    salt: &[u8],
    bcrypt_cost: u32,
) -> Result<String, String> {
    match scheme {
        Scheme::Digest(algo, place) => {
            let input = salted(place, password, salt);
            match hex_digest(algo, &input) {
                Some(digest) => Ok(digest),
                None => String::from_utf8(input)
                    .map_err(|_| "a plain password must be UTF-8".to_string()),
            }
        }
        Scheme::Bcrypt => bcrypt::hash(password, bcrypt_cost).map_err(|e| e.to_string()),
        Scheme::Pbkdf2(p) => {
            let mut key = vec![0u8; p.dklen];
            if !derive(p, password, salt, &mut key) {
                return Err("pbkdf2 refused the password".into());
            }
            Ok(hex::encode(&key))
        }
    }
}

/// Whether the scheme reads the `salt` column (so `wasmq user add` makes one).
pub fn uses_salt(scheme: Scheme) -> bool {
    matches!(
        scheme,
        Scheme::Digest(_, Salt::Prefix | Salt::Suffix) | Scheme::Pbkdf2(_)
    )
}

/// Whether `password` (as the client sent it) matches the stored `hash` and
/// `salt` under `scheme`. A malformed stored hash is a mismatch.
pub fn verify(scheme: Scheme, password: &[u8], hash: &[u8], salt: &[u8]) -> bool {
    match scheme {
        Scheme::Digest(algo, place) => {
            let input = salted(place, password, salt);
            let Some(computed) = hex_digest(algo, &input) else {
                return ct_eq(&input, hash); // plain
            };
            ct_eq(computed.as_bytes(), &hash.to_ascii_lowercase())
        }
        Scheme::Bcrypt => match std::str::from_utf8(hash) {
            // The crate compares the hashes in constant time.
            Ok(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Err(_) => false,
        },
        Scheme::Pbkdf2(p) => {
            let mut key = vec![0u8; p.dklen];
            if !derive(p, password, salt, &mut key) {
                return false;
            }
            ct_eq(hex::encode(&key).as_bytes(), &hash.to_ascii_lowercase())
        }
    }
}

/// PBKDF2 into `out`; false only if HMAC refused the password as a key
/// (HMAC takes keys of any length, so never in practice).
fn derive(p: Pbkdf2, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    use pbkdf2::pbkdf2;
    let derived = match p.macfun {
        MacFun::Md5 => pbkdf2::<Hmac<md5::Md5>>(password, salt, p.iterations, out),
        MacFun::Sha1 => pbkdf2::<Hmac<sha1::Sha1>>(password, salt, p.iterations, out),
        MacFun::Sha224 => pbkdf2::<Hmac<sha2::Sha224>>(password, salt, p.iterations, out),
        MacFun::Sha256 => pbkdf2::<Hmac<sha2::Sha256>>(password, salt, p.iterations, out),
        MacFun::Sha384 => pbkdf2::<Hmac<sha2::Sha384>>(password, salt, p.iterations, out),
        MacFun::Sha512 => pbkdf2::<Hmac<sha2::Sha512>>(password, salt, p.iterations, out),
    };
    derived.is_ok()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths are not secret (a digest's length is public); contents are.
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests;
