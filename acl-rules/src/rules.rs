//! The ACL rules of the `mqtt_acl` table and the decision they give: pure
//! code, no host calls, so every rule listed in `plugins/acl-sql/README.md` is
//! tested natively (`cargo test -p wasmq-acl-rules`).
//!
//! The SQL query only pre-selects rows (`ipaddr = ? OR username = ? OR
//! username = '$all' OR clientid = ?`); [`decide`] checks every row again,
//! byte for byte, so a database that compares case-insensitively or ignores
//! trailing spaces (MySQL's default collations do both) selects more rows than
//! apply, never grants more.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A column value as read from the database, with whatever type the driver
/// gave it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes (MySQL hands out `VARBINARY` and some `VARCHAR`s this way).
    Blob(Vec<u8>),
}

/// One row of `mqtt_acl`, raw: nothing is checked until [`Rule::parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct AclRow {
    /// The row's `id` when the query selects it (a seventh, first column):
    /// then rows are sorted by it; without it they keep the query's order.
    pub id: Option<Value>,
    /// `allow`: 1 allow, 0 deny.
    pub allow: Value,
    /// `ipaddr`: an address or a CIDR block, IPv4 or IPv6, or NULL/empty.
    pub ipaddr: Value,
    /// `username`: `$all`, a user name, or NULL/empty.
    pub username: Value,
    /// `clientid`: a client id, or NULL/empty.
    pub clientid: Value,
    /// `access`: 1 subscribe, 2 publish, 3 both.
    pub access: Value,
    /// `topic`: a topic filter (with `+`, `#`, `%c`, `%u`) or `eq <topic>`.
    pub topic: Value,
}

impl AclRow {
    /// The row from a result row's columns: `allow, ipaddr, username,
    /// clientid, access, topic`, optionally preceded by `id`.
    pub fn from_columns(mut columns: Vec<Value>) -> Result<AclRow, InvalidRow> {
        let id = match columns.len() {
            6 => None,
            7 => Some(columns.remove(0)),
            n => {
                return Err(InvalidRow {
                    id: None,
                    reason: format!(
                        "the ACL query returned {n} columns; expected \
                         [id,] allow, ipaddr, username, clientid, access, topic"
                    ),
                });
            }
        };
        let mut it = columns.into_iter();
        let mut next = || it.next().unwrap_or(Value::Null);
        Ok(AclRow {
            id,
            allow: next(),
            ipaddr: next(),
            username: next(),
            clientid: next(),
            access: next(),
            topic: next(),
        })
    }
}

/// A row that cannot be read as a rule. The check it takes part in fails
/// closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRow {
    /// The row's id when the query selects it.
    pub id: Option<i64>,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for InvalidRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "invalid mqtt_acl row id={id}: {}", self.reason),
            None => write!(f, "invalid mqtt_acl row: {}", self.reason),
        }
    }
}

impl std::error::Error for InvalidRow {}

/// What the client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Publish to a topic name.
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
    /// Receive a message on a topic name through a subscription whose filter has
    /// wildcards (the broker's `deliver` hook): the rows with subscribe access (1 or
    /// 3) decide, first match wins as for the others, on the concrete topic. So a
    /// deny row on `sensors/secret` keeps it from a `sensors/#` subscriber whom an
    /// allow row on `sensors/#` (lower in the order) let subscribe; an allow row
    /// that comes first still allows, as it would a subscription to that very
    /// topic. No row matching is [`Decision::NoMatch`]: the plugin then leaves the
    /// delivery to its subscription's grant (it does not deny it).
    Deliver,
}

/// The answer of the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The first matching row allows.
    Allow,
    /// The first matching row denies.
    Deny,
    /// No row matches: the next plugin, then the broker's `acl_nomatch`.
    NoMatch,
}

/// The order in which rows are tried; the first match wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Highest id first (EMQX 4.x: it reverses the rows the query returns).
    #[default]
    IdDesc,
    /// Lowest id first.
    IdAsc,
}

impl Order {
    /// Reads the `acl_order` setting: `id-desc` (the default) or `id-asc`.
    pub fn parse(setting: &str) -> Option<Order> {
        match setting {
            "id-desc" => Some(Order::IdDesc),
            "id-asc" => Some(Order::IdAsc),
            _ => None,
        }
    }
}

/// The client a decision is about, as the broker describes it.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The user name from CONNECT, if any.
    pub username: Option<&'a str>,
    /// The peer address, `ip:port` or `[ip]:port`.
    pub peer_addr: &'a str,
}

impl ClientInfo<'_> {
    /// The user name the rules may match: none when it is empty or starts
    /// with `$` (EMQX never matches `$`-user names against its tables).
    pub fn matchable_username(&self) -> Option<&str> {
        self.username
            .filter(|u| !u.is_empty() && !u.starts_with('$'))
    }

    /// The peer's IP address, IPv4-mapped IPv6 addresses as IPv4.
    pub fn ip(&self) -> Option<IpAddr> {
        peer_ip(self.peer_addr)
    }
}

/// The IP address of a peer address `ip:port`, `[ip]:port` or a bare
/// address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`, from dual-stack listeners)
/// becomes IPv4.
pub fn peer_ip(peer_addr: &str) -> Option<IpAddr> {
    let ip = match peer_addr.parse::<SocketAddr>() {
        Ok(sa) => sa.ip(),
        Err(_) => peer_addr.parse::<IpAddr>().ok()?,
    };
    Some(ip.to_canonical())
}

/// A parsed, valid row.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    id: Option<i64>,
    allow: bool,
    who: Who,
    subscribe: bool,
    publish: bool,
    topic: TopicRule,
}

#[derive(Clone, Debug, PartialEq)]
enum Who {
    /// `username = '$all'`: every client (the other columns are ignored, as
    /// in EMQX).
    All,
    /// Every present condition must hold (at least one is present).
    And {
        ip: Option<Cidr>,
        username: Option<Vec<u8>>,
        client_id: Option<Vec<u8>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// An address (`10.0.0.1`, `::1`) or a block (`10.0.0.0/8`,
    /// `2001:db8::/32`). Host bits set in a block are ignored.
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, bits)) => {
                if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (addr, Some(bits.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        // A plain IPv4-mapped address is the IPv4 address (peers are
        // canonicalised the same way).
        let network = if prefix == max {
            network.to_canonical()
        } else {
            network
        };
        Some(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            // An IPv4 peer is also its IPv4-mapped IPv6 address, which it
            // is on a dual-stack listener: `::ffff:10.0.0.0/104` and `::/0`
            // cover it, whichever listener it came through.
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip.to_ipv6_mapped()) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq)]
enum TopicRule {
    /// `eq <topic>`: the requested topic or filter, literally.
    Eq(String),
    /// A filter whose levels may be `+`, `#`, `%c` or `%u`.
    Filter(Vec<Level>),
}

#[derive(Clone, Debug, PartialEq)]
enum Level {
    Literal(String),
    Plus,
    Hash,
    ClientId,
    Username,
}

impl Rule {
    /// Validates a raw row: `allow` 0/1, `access` 1/2/3, at least one
    /// who-column (or `$all`), a valid address or CIDR, a valid topic filter.
    pub fn parse(row: &AclRow) -> Result<Rule, InvalidRow> {
        let id = match &row.id {
            None => None,
            Some(v) => Some(integer(v).ok_or_else(|| InvalidRow {
                id: None,
                reason: format!("id is not an integer: {v:?}"),
            })?),
        };
        let invalid = |reason: String| InvalidRow { id, reason };

        let allow = match integer(&row.allow) {
            Some(1) => true,
            Some(0) => false,
            _ => {
                return Err(invalid(format!(
                    "allow must be 0 or 1, not {:?}",
                    row.allow
                )));
            }
        };
        let (subscribe, publish) = match integer(&row.access) {
            Some(1) => (true, false),
            Some(2) => (false, true),
            Some(3) => (true, true),
            _ => {
                return Err(invalid(format!(
                    "access must be 1, 2 or 3, not {:?}",
                    row.access
                )));
            }
        };

        let username = bytes(&row.username)
            .ok_or_else(|| invalid(format!("username is not text: {:?}", row.username)))?;
        let who = if username.as_deref() == Some(b"$all".as_slice()) {
            Who::All
        } else {
            let client_id = bytes(&row.clientid)
                .ok_or_else(|| invalid(format!("clientid is not text: {:?}", row.clientid)))?;
            let ip = match bytes(&row.ipaddr) {
                None => return Err(invalid(format!("ipaddr is not text: {:?}", row.ipaddr))),
                Some(None) => None,
                Some(Some(raw)) => {
                    let cidr = std::str::from_utf8(&raw).ok().and_then(Cidr::parse);
                    Some(cidr.ok_or_else(|| {
                        invalid(format!(
                            "ipaddr {:?} is neither an address nor a CIDR block",
                            String::from_utf8_lossy(&raw)
                        ))
                    })?)
                }
            };
            if ip.is_none() && username.is_none() && client_id.is_none() {
                return Err(invalid(
                    "no ipaddr, username or clientid (and username is not $all)".into(),
                ));
            }
            Who::And {
                ip,
                username,
                client_id,
            }
        };

        let topic = match &row.topic {
            Value::Text(t) => t.clone(),
            Value::Blob(b) => {
                String::from_utf8(b.clone()).map_err(|_| invalid("topic is not UTF-8".into()))?
            }
            other => return Err(invalid(format!("topic is not text: {other:?}"))),
        };
        let topic = parse_topic(&topic).map_err(invalid)?;

        Ok(Rule {
            id,
            allow,
            who,
            subscribe,
            publish,
            topic,
        })
    }

    /// Whether this row applies to `client` doing `action` on `topic`.
    pub fn matches(&self, client: &ClientInfo<'_>, action: Action, topic: &str) -> bool {
        let access = match action {
            Action::Publish => self.publish,
            Action::Subscribe | Action::Deliver => self.subscribe,
        };
        access && self.who_matches(client) && self.topic_matches(client, topic)
    }

    fn who_matches(&self, client: &ClientInfo<'_>) -> bool {
        let Who::And {
            ip,
            username,
            client_id,
        } = &self.who
        else {
            return true;
        };
        if let Some(cidr) = ip {
            match client.ip() {
                Some(peer) if cidr.contains(peer) => {}
                _ => return false,
            }
        }
        if let Some(username) = username {
            match client.matchable_username() {
                Some(u) if u.as_bytes() == username.as_slice() => {}
                _ => return false,
            }
        }
        if let Some(client_id) = client_id
            && client.client_id.as_bytes() != client_id.as_slice()
        {
            return false;
        }
        true
    }

    fn topic_matches(&self, client: &ClientInfo<'_>, requested: &str) -> bool {
        match &self.topic {
            TopicRule::Eq(literal) => literal == requested,
            TopicRule::Filter(levels) => {
                let mut rule = Vec::with_capacity(levels.len());
                for level in levels {
                    rule.push(match level {
                        Level::Literal(s) => Pat::Literal(s),
                        Level::Plus => Pat::Plus,
                        Level::Hash => Pat::Hash,
                        Level::ClientId => match placeholder(Some(client.client_id)) {
                            Some(v) => Pat::Literal(v),
                            None => return false,
                        },
                        Level::Username => match placeholder(client.matchable_username()) {
                            Some(v) => Pat::Literal(v),
                            None => return false,
                        },
                    });
                }
                covers(&rule, requested)
            }
        }
    }
}

/// A placeholder's value, or `None` when the row must not match: missing,
/// empty, or holding a character that would change the filter's meaning.
fn placeholder(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && !v.contains(['+', '#', '/', '\0']))
}

fn parse_topic(topic: &str) -> Result<TopicRule, String> {
    if let Some(literal) = topic.strip_prefix("eq ") {
        if literal.is_empty() {
            return Err("topic `eq ` names no topic".into());
        }
        return Ok(TopicRule::Eq(literal.to_owned()));
    }
    if topic.is_empty() {
        return Err("topic is empty".into());
    }
    if topic.contains('\0') {
        return Err("topic holds NUL".into());
    }
    let parts: Vec<&str> = topic.split('/').collect();
    let mut levels = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        levels.push(match *part {
            "+" => Level::Plus,
            "#" if i + 1 == parts.len() => Level::Hash,
            "#" => return Err(format!("topic {topic:?}: `#` is not the last level")),
            "%c" => Level::ClientId,
            "%u" => Level::Username,
            p if p.contains(['+', '#']) => {
                return Err(format!("topic {topic:?}: a wildcard shares a level"));
            }
            p => Level::Literal(p.to_owned()),
        });
    }
    Ok(TopicRule::Filter(levels))
}

enum Pat<'a> {
    Literal(&'a str),
    Plus,
    Hash,
}

/// Whether the rule filter `rule` matches every topic that `requested` (a
/// topic name, or a filter for SUBSCRIBE) can match. For a topic name this is
/// ordinary MQTT matching; for a filter, `a/+` does not cover `a/#` nor `#`,
/// and a rule's `+`/`#` at the first level never covers a `$`-topic.
fn covers(rule: &[Pat<'_>], requested: &str) -> bool {
    let mut req = requested.split('/');
    let mut i = 0;
    loop {
        let r = req.next();
        let p = rule.get(i);
        match (p, r) {
            (Some(Pat::Hash), Some(r)) => {
                // `#` covers everything below, but at the first level not a
                // `$`-topic (a requested `+`/`#` there cannot match one).
                return !(i == 0 && r.starts_with('$'));
            }
            // The requested topic ends here: `a/#` also matches `a`.
            (Some(Pat::Hash), None) => return true,
            (Some(_), None) => return false,
            (None, None) => return true,
            (None, Some(_)) => return false,
            (Some(Pat::Plus), Some(r)) => {
                // A requested `#` at the first level matches topics of one
                // level or more, all of which `+/#` covers. Deeper, `a/#`
                // also matches `a`, which `a/+/#` does not.
                if r == "#" {
                    return i == 0 && matches!(rule.get(1..), Some([Pat::Hash]));
                }
                if i == 0 && r.starts_with('$') {
                    return false;
                }
            }
            (Some(Pat::Literal(l)), Some(r)) => {
                // A requested `+` or `#` matches more than one literal level.
                if r == "+" || r == "#" || *l != r {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// The integer in a column: an integer, an integral real, or decimal digits
/// as text or bytes (how some drivers return `TINYINT`s and `DECIMAL`s).
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(*f as i64),
        Value::Text(t) => decimal(t.as_bytes()),
        Value::Blob(b) => decimal(b),
        _ => None,
    }
}

fn decimal(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A who-column's bytes: `Some(None)` for NULL or empty, `None` for a type
/// that is not text (the row is invalid).
fn bytes(v: &Value) -> Option<Option<Vec<u8>>> {
    match v {
        Value::Null => Some(None),
        Value::Text(t) if t.is_empty() => Some(None),
        Value::Text(t) => Some(Some(t.as_bytes().to_vec())),
        Value::Blob(b) if b.is_empty() => Some(None),
        Value::Blob(b) => Some(Some(b.clone())),
        _ => None,
    }
}

/// The decision of `rows` for `client` doing `action` on `topic`: every row
/// is validated first (one invalid row fails the whole check, so a broken
/// deny row can never be stepped over), then they are tried in `order` and
/// the first match wins.
///
/// With ids (a seven-column query) the rows are sorted by id; without, they
/// keep the query's order for `id-asc` and are reversed for `id-desc`, which
/// is what EMQX 4.x does with the rows of its default query.
pub fn decide(
    rows: &[AclRow],
    client: &ClientInfo<'_>,
    action: Action,
    topic: &str,
    order: Order,
) -> Result<Decision, InvalidRow> {
    decide_by_row(rows, client, action, topic, order).map(|(decision, _)| decision)
}

/// [`decide`], and which row decided: its index in `rows`, `None` when no row matches
/// (for the log, which names the row behind a denial).
pub fn decide_by_row(
    rows: &[AclRow],
    client: &ClientInfo<'_>,
    action: Action,
    topic: &str,
    order: Order,
) -> Result<(Decision, Option<usize>), InvalidRow> {
    let mut rules = rows
        .iter()
        .map(Rule::parse)
        .enumerate()
        .map(|(i, rule)| rule.map(|rule| (i, rule)))
        .collect::<Result<Vec<_>, _>>()?;
    let with_ids = rules.iter().filter(|(_, r)| r.id.is_some()).count();
    if with_ids == rules.len() {
        // Stable: equal ids keep the query's order.
        rules.sort_by_key(|(_, r)| r.id);
        if order == Order::IdDesc {
            rules.reverse();
        }
    } else if with_ids == 0 {
        if order == Order::IdDesc {
            rules.reverse();
        }
    } else {
        return Err(InvalidRow {
            id: None,
            reason: "some rows have an id and some do not".into(),
        });
    }
    Ok(rules
        .iter()
        .find(|(_, r)| r.matches(client, action, topic))
        .map_or((Decision::NoMatch, None), |(i, r)| {
            let decision = if r.allow {
                Decision::Allow
            } else {
                Decision::Deny
            };
            (decision, Some(*i))
        }))
}

/// The row as the log shows it: `id=4 allow=0 ipaddr=NULL username="alice" clientid=NULL
/// access=2 topic="factory/#"` (no `id=` when the query does not select it).
impl fmt::Display for AclRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.id {
            write!(f, "id={id} ")?;
        }
        write!(
            f,
            "allow={} ipaddr={} username={} clientid={} access={} topic={}",
            self.allow, self.ipaddr, self.username, self.clientid, self.access, self.topic
        )
    }
}

/// A column as SQL shows it: NULL, a number, or quoted (and escaped) text.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Blob(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
        }
    }
}

/// The `ipaddr` parameter of the ACL query: the peer's address without its
/// port (IPv4-mapped IPv6 as IPv4), as EMQX's `%a`.
pub fn ip_param(peer_addr: &str) -> Option<String> {
    peer_ip(peer_addr).map(|ip| match ip {
        IpAddr::V4(v4) => Ipv4Addr::to_string(&v4),
        IpAddr::V6(v6) => Ipv6Addr::to_string(&v6),
    })
}

#[cfg(test)]
mod tests;
