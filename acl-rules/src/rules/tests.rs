//! The rules listed in `plugins/acl-sql/README.md` as a test matrix: one case per rule
//! and its edges, named after the rule it shows. Hostile values and invalid
//! rows follow.

use super::*;

// ---------------------------------------------------------------------------
// Builders.
// ---------------------------------------------------------------------------

fn text(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::Text(s.to_owned()))
}

/// A seven-column row (with id); `None` is NULL.
fn row(
    id: i64,
    allow: i64,
    ipaddr: Option<&str>,
    username: Option<&str>,
    clientid: Option<&str>,
    access: i64,
    topic: &str,
) -> AclRow {
    AclRow {
        id: Some(Value::Integer(id)),
        allow: Value::Integer(allow),
        ipaddr: text(ipaddr),
        username: text(username),
        clientid: text(clientid),
        access: Value::Integer(access),
        topic: Value::Text(topic.to_owned()),
    }
}

fn all(id: i64, allow: i64, access: i64, topic: &str) -> AclRow {
    row(id, allow, None, Some("$all"), None, access, topic)
}
fn user(id: i64, allow: i64, name: &str, access: i64, topic: &str) -> AclRow {
    row(id, allow, None, Some(name), None, access, topic)
}
fn cid(id: i64, allow: i64, client_id: &str, access: i64, topic: &str) -> AclRow {
    row(id, allow, None, None, Some(client_id), access, topic)
}
fn ip(id: i64, allow: i64, addr: &str, access: i64, topic: &str) -> AclRow {
    row(id, allow, Some(addr), None, None, access, topic)
}
/// The same row as the query returns it without an id (six columns).
fn no_id(mut r: AclRow) -> AclRow {
    r.id = None;
    r
}

const ALLOW: i64 = 1;
const DENY: i64 = 0;
const SUB: i64 = 1;
const PUB: i64 = 2;
const BOTH: i64 = 3;

#[derive(Clone, Copy)]
struct C {
    client_id: &'static str,
    username: Option<&'static str>,
    peer: &'static str,
}

/// client id `c1`, user `alice`, from 192.0.2.10.
const ALICE: C = C {
    client_id: "c1",
    username: Some("alice"),
    peer: "192.0.2.10:50000",
};

fn with_user(username: Option<&'static str>) -> C {
    C { username, ..ALICE }
}
fn with_id(client_id: &'static str) -> C {
    C { client_id, ..ALICE }
}
fn with_peer(peer: &'static str) -> C {
    C { peer, ..ALICE }
}

/// What a case expects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Allow,
    Deny,
    NoMatch,
    Invalid,
}

use Action::{Publish as P, Subscribe as S};

struct Case {
    name: &'static str,
    rows: Vec<AclRow>,
    client: C,
    action: Action,
    topic: &'static str,
    order: Order,
    want: Want,
}

fn case(
    name: &'static str,
    rows: Vec<AclRow>,
    client: C,
    action: Action,
    topic: &'static str,
    want: Want,
) -> Case {
    Case {
        name,
        rows,
        client,
        action,
        topic,
        order: Order::IdDesc,
        want,
    }
}

fn asc(mut c: Case) -> Case {
    c.order = Order::IdAsc;
    c
}

fn run(c: &Case) -> Want {
    let client = ClientInfo {
        client_id: c.client.client_id,
        username: c.client.username,
        peer_addr: c.client.peer,
    };
    match decide(&c.rows, &client, c.action, c.topic, c.order) {
        Ok(Decision::Allow) => Want::Allow,
        Ok(Decision::Deny) => Want::Deny,
        Ok(Decision::NoMatch) => Want::NoMatch,
        Err(_) => Want::Invalid,
    }
}

fn check_all(cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = run(c);
            (got != c.want).then(|| format!("  {}: want {:?}, got {got:?}", c.name, c.want))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

use Want::{Allow as A, Deny as D, Invalid as E, NoMatch as N};

// ---------------------------------------------------------------------------
// The matrix: one block per rule of that list.
// ---------------------------------------------------------------------------

#[test]
fn order_first_match_wins_highest_id_first_by_default() {
    let pair = || {
        vec![
            user(1, ALLOW, "alice", BOTH, "t"),
            user(2, DENY, "alice", BOTH, "t"),
        ]
    };
    check_all(&[
        case(
            "order: id 2 (deny) before id 1 (allow)",
            pair(),
            ALICE,
            P,
            "t",
            D,
        ),
        asc(case(
            "order: id-asc: id 1 (allow) first",
            pair(),
            ALICE,
            P,
            "t",
            A,
        )),
        case(
            "order: rows returned out of id order are sorted by id",
            vec![
                user(2, DENY, "alice", BOTH, "t"),
                user(3, ALLOW, "alice", BOTH, "t"),
                user(1, DENY, "alice", BOTH, "t"),
            ],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "order: without ids, the query's rows reversed (EMQX 4.x)",
            vec![
                no_id(user(1, ALLOW, "alice", BOTH, "t")),
                no_id(user(2, DENY, "alice", BOTH, "t")),
            ],
            ALICE,
            P,
            "t",
            D,
        ),
        asc(case(
            "order: without ids, id-asc keeps the query's order",
            vec![
                no_id(user(1, ALLOW, "alice", BOTH, "t")),
                no_id(user(2, DENY, "alice", BOTH, "t")),
            ],
            ALICE,
            P,
            "t",
            A,
        )),
        case(
            "order: a later, more specific row loses to the first match",
            vec![
                user(1, DENY, "alice", PUB, "a/b"),
                all(2, ALLOW, BOTH, "a/#"),
            ],
            ALICE,
            P,
            "a/b",
            A,
        ),
        case(
            "order: rows that do not match are stepped over",
            vec![
                user(1, ALLOW, "alice", PUB, "a"),
                user(2, DENY, "alice", PUB, "x"),
            ],
            ALICE,
            P,
            "a",
            A,
        ),
        case(
            "order: a deny on another action is stepped over",
            vec![
                user(1, ALLOW, "alice", BOTH, "a"),
                user(2, DENY, "alice", SUB, "a"),
            ],
            ALICE,
            P,
            "a",
            A,
        ),
    ]);
}

#[test]
fn who_all_and_the_and_of_non_empty_columns() {
    check_all(&[
        case(
            "who: $all matches an anonymous client",
            vec![all(1, ALLOW, PUB, "t")],
            with_user(None),
            P,
            "t",
            A,
        ),
        case(
            "who: $all matches a $-user name",
            vec![all(1, ALLOW, PUB, "t")],
            with_user(Some("$admin")),
            P,
            "t",
            A,
        ),
        case(
            "who: $all ignores the other columns (EMQX)",
            vec![row(
                1,
                ALLOW,
                Some("10.0.0.0/8"),
                Some("$all"),
                Some("other"),
                PUB,
                "t",
            )],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "who: username, exact",
            vec![user(1, ALLOW, "alice", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "who: username, other case",
            vec![user(1, ALLOW, "Alice", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "who: username, trailing space",
            vec![user(1, ALLOW, "alice ", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "who: username, prefix only",
            vec![user(1, ALLOW, "ali", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "who: username row, anonymous client",
            vec![user(1, ALLOW, "alice", PUB, "t")],
            with_user(None),
            P,
            "t",
            N,
        ),
        case(
            "who: username row, empty user name",
            vec![user(1, ALLOW, "alice", PUB, "t")],
            with_user(Some("")),
            P,
            "t",
            N,
        ),
        case(
            "who: clientid, exact",
            vec![cid(1, ALLOW, "c1", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "who: clientid, another client",
            vec![cid(1, ALLOW, "c1", PUB, "t")],
            with_id("c2"),
            P,
            "t",
            N,
        ),
        case(
            "who: clientid, other case",
            vec![cid(1, ALLOW, "C1", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "who: username AND clientid, both right",
            vec![row(1, ALLOW, None, Some("alice"), Some("c1"), PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "who: username AND clientid, wrong client id",
            vec![row(1, ALLOW, None, Some("alice"), Some("c1"), PUB, "t")],
            with_id("c2"),
            P,
            "t",
            N,
        ),
        case(
            "who: username AND clientid, wrong user",
            vec![row(1, ALLOW, None, Some("alice"), Some("c1"), PUB, "t")],
            with_user(Some("bob")),
            P,
            "t",
            N,
        ),
        case(
            "who: ipaddr AND username, wrong address",
            vec![row(
                1,
                ALLOW,
                Some("192.0.2.99"),
                Some("alice"),
                None,
                PUB,
                "t",
            )],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "who: ipaddr AND username AND clientid, all right",
            vec![row(
                1,
                ALLOW,
                Some("192.0.2.0/24"),
                Some("alice"),
                Some("c1"),
                PUB,
                "t",
            )],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "who: empty columns are absent (username '' + clientid)",
            vec![row(1, ALLOW, Some(""), Some(""), Some("c1"), PUB, "t")],
            with_user(None),
            P,
            "t",
            A,
        ),
    ]);
}

#[test]
fn who_ipaddr_address_or_cidr_v4_and_v6() {
    check_all(&[
        case(
            "ip: v4 address, same",
            vec![ip(1, ALLOW, "192.0.2.10", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "ip: v4 address, other",
            vec![ip(1, ALLOW, "192.0.2.11", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "ip: v4 /24, inside",
            vec![ip(1, ALLOW, "192.0.2.0/24", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "ip: v4 /8, outside",
            vec![ip(1, ALLOW, "10.0.0.0/8", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "ip: v4 /8 with host bits",
            vec![ip(1, ALLOW, "10.9.9.9/8", PUB, "t")],
            with_peer("10.1.2.3:1"),
            P,
            "t",
            A,
        ),
        case(
            "ip: v4 /32",
            vec![ip(1, ALLOW, "10.1.2.3/32", PUB, "t")],
            with_peer("10.1.2.3:1"),
            P,
            "t",
            A,
        ),
        case(
            "ip: v4 /31 edge",
            vec![ip(1, ALLOW, "10.1.2.2/31", PUB, "t")],
            with_peer("10.1.2.4:1"),
            P,
            "t",
            N,
        ),
        case(
            "ip: v4 /0 is everyone on v4",
            vec![ip(1, ALLOW, "0.0.0.0/0", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "ip: v6 address",
            vec![ip(1, ALLOW, "::1", PUB, "t")],
            with_peer("[::1]:1883"),
            P,
            "t",
            A,
        ),
        case(
            "ip: v6 address, other",
            vec![ip(1, ALLOW, "::2", PUB, "t")],
            with_peer("[::1]:1883"),
            P,
            "t",
            N,
        ),
        case(
            "ip: v6 /32, inside",
            vec![ip(1, ALLOW, "2001:db8::/32", PUB, "t")],
            with_peer("[2001:db8:1::5]:9"),
            P,
            "t",
            A,
        ),
        case(
            "ip: v6 /32, outside",
            vec![ip(1, ALLOW, "2001:db8::/32", PUB, "t")],
            with_peer("[2001:db9::1]:9"),
            P,
            "t",
            N,
        ),
        // A v4 peer is also its IPv4-mapped address (which it is on a
        // dual-stack listener): the same decision either way.
        case(
            "ip: v6 /0 covers v4 peers, as ::ffff:a.b.c.d",
            vec![ip(1, ALLOW, "::/0", PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "ip: a v6 block outside ::ffff:0:0/96 does not cover v4",
            vec![ip(1, ALLOW, "2001:db8::/32", PUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "ip: v4 rule, v6 peer",
            vec![ip(1, ALLOW, "0.0.0.0/0", PUB, "t")],
            with_peer("[::1]:1"),
            P,
            "t",
            N,
        ),
        case(
            "ip: IPv4-mapped peer matches the v4 rule",
            vec![ip(1, ALLOW, "10.0.0.1", PUB, "t")],
            with_peer("[::ffff:10.0.0.1]:1"),
            P,
            "t",
            A,
        ),
        case(
            "ip: IPv4-mapped peer inside a v4 block",
            vec![ip(1, ALLOW, "10.0.0.0/8", PUB, "t")],
            with_peer("[::ffff:10.0.0.1]:1"),
            P,
            "t",
            A,
        ),
        case(
            "ip: v4 peer inside a mapped v6 block",
            vec![ip(1, ALLOW, "::ffff:10.0.0.0/104", PUB, "t")],
            with_peer("10.2.3.4:1"),
            P,
            "t",
            A,
        ),
        case(
            "ip: an unreadable peer address matches no ipaddr row",
            vec![ip(1, ALLOW, "0.0.0.0/0", PUB, "t")],
            with_peer("unix:/run/wasmq.sock"),
            P,
            "t",
            N,
        ),
    ]);
}

#[test]
fn access_and_allow() {
    check_all(&[
        case(
            "access 1: subscribe",
            vec![all(1, ALLOW, SUB, "t")],
            ALICE,
            S,
            "t",
            A,
        ),
        case(
            "access 1: not publish",
            vec![all(1, ALLOW, SUB, "t")],
            ALICE,
            P,
            "t",
            N,
        ),
        case(
            "access 2: publish",
            vec![all(1, ALLOW, PUB, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "access 2: not subscribe",
            vec![all(1, ALLOW, PUB, "t")],
            ALICE,
            S,
            "t",
            N,
        ),
        case(
            "access 3: publish",
            vec![all(1, ALLOW, BOTH, "t")],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "access 3: subscribe",
            vec![all(1, ALLOW, BOTH, "t")],
            ALICE,
            S,
            "t",
            A,
        ),
        case(
            "allow 0: deny",
            vec![all(1, DENY, BOTH, "t")],
            ALICE,
            P,
            "t",
            D,
        ),
        case(
            "allow 0: deny subscribe",
            vec![all(1, DENY, BOTH, "t")],
            ALICE,
            S,
            "t",
            D,
        ),
        case("no rows: no match", vec![], ALICE, P, "t", N),
    ]);
}

#[test]
fn topic_wildcards_and_dollar_topics() {
    let r = |t: &str| vec![all(1, ALLOW, BOTH, t)];
    check_all(&[
        case("topic: literal", r("a/b"), ALICE, P, "a/b", A),
        case("topic: literal, other", r("a/b"), ALICE, P, "a/c", N),
        case("topic: literal, longer", r("a/b"), ALICE, P, "a/b/c", N),
        case("topic: literal, trailing /", r("a/b"), ALICE, P, "a/b/", N),
        case("topic: + one level", r("a/+"), ALICE, P, "a/b", A),
        case("topic: + not two levels", r("a/+"), ALICE, P, "a/b/c", N),
        case("topic: + not zero levels", r("a/+"), ALICE, P, "a", N),
        case("topic: + an empty level", r("a/+/c"), ALICE, P, "a//c", A),
        case("topic: # the rest", r("a/#"), ALICE, P, "a/b/c", A),
        case("topic: # including none", r("a/#"), ALICE, P, "a", A),
        case("topic: # not a sibling", r("a/#"), ALICE, P, "ab", N),
        case("topic: # alone, everything", r("#"), ALICE, P, "x/y/z", A),
        case(
            "topic: # does not match $SYS",
            r("#"),
            ALICE,
            P,
            "$SYS/broker/uptime",
            N,
        ),
        case(
            "topic: +/# does not match $SYS",
            r("+/#"),
            ALICE,
            P,
            "$SYS/x",
            N,
        ),
        case(
            "topic: + first level does not match $x",
            r("+/x"),
            ALICE,
            P,
            "$SYS/x",
            N,
        ),
        case(
            "topic: $SYS/# matches $SYS",
            r("$SYS/#"),
            ALICE,
            S,
            "$SYS/broker/uptime",
            A,
        ),
        case(
            "topic: # at level 2 matches $ below",
            r("a/#"),
            ALICE,
            P,
            "a/$x",
            A,
        ),
        case(
            "topic: # vs subscribe $SYS/#",
            r("#"),
            ALICE,
            S,
            "$SYS/#",
            N,
        ),
        case(
            "topic: # vs subscribe $SYS/+",
            r("#"),
            ALICE,
            S,
            "$SYS/+",
            N,
        ),
        case(
            "topic: $SYS/# vs subscribe #",
            r("$SYS/#"),
            ALICE,
            S,
            "#",
            N,
        ),
        case("topic: a/# vs a/$x/#", r("a/#"), ALICE, S, "a/$x/#", A),
        // A rule's `+` does not grant `#`: filter against filter.
        case("sub: a/+ does not grant a/#", r("a/+"), ALICE, S, "a/#", N),
        case("sub: + does not grant #", r("+"), ALICE, S, "#", N),
        case("sub: a/+ grants a/+", r("a/+"), ALICE, S, "a/+", A),
        case("sub: a/+ grants a/b", r("a/+"), ALICE, S, "a/b", A),
        case("sub: a/b does not grant a/+", r("a/b"), ALICE, S, "a/+", N),
        case("sub: a/b does not grant a/#", r("a/b"), ALICE, S, "a/#", N),
        case("sub: a/# grants a/+/c", r("a/#"), ALICE, S, "a/+/c", A),
        case("sub: a/# grants a/#", r("a/#"), ALICE, S, "a/#", A),
        case("sub: a/# does not grant #", r("a/#"), ALICE, S, "#", N),
        case("sub: # grants #", r("#"), ALICE, S, "#", A),
        case("sub: # grants +/+", r("#"), ALICE, S, "+/+", A),
        case(
            "sub: +/# grants # (every topic has a level)",
            r("+/#"),
            ALICE,
            S,
            "#",
            A,
        ),
        case(
            "sub: a/+/# does not grant a/# (a/# matches a)",
            r("a/+/#"),
            ALICE,
            S,
            "a/#",
            N,
        ),
        case("sub: a/+/# grants a/+", r("a/+/#"), ALICE, S, "a/+", A),
        case("sub: a/+/# grants a/b/#", r("a/+/#"), ALICE, S, "a/b/#", A),
        case("sub: +/b does not grant +/+", r("+/b"), ALICE, S, "+/+", N),
        case(
            "sub: a/+ does not grant a/+/c",
            r("a/+"),
            ALICE,
            S,
            "a/+/c",
            N,
        ),
        case(
            "sub: a/b/c does not grant a/b",
            r("a/b/c"),
            ALICE,
            S,
            "a/b",
            N,
        ),
    ]);
}

#[test]
fn topic_eq_is_literal() {
    let r = |t: &str| vec![all(1, ALLOW, BOTH, t)];
    check_all(&[
        case(
            "eq: eq a/# grants subscribe a/# literally",
            r("eq a/#"),
            ALICE,
            S,
            "a/#",
            A,
        ),
        case(
            "eq: eq a/# does not match a/b",
            r("eq a/#"),
            ALICE,
            P,
            "a/b",
            N,
        ),
        case(
            "eq: eq a/# does not grant a/+",
            r("eq a/#"),
            ALICE,
            S,
            "a/+",
            N,
        ),
        case(
            "eq: eq a/+ does not match a/x",
            r("eq a/+"),
            ALICE,
            S,
            "a/x",
            N,
        ),
        case("eq: eq # grants #", r("eq #"), ALICE, S, "#", A),
        case("eq: eq #, not $SYS", r("eq #"), ALICE, S, "$SYS/#", N),
        case("eq: eq $SYS/x", r("eq $SYS/x"), ALICE, P, "$SYS/x", A),
        case(
            "eq: no placeholder in eq",
            r("eq %c/x"),
            ALICE,
            P,
            "c1/x",
            N,
        ),
        case(
            "eq: eq %c/x is the literal %c/x",
            r("eq %c/x"),
            ALICE,
            P,
            "%c/x",
            A,
        ),
        case("eq: exact bytes (case)", r("eq A/B"), ALICE, P, "a/b", N),
        case(
            "eq: eq without the space is a topic",
            r("eq/x"),
            ALICE,
            P,
            "eq/x",
            A,
        ),
        case(
            "eq: a second space belongs to the topic",
            r("eq  a"),
            ALICE,
            P,
            " a",
            A,
        ),
    ]);
}

#[test]
fn placeholders_whole_levels_and_safe_values() {
    let r = |t: &str| vec![all(1, ALLOW, BOTH, t)];
    check_all(&[
        case("%c: substituted", r("%c/#"), ALICE, P, "c1/data", A),
        case(
            "%c: another client's topic",
            r("%c/#"),
            ALICE,
            P,
            "c2/data",
            N,
        ),
        case("%c: inner level", r("d/%c/x"), ALICE, P, "d/c1/x", A),
        case("%c: sub with + below", r("%c/#"), ALICE, S, "c1/+", A),
        case("%c: not the literal %c", r("%c/x"), ALICE, P, "%c/x", N),
        case("%u: substituted", r("u/%u/#"), ALICE, P, "u/alice/x", A),
        case(
            "%u: another user's topic",
            r("u/%u/#"),
            ALICE,
            P,
            "u/bob/x",
            N,
        ),
        case(
            "%u: anonymous client",
            r("u/%u/#"),
            with_user(None),
            P,
            "u/%u/x",
            N,
        ),
        case(
            "%u: empty user name",
            r("u/%u/#"),
            with_user(Some("")),
            P,
            "u//x",
            N,
        ),
        case(
            "%u: $-user name not substituted",
            r("u/%u"),
            with_user(Some("$admin")),
            P,
            "u/$admin",
            N,
        ),
        case("%c %u: both", r("%u/%c"), ALICE, P, "alice/c1", A),
        case(
            "%c: only as a whole level (prefix)",
            r("x%c/y"),
            ALICE,
            P,
            "xc1/y",
            N,
        ),
        case(
            "%c: part of a level is literal",
            r("x%c/y"),
            ALICE,
            P,
            "x%c/y",
            A,
        ),
        case(
            "%u: only as a whole level (suffix)",
            r("%uz"),
            ALICE,
            P,
            "alicez",
            N,
        ),
        case(
            "%c: client id with / does not widen",
            r("%c/#"),
            with_id("a/b"),
            P,
            "a/b/x",
            N,
        ),
        case(
            "%c: client id a/# does not widen",
            r("%c"),
            with_id("a/#"),
            S,
            "a/#",
            N,
        ),
        case(
            "%c: client id a/# does not reach a/x",
            r("%c"),
            with_id("a/#"),
            P,
            "a/x",
            N,
        ),
        case(
            "%c: client id + does not widen",
            r("%c/x"),
            with_id("+"),
            S,
            "+/x",
            N,
        ),
        case(
            "%c: client id + does not reach y/x",
            r("%c/x"),
            with_id("+"),
            P,
            "y/x",
            N,
        ),
        case(
            "%c: client id # does not widen",
            r("%c"),
            with_id("#"),
            S,
            "#",
            N,
        ),
        case(
            "%c: client id with NUL",
            r("%c"),
            with_id("a\0b"),
            P,
            "a\0b",
            N,
        ),
        case("%c: empty client id", r("p/%c"), with_id(""), P, "p/", N),
        case(
            "%u: user name with /",
            r("%u/#"),
            with_user(Some("a/b")),
            P,
            "a/b/c",
            N,
        ),
        case(
            "%u: user name +",
            r("%u/x"),
            with_user(Some("+")),
            S,
            "+/x",
            N,
        ),
        case("%u: user name #", r("%u"), with_user(Some("#")), S, "#", N),
        case(
            "%c: a row that cannot match falls through to the next",
            vec![all(2, DENY, BOTH, "%c/#"), all(1, ALLOW, BOTH, "#")],
            with_id("+"),
            P,
            "x/y",
            A,
        ),
        case(
            "%c: the deny row holds for a normal client id",
            vec![all(2, DENY, BOTH, "%c/#"), all(1, ALLOW, BOTH, "#")],
            ALICE,
            P,
            "c1/y",
            D,
        ),
    ]);
}

#[test]
fn dollar_user_names_are_not_matched() {
    check_all(&[
        case(
            "$-user: a username row naming it does not match",
            vec![user(1, ALLOW, "$admin", BOTH, "#")],
            with_user(Some("$admin")),
            P,
            "t",
            N,
        ),
        case(
            "$-user: a username+clientid row does not match",
            vec![row(1, ALLOW, None, Some("$admin"), Some("c1"), BOTH, "#")],
            with_user(Some("$admin")),
            P,
            "t",
            N,
        ),
        case(
            "$-user: clientid rows still apply",
            vec![cid(1, DENY, "c1", BOTH, "#")],
            with_user(Some("$admin")),
            P,
            "t",
            D,
        ),
        case(
            "$-user: the user name $all is no wildcard of its own",
            vec![user(1, DENY, "alice", BOTH, "#")],
            with_user(Some("$all")),
            P,
            "t",
            N,
        ),
    ]);
}

#[test]
fn hostile_values_widen_nothing() {
    // Rows as a sloppy (or case-insensitive) database might return them:
    // decide checks every column again.
    let rows = || {
        vec![
            user(3, ALLOW, "alice", BOTH, "#"),
            cid(2, ALLOW, "c1", BOTH, "#"),
            ip(1, ALLOW, "192.0.2.99", BOTH, "#"),
        ]
    };
    let long: &'static str = "x".repeat(70_000).leak();
    let deep: &'static str = vec!["l"; 10_000].join("/").leak();
    check_all(&[
        case(
            "hostile: user ' OR '1'='1",
            rows(),
            C {
                username: Some("' OR '1'='1"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: client ' OR '1'='1",
            rows(),
            C {
                client_id: "' OR '1'='1",
                username: None,
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user alice' --",
            rows(),
            C {
                username: Some("alice' --"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user with quotes",
            rows(),
            C {
                username: Some("\"alice\""),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user alice\\",
            rows(),
            C {
                username: Some("alice\\"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: client c1\\0 (NUL)",
            rows(),
            C {
                client_id: "c1\0",
                username: None,
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user alice\\0x (NUL)",
            rows(),
            C {
                username: Some("alice\0x"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user ALICE (case-insensitive DB)",
            rows(),
            C {
                username: Some("ALICE"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: client c1 + space (padding DB)",
            rows(),
            C {
                client_id: "c1 ",
                username: None,
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user %",
            rows(),
            C {
                username: Some("%"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: user $all",
            rows(),
            C {
                username: Some("$all"),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: very long user name",
            rows(),
            C {
                username: Some(long),
                client_id: "z",
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: very long client id",
            rows(),
            C {
                client_id: long,
                username: None,
                ..ALICE
            },
            P,
            "t",
            N,
        ),
        case(
            "hostile: a very long user name is matched exactly",
            vec![user(1, ALLOW, long, BOTH, "t")],
            with_user(Some(long)),
            P,
            "t",
            A,
        ),
        case(
            "hostile: very long topic under #",
            vec![all(1, ALLOW, BOTH, "#")],
            ALICE,
            P,
            deep,
            A,
        ),
        case(
            "hostile: very long topic, literal rule",
            vec![all(1, ALLOW, BOTH, "l/l")],
            ALICE,
            S,
            deep,
            N,
        ),
        case(
            "hostile: topic with NUL",
            vec![all(1, ALLOW, BOTH, "a/b")],
            ALICE,
            P,
            "a/b\0",
            N,
        ),
    ]);
}

#[test]
fn invalid_rows_fail_the_check() {
    let with = |f: fn(&mut AclRow)| {
        let mut r = all(1, ALLOW, BOTH, "t");
        f(&mut r);
        vec![r]
    };
    check_all(&[
        case(
            "invalid: allow 2",
            with(|r| r.allow = Value::Integer(2)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: allow -1",
            with(|r| r.allow = Value::Integer(-1)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: allow NULL",
            with(|r| r.allow = Value::Null),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: allow 'yes'",
            with(|r| r.allow = Value::Text("yes".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: allow 0.5",
            with(|r| r.allow = Value::Real(0.5)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: access 0",
            with(|r| r.access = Value::Integer(0)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: access 4",
            with(|r| r.access = Value::Integer(4)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: access NULL",
            with(|r| r.access = Value::Null),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: access 'pub'",
            with(|r| r.access = Value::Text("pub".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: no who (all NULL)",
            vec![row(1, ALLOW, None, None, None, BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: no who (all empty)",
            vec![row(1, ALLOW, Some(""), Some(""), Some(""), BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: CIDR /33",
            vec![ip(1, ALLOW, "10.0.0.0/33", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: CIDR /129",
            vec![ip(1, ALLOW, "fe80::/129", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: CIDR no bits",
            vec![ip(1, ALLOW, "10.0.0.0/", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: CIDR +8",
            vec![ip(1, ALLOW, "10.0.0.0/+8", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: address 300.1.1.1",
            vec![ip(1, ALLOW, "300.1.1.1", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: address with space",
            vec![ip(1, ALLOW, "10.0.0.1 ", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: address with port",
            vec![ip(1, ALLOW, "10.0.0.1:80", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: host name",
            vec![ip(1, ALLOW, "localhost", BOTH, "t")],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: a bad CIDR fails even beside the right user",
            vec![row(
                1,
                ALLOW,
                Some("10.0.0.0/99"),
                Some("alice"),
                None,
                BOTH,
                "t",
            )],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: a who-column that is a number",
            vec![AclRow {
                clientid: Value::Integer(7),
                ..row(1, ALLOW, None, None, None, BOTH, "t")
            }],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic NULL",
            with(|r| r.topic = Value::Null),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic empty",
            with(|r| r.topic = Value::Text(String::new())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic eq with nothing",
            with(|r| r.topic = Value::Text("eq ".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic # not last",
            with(|r| r.topic = Value::Text("a/#/b".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic a+",
            with(|r| r.topic = Value::Text("a+/b".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic a#",
            with(|r| r.topic = Value::Text("a#".into())),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: topic a number",
            with(|r| r.topic = Value::Integer(5)),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: id not a number",
            with(|r| r.id = Some(Value::Text("x".into()))),
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: one bad row fails the check even after an allow in order",
            vec![
                all(2, ALLOW, BOTH, "t"),
                AclRow {
                    allow: Value::Integer(9),
                    ..all(1, ALLOW, BOTH, "t")
                },
            ],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: a bad row about another topic still fails the check",
            vec![
                all(2, ALLOW, BOTH, "t"),
                AclRow {
                    access: Value::Null,
                    ..all(1, DENY, BOTH, "other")
                },
            ],
            ALICE,
            P,
            "t",
            E,
        ),
        case(
            "invalid: some rows with ids, some without",
            vec![all(2, ALLOW, BOTH, "t"), no_id(all(1, ALLOW, BOTH, "t"))],
            ALICE,
            P,
            "t",
            E,
        ),
    ]);
}

#[test]
fn odd_but_valid_column_types() {
    let base = || all(1, ALLOW, BOTH, "t");
    check_all(&[
        case(
            "types: allow as text '1'",
            vec![AclRow {
                allow: Value::Text("1".into()),
                ..base()
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: allow as bytes b'0'",
            vec![AclRow {
                allow: Value::Blob(b"0".to_vec()),
                ..base()
            }],
            ALICE,
            P,
            "t",
            D,
        ),
        case(
            "types: allow as real 1.0",
            vec![AclRow {
                allow: Value::Real(1.0),
                ..base()
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: access as text '2'",
            vec![AclRow {
                access: Value::Text("2".into()),
                ..base()
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: id as text",
            vec![AclRow {
                id: Some(Value::Text("4".into())),
                ..base()
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: username as bytes, exact",
            vec![AclRow {
                username: Value::Blob(b"alice".to_vec()),
                ..user(1, ALLOW, "x", BOTH, "t")
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: ipaddr as bytes",
            vec![AclRow {
                ipaddr: Value::Blob(b"192.0.2.0/24".to_vec()),
                ..ip(1, ALLOW, "x", BOTH, "t")
            }],
            ALICE,
            P,
            "t",
            A,
        ),
        case(
            "types: topic as bytes",
            vec![AclRow {
                topic: Value::Blob(b"a/+".to_vec()),
                ..base()
            }],
            ALICE,
            P,
            "a/b",
            A,
        ),
    ]);
}

// ---------------------------------------------------------------------------
// The pieces around decide.
// ---------------------------------------------------------------------------

#[test]
fn rows_from_six_or_seven_columns() {
    let six = vec![
        Value::Integer(1),
        Value::Null,
        Value::Text("alice".into()),
        Value::Null,
        Value::Integer(3),
        Value::Text("t".into()),
    ];
    let r = AclRow::from_columns(six.clone()).unwrap();
    assert_eq!(r.id, None);
    assert_eq!(r.username, Value::Text("alice".into()));
    assert_eq!(r.topic, Value::Text("t".into()));

    let mut seven = six.clone();
    seven.insert(0, Value::Integer(42));
    let r = AclRow::from_columns(seven).unwrap();
    assert_eq!(r.id, Some(Value::Integer(42)));
    assert_eq!(r.allow, Value::Integer(1));

    assert!(AclRow::from_columns(six[..5].to_vec()).is_err());
    assert!(AclRow::from_columns(vec![Value::Null; 8]).is_err());
}

#[test]
fn ip_param_is_the_address_without_port() {
    assert_eq!(ip_param("192.0.2.1:5000").as_deref(), Some("192.0.2.1"));
    assert_eq!(ip_param("[::1]:5000").as_deref(), Some("::1"));
    assert_eq!(ip_param("[2001:db8::1]:1").as_deref(), Some("2001:db8::1"));
    assert_eq!(ip_param("[::ffff:10.0.0.1]:1").as_deref(), Some("10.0.0.1"));
    assert_eq!(ip_param("10.0.0.1").as_deref(), Some("10.0.0.1"));
    assert_eq!(ip_param("unix:/x"), None);
    assert_eq!(ip_param(""), None);
}

#[test]
fn invalid_row_says_which_and_why() {
    let bad = AclRow {
        allow: Value::Integer(7),
        ..all(12, ALLOW, BOTH, "t")
    };
    let client = ClientInfo {
        client_id: "c1",
        username: None,
        peer_addr: "127.0.0.1:1",
    };
    let err = decide(&[bad], &client, Action::Publish, "t", Order::IdDesc).unwrap_err();
    assert_eq!(err.id, Some(12));
    let text = err.to_string();
    assert!(text.contains("id=12") && text.contains("allow"), "{text}");
}

#[test]
fn order_setting() {
    assert_eq!(Order::parse("id-desc"), Some(Order::IdDesc));
    assert_eq!(Order::parse("id-asc"), Some(Order::IdAsc));
    assert_eq!(Order::parse("asc"), None);
    assert_eq!(Order::default(), Order::IdDesc);
}

#[test]
fn decide_by_row_names_the_row_that_decided_for_the_log() {
    let rows = vec![
        all(1, ALLOW, BOTH, "#"),
        user(4, DENY, "alice", PUB, "factory/#"),
        ip(2, ALLOW, "127.0.0.1", SUB, "$SYS/#"),
    ];
    let client = ClientInfo {
        client_id: "c1",
        username: Some("alice"),
        peer_addr: "127.0.0.1:5000",
    };
    let by_row = |action, topic, order| decide_by_row(&rows, &client, action, topic, order);
    // Highest id first: alice's deny (index 1 in the query's rows) before the `#` allow.
    assert_eq!(
        by_row(P, "factory/line1", Order::IdDesc),
        Ok((Decision::Deny, Some(1)))
    );
    assert_eq!(
        by_row(P, "factory/line1", Order::IdAsc),
        Ok((Decision::Allow, Some(0)))
    );
    assert_eq!(
        by_row(S, "$SYS/broker/uptime", Order::IdDesc),
        Ok((Decision::Allow, Some(2)))
    );
    // `#` does not cover `$`-topics: no row decides.
    assert_eq!(
        by_row(P, "$app/x", Order::IdDesc),
        Ok((Decision::NoMatch, None))
    );
    // Without ids (six columns, the query's order reversed for id-desc) the index is
    // still the one in the query's rows.
    let six: Vec<AclRow> = rows.iter().cloned().map(no_id).collect();
    assert_eq!(
        decide_by_row(&six, &client, P, "factory/line1", Order::IdDesc),
        Ok((Decision::Deny, Some(1)))
    );
    assert_eq!(
        decide_by_row(&six, &client, S, "factory/line1", Order::IdDesc),
        Ok((Decision::Allow, Some(0)))
    );

    assert_eq!(
        rows[1].to_string(),
        r#"id=4 allow=0 ipaddr=NULL username="alice" clientid=NULL access=2 topic="factory/#""#
    );
    let hostile = AclRow {
        topic: Value::Blob(b"a\"\n\xff".to_vec()),
        ..no_id(all(9, ALLOW, BOTH, "t"))
    };
    assert_eq!(
        hostile.to_string(),
        "allow=1 ipaddr=NULL username=\"$all\" clientid=NULL access=3 topic=\"a\\\"\\n\u{fffd}\"",
        "quotes and newlines escaped, bytes that are not UTF-8 replaced"
    );
}

// ---------------------------------------------------------------------------
// Delivery through a wildcard subscription (the `deliver` hook).
// ---------------------------------------------------------------------------

#[test]
fn deliver_deny_rows_with_sub_access_apply_to_the_concrete_topic() {
    use Action::Deliver as R;
    // The case of issue 12: `$all` may subscribe to `sensors/#`, `sensors/secret`
    // is denied (a higher id: checked first).
    let sensors = || {
        vec![
            all(1, ALLOW, SUB, "sensors/#"),
            all(2, DENY, SUB, "sensors/secret"),
        ]
    };
    check_all(&[
        case(
            "the filter itself is granted",
            sensors(),
            ALICE,
            S,
            "sensors/#",
            A,
        ),
        case(
            "a denied topic under it is not delivered",
            sensors(),
            ALICE,
            R,
            "sensors/secret",
            D,
        ),
        case(
            "the other topics are",
            sensors(),
            ALICE,
            R,
            "sensors/temp",
            A,
        ),
        case(
            "a deny by wildcard row",
            vec![all(1, ALLOW, SUB, "#"), all(2, DENY, SUB, "sensors/+/raw")],
            ALICE,
            R,
            "sensors/a/raw",
            D,
        ),
        case(
            "eq rows match the literal topic",
            vec![
                all(1, ALLOW, SUB, "#"),
                all(2, DENY, SUB, "eq sensors/secret"),
            ],
            ALICE,
            R,
            "sensors/secret",
            D,
        ),
        case(
            "eq # never matches a topic name",
            vec![all(1, ALLOW, SUB, "#"), all(2, DENY, SUB, "eq #")],
            ALICE,
            R,
            "sensors/x",
            A,
        ),
        case(
            "publish-only deny rows do not apply",
            vec![all(1, ALLOW, SUB, "#"), all(2, DENY, PUB, "sensors/secret")],
            ALICE,
            R,
            "sensors/secret",
            A,
        ),
        case(
            "pubsub deny rows do",
            vec![
                all(1, ALLOW, SUB, "#"),
                all(2, DENY, BOTH, "sensors/secret"),
            ],
            ALICE,
            R,
            "sensors/secret",
            D,
        ),
        case(
            "an allow row checked first still allows",
            vec![
                all(1, ALLOW, SUB, "#"),
                all(2, DENY, SUB, "sensors/secret"),
                user(3, ALLOW, "alice", SUB, "sensors/secret"),
            ],
            ALICE,
            R,
            "sensors/secret",
            A,
        ),
        case(
            "...for its user only",
            vec![
                all(1, ALLOW, SUB, "#"),
                all(2, DENY, SUB, "sensors/secret"),
                user(3, ALLOW, "bob", SUB, "sensors/secret"),
            ],
            ALICE,
            R,
            "sensors/secret",
            D,
        ),
        case(
            "no row: left to the subscription",
            vec![all(2, DENY, SUB, "other/#")],
            ALICE,
            R,
            "sensors/secret",
            N,
        ),
        case(
            "placeholders",
            vec![all(1, ALLOW, SUB, "#"), all(2, DENY, SUB, "private/%c/#")],
            with_id("c9"),
            R,
            "private/c9/x",
            D,
        ),
        asc(case(
            "id-asc: the lower id first",
            sensors(),
            ALICE,
            R,
            "sensors/secret",
            A,
        )),
    ]);
}
