//! Known vectors for every scheme. The digests and PBKDF2 keys were made by
//! Python's `hashlib` (OpenSSL), the bcrypt hashes by libxcrypt (glibc's
//! `crypt(3)`, through Python's `crypt`), one of them Openwall's published
//! `U*U` vector: all other implementations than the crates used here.

use super::*;

fn scheme(s: &str) -> Scheme {
    Scheme::parse(s, Pbkdf2::default()).unwrap()
}

/// (scheme, password, stored hash, salt) that must verify.
const GOOD: &[(&str, &str, &str, &str)] = &[
    ("plain", "public", "public", ""),
    ("plain", "", "", ""),
    ("salt,plain", "public", "saltpublic", "salt"),
    ("plain,salt", "public", "publicsalt", "salt"),
    ("md5", "public", "4c9184f37cff01bcdc32dc486ec36961", ""),
    (
        "salt,md5",
        "public",
        "c91e85973ceee05f005996584f067a72",
        "salt",
    ),
    (
        "md5,salt",
        "public",
        "b8fe9a6d76f4fa94adda07a7833e6402",
        "salt",
    ),
    (
        "sha",
        "public",
        "61c9b2b17db77a27841bbeeabff923448b0f6388",
        "",
    ),
    (
        "salt,sha",
        "public",
        "54625c8c5d22e86e9a3d2732bf48d0f43d343366",
        "salt",
    ),
    (
        "sha,salt",
        "public",
        "43e71834067d59d83ae934bb80670178b810b9be",
        "salt",
    ),
    (
        "sha256",
        "public",
        "efa1f375d76194fa51a3556a97e641e61685f914d446979da50a551a4333ffd7",
        "",
    ),
    (
        "salt,sha256",
        "public",
        "f2ef7f9aedb2c3b5040bc16691a1177758a92ad91e1ee77770215a332bf6099f",
        "salt",
    ),
    (
        "sha256,salt",
        "public",
        "f4a8615be301fbaf6213df33cfe5f22953aafc0c31beb8f2daef55b127444d27",
        "salt",
    ),
    (
        "sha512",
        "public",
        "d32997e9747b65a3ecf65b82533a4c843c4e16dd30cf371e8c81ab60a341de00051da422d41ff29c55695f233a1e06fac8b79aeb0a4d91ae5d3d18c8e09b8c73",
        "",
    ),
    (
        "salt,sha512",
        "public",
        "82112846414ba6fd95be5ac402188c3a7cf1a178485e937fded30f9e398c94094d2d742a41dd0982febd36484be12f19d3cf9130fe2d903d61b5c7ae9a327185",
        "salt",
    ),
    (
        "sha512,salt",
        "public",
        "7ffaf674fc0b94835d6cdba9f3e80b7d7dc8efe5fe7cfe9f01d38d309718cef339fc3014fb007d2133d65d6fea8e904817670aeb69ca47a74554804c15e1bd4f",
        "salt",
    ),
    // Stored in upper case by some other tool: still the same digest.
    (
        "sha256",
        "public",
        "EFA1F375D76194FA51A3556A97E641E61685F914D446979DA50A551A4333FFD7",
        "",
    ),
    // bcrypt: the salt column is not used.
    (
        "bcrypt",
        "wasmq-secret",
        "$2b$06$abcdefghijklmnopqrstuuI3Ez12K6eDZ1IdBE7iSJahLEdKGfs9q",
        "",
    ),
    (
        "bcrypt",
        "U*U",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.",
    ),
    (
        "bcrypt",
        "päss",
        "$2y$04$0123456789abcdefghijke/1M3QCGjfK1FQ2F8r2y6rnFyn1OOWnu",
        "",
    ),
    // PBKDF2: RFC 6070's first vector (HMAC-SHA1), then hashlib's.
    (
        "pbkdf2,sha,1,20",
        "password",
        "0c60c80f961f0e71f3a9b524af6012062fe037a6",
        "salt",
    ),
    (
        "pbkdf2,sha256,1000,20",
        "public",
        "5a21f11c597da1447641c0a5ba58b856a76f1084",
        "salt",
    ),
    // The short form takes the defaults (sha256, 1000, 20).
    (
        "pbkdf2",
        "public",
        "5a21f11c597da1447641c0a5ba58b856a76f1084",
        "salt",
    ),
    (
        "pbkdf2,sha512,10,64",
        "public",
        "376747a4c2ad4ab0a8be7865c05181e1d67ea24d8e3b61bad1ff26ba7416751d163d4d0ae5859ad5285c930dcb52c3abe6baab4c4f8a28d58930b373fd703822",
        "NaCl",
    ),
    (
        "pbkdf2,md5,10,16",
        "public",
        "355fc9977b4404cd65a08242b71062eb",
        "NaCl",
    ),
];

#[test]
fn known_vectors_verify() {
    for (s, password, hash, salt) in GOOD {
        assert!(
            verify(
                scheme(s),
                password.as_bytes(),
                hash.as_bytes(),
                salt.as_bytes()
            ),
            "{s}: {password:?} should match {hash:?} (salt {salt:?})"
        );
    }
}

#[test]
fn wrong_passwords_salts_and_positions_do_not_verify() {
    for (s, password, hash, salt) in GOOD {
        let wrong = format!("{password}x");
        assert!(
            !verify(
                scheme(s),
                wrong.as_bytes(),
                hash.as_bytes(),
                salt.as_bytes()
            ),
            "{s}: {wrong:?} must not match {hash:?}"
        );
        assert!(
            !verify(scheme(s), b"", hash.as_bytes(), salt.as_bytes()) || password.is_empty(),
            "{s}: the empty password must not match {hash:?}"
        );
    }
    // The salt in the wrong place, or a wrong salt.
    let sha = "f2ef7f9aedb2c3b5040bc16691a1177758a92ad91e1ee77770215a332bf6099f"; // salt,sha256
    assert!(!verify(
        scheme("sha256,salt"),
        b"public",
        sha.as_bytes(),
        b"salt"
    ));
    assert!(!verify(
        scheme("salt,sha256"),
        b"public",
        sha.as_bytes(),
        b"pepper"
    ));
    assert!(!verify(
        scheme("sha256"),
        b"public",
        sha.as_bytes(),
        b"salt"
    ));
    // PBKDF2 with another salt, count or length.
    let key = "5a21f11c597da1447641c0a5ba58b856a76f1084";
    assert!(!verify(
        scheme("pbkdf2,sha256,1000,20"),
        b"public",
        key.as_bytes(),
        b"pepper"
    ));
    assert!(!verify(
        scheme("pbkdf2,sha256,999,20"),
        b"public",
        key.as_bytes(),
        b"salt"
    ));
    assert!(!verify(
        scheme("pbkdf2,sha256,1000,21"),
        b"public",
        key.as_bytes(),
        b"salt"
    ));
    assert!(!verify(
        scheme("pbkdf2,sha1,1000,20"),
        b"public",
        key.as_bytes(),
        b"salt"
    ));
}

#[test]
fn malformed_stored_hashes_never_verify() {
    let digest = "efa1f375d76194fa51a3556a97e641e61685f914d446979da50a551a4333ffd7";
    for (s, hash) in [
        ("sha256", &digest[..63]),                 // one character short
        ("sha256", &format!("{digest} ") as &str), // padded
        ("sha256", ""),                            // empty
        ("md5", digest),                           // another algorithm's digest
        ("bcrypt", "not a bcrypt hash"),
        (
            "bcrypt",
            "$2b$06$abcdefghijklmnopqrstuuI3Ez12K6eDZ1IdBE7iSJahLEdKGfs9",
        ), // truncated
        (
            "bcrypt",
            "$2b$99$abcdefghijklmnopqrstuuI3Ez12K6eDZ1IdBE7iSJahLEdKGfs9q",
        ), // bad cost
        (
            "bcrypt",
            "$3b$06$abcdefghijklmnopqrstuuI3Ez12K6eDZ1IdBE7iSJahLEdKGfs9q",
        ), // bad prefix
        ("bcrypt", ""),
        ("pbkdf2", "zz"),
    ] {
        assert!(
            !verify(scheme(s), b"public", hash.as_bytes(), b"salt"),
            "{s} {hash:?}"
        );
    }
    // Bytes that are not UTF-8 as a bcrypt hash.
    assert!(!verify(Scheme::Bcrypt, b"public", &[0xff, 0xfe], b""));
    // Plain compares bytes exactly, NUL included.
    assert!(!verify(scheme("plain"), b"public\0", b"public", b""));
    assert!(!verify(scheme("plain"), b"public", b"public\0", b""));
}

#[test]
fn password_hash_setting() {
    let d = Pbkdf2::default();
    assert_eq!(Scheme::default(), Scheme::Digest(Algo::Sha256, Salt::None));
    for (text, want) in [
        ("plain", Scheme::Digest(Algo::Plain, Salt::None)),
        ("md5", Scheme::Digest(Algo::Md5, Salt::None)),
        ("sha", Scheme::Digest(Algo::Sha1, Salt::None)),
        ("sha1", Scheme::Digest(Algo::Sha1, Salt::None)),
        ("sha256", Scheme::Digest(Algo::Sha256, Salt::None)),
        ("sha512", Scheme::Digest(Algo::Sha512, Salt::None)),
        ("salt,sha256", Scheme::Digest(Algo::Sha256, Salt::Prefix)),
        ("sha256,salt", Scheme::Digest(Algo::Sha256, Salt::Suffix)),
        ("salt, md5", Scheme::Digest(Algo::Md5, Salt::Prefix)),
        ("bcrypt", Scheme::Bcrypt),
        ("pbkdf2", Scheme::Pbkdf2(d)),
        (
            "pbkdf2,sha512,4096,64",
            Scheme::Pbkdf2(Pbkdf2 {
                macfun: MacFun::Sha512,
                iterations: 4096,
                dklen: 64,
            }),
        ),
    ] {
        assert_eq!(Scheme::parse(text, d), Ok(want), "{text}");
    }
    for bad in [
        "",
        "SHA256",
        "sha384",
        "salt",
        "salt,salt",
        "sha256,pepper",
        "salt,sha256,salt",
        "bcrypt,salt",
        "salt,bcrypt",
        "pbkdf2,sha256",
        "pbkdf2,whirlpool,1,20",
        "pbkdf2,sha256,0,20",
        "pbkdf2,sha256,-1,20",
        "pbkdf2,sha256,1000,0",
        "pbkdf2,sha256,1000,1025",
        "pbkdf2,sha256,1e3,20",
    ] {
        assert!(Scheme::parse(bad, d).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn pbkdf2_settings() {
    assert_eq!(
        Pbkdf2::from_parts("sha", "1", "20"),
        Ok(Pbkdf2 {
            macfun: MacFun::Sha1,
            iterations: 1,
            dklen: 20
        })
    );
    assert!(Pbkdf2::from_parts("md4", "1", "20").is_err());
    assert!(Pbkdf2::from_parts("sha256", "x", "20").is_err());
    assert!(Pbkdf2::from_parts("sha256", "1", "").is_err());
    // The short form takes the settings it is given.
    let p = Pbkdf2::from_parts("sha", "1", "20").unwrap();
    assert!(verify(
        Scheme::parse("pbkdf2", p).unwrap(),
        b"password",
        b"0c60c80f961f0e71f3a9b524af6012062fe037a6",
        b"salt"
    ));
}

#[test]
fn hash_produces_what_verify_accepts_for_every_scheme() {
    let pbkdf2 = Pbkdf2::default();
    for setting in [
        "plain",
        "md5",
        "sha",
        "sha256",
        "sha512",
        "salt,sha256",
        "sha256,salt",
        "salt,md5",
        "sha512,salt",
        "bcrypt",
        "pbkdf2",
        "pbkdf2,sha512,10,32",
    ] {
        let scheme = Scheme::parse(setting, pbkdf2).unwrap();
        let stored = hash(scheme, b"s3cret", b"NaCl", 4).unwrap();
        assert!(
            verify(scheme, b"s3cret", stored.as_bytes(), b"NaCl"),
            "{setting}"
        );
        assert!(
            !verify(scheme, b"s3cret!", stored.as_bytes(), b"NaCl"),
            "{setting}"
        );
        if uses_salt(scheme) {
            assert!(
                !verify(scheme, b"s3cret", stored.as_bytes(), b"KCl"),
                "{setting}"
            );
        }
    }
}
