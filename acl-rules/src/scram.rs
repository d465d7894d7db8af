//! SCRAM-SHA-256 credentials as `mqtt_scram_user` keeps them (for the `scram-sha256`
//! example plugin's MQTT 5 enhanced authentication): the salt, the iteration count,
//! StoredKey and ServerKey of RFC 5802, never the password.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The iteration count of new SCRAM credentials (RFC 7677's minimum).
pub const ITERATIONS: u32 = 4096;

/// SCRAM-SHA-256's StoredKey and ServerKey of `plain` with `salt` and `iterations`
/// (RFC 5802 §3): SaltedPassword = PBKDF2-HMAC-SHA-256, StoredKey = H(HMAC(SaltedPassword,
/// "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key").
pub fn keys(plain: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(plain.as_bytes(), salt, iterations, &mut salted);
    let mac = |message: &[u8]| -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&salted).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    };
    let stored_key = Sha256::digest(mac(b"Client Key")).into();
    (stored_key, mac(b"Server Key"))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    use super::keys;

    fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// RFC 7677 §3's exchange: the keys made for `pencil` check its client proof and
    /// make its server signature.
    #[test]
    fn keys_match_rfc_7677() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let (stored_key, server_key) = keys("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        assert_eq!(Sha256::digest(&client_key)[..], stored_key[..]);
        assert_eq!(
            B64.encode(hmac(&server_key, auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
