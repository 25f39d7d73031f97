//! The Postgres frontend/backend protocol (v3), as much of it as a proxy
//! that holds statements needs: the framing of both directions, the
//! startup exchange, and enough decoding to name a step (its SQL and
//! parameters) and its reply (rows, command tags, SQLSTATE).
//!
//! The framing is the protocol's own, which is small: after the startup
//! packet (a length, then a code), every message is one type byte and a
//! big-endian length that counts itself. A codec crate (`pgwire`) would
//! bring a server framework and its dependencies for these few lines, and
//! would re-encode what a proxy must relay byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The startup packet's codes (they take the place of a protocol version).
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Protocol 3.0.
pub const PROTOCOL_3: i32 = 196_608;

/// The largest message accepted (Postgres's own limit for most messages
/// is 1 GB; a proxy on loopback has no reason to buffer more).
pub const MAX_MESSAGE: usize = 1 << 30;

/// A framing error: the bytes are not the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

/// The length of the untyped startup packet at the front of `buf` (a
/// length that counts itself, then a code), once it is all there.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(len) = read_i32(buf, 0) else { return Ok(None) };
    let len = usize::try_from(len).ok().filter(|l| (8..=10_000).contains(l));
    let Some(len) = len else {
        return Err(FrameError("a startup packet must be 8 to 10,000 bytes long".into()));
    };
    Ok((buf.len() >= len).then_some(len))
}

/// The code of a complete startup packet (`SSL_REQUEST`, `PROTOCOL_3`, …).
pub fn startup_code(packet: &[u8]) -> i32 {
    read_i32(packet, 4).unwrap_or(0)
}

/// The length of the typed message at the front of `buf` (its type
/// byte, its length, its body), once it is all there.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(len) = read_i32(buf, 1) else { return Ok(None) };
    let body = usize::try_from(len).ok().filter(|l| (4..=MAX_MESSAGE).contains(l));
    let Some(body) = body else {
        return Err(FrameError(format!("message {:?} has a length of {len}", buf[0] as char)));
    };
    Ok((buf.len() > body).then_some(body + 1))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes = buf.get(at..at + 4)?;
    Some(i32::from_be_bytes(bytes.try_into().expect("four bytes")))
}

fn read_i16(buf: &[u8], at: usize) -> Option<i16> {
    let bytes = buf.get(at..at + 2)?;
    Some(i16::from_be_bytes(bytes.try_into().expect("two bytes")))
}

/// A message's body: after its type byte and length.
fn body(message: &[u8]) -> &[u8] {
    message.get(5..).unwrap_or(&[])
}

/// A NUL-terminated string at `at`, and the position after it.
fn cstr(buf: &[u8], at: usize) -> Option<(String, usize)> {
    let rest = buf.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some((String::from_utf8_lossy(&rest[..end]).into_owned(), at + end + 1))
}

/// What the client's message does to the step being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Part of a step still being gathered (Parse, Bind, Describe,
    /// Execute, Close, …).
    Part,
    /// Ends a step: the server answers what came before it (`Query`,
    /// `Sync`, `Flush`, `FunctionCall`).
    Ends,
    /// Not a step: relayed as it comes (`Terminate`, and `CopyData`,
    /// `CopyDone`, `CopyFail` of a copy under way, which its step's reply
    /// is waiting for).
    Passes,
}

/// Where a frontend message of type `tag` falls in a step. `Flush` ends
/// a step as `Sync` does: a driver that sends one waits for what it asks
/// before it sends more, so holding it for a `Sync` would wait forever.
pub fn boundary(tag: u8) -> Boundary {
    match tag {
        b'Q' | b'S' | b'H' | b'F' => Boundary::Ends,
        b'X' | b'd' | b'c' | b'f' => Boundary::Passes,
        _ => Boundary::Part,
    }
}

/// What a connection's client has prepared: each statement's SQL and
/// parameter types by name (the unnamed statement is `""`), so a `Bind`
/// and an `Execute` can be shown with the SQL they run.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    statements: BTreeMap<String, (String, Vec<u32>)>,
    /// Each portal: its line, its statement, its result columns' formats.
    portals: BTreeMap<String, (String, String, Vec<i16>)>,
}

/// What a step asks of the server, beside its lines: the statement whose
/// row types it describes, and the statement whose rows it returns with
/// the formats it asked for (so its rows can be read).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shape {
    pub lines: Vec<String>,
    pub described: Option<String>,
    pub executed: Option<(String, Vec<i16>)>,
}

impl Prepared {
    /// What a step (its client messages, concatenated) runs: a line per
    /// statement, with its parameters, and what it describes and
    /// executes. Remembers the step's `Parse`s and `Bind`s for the steps
    /// after it.
    pub fn shape(&mut self, step: &[u8]) -> Shape {
        let mut shape = Shape::default();
        let lines = &mut shape.lines;
        let mut at = 0;
        while let Ok(Some(len)) = message_len(&step[at..]) {
            let message = &step[at..at + len];
            at += len;
            let b = body(message);
            match message[0] {
                b'Q' => {
                    if let Some((sql, _)) = cstr(b, 0) {
                        lines.push(one_line(&sql));
                    }
                }
                b'P' => {
                    let Some((name, next)) = cstr(b, 0) else { continue };
                    let Some((sql, next)) = cstr(b, next) else { continue };
                    let count = read_i16(b, next).unwrap_or(0).max(0) as usize;
                    let types =
                        (0..count).map(|k| read_i32(b, next + 2 + 4 * k).unwrap_or(0) as u32).collect();
                    self.statements.insert(name, (sql, types));
                }
                b'B' => {
                    let Some((portal, next)) = cstr(b, 0) else { continue };
                    let Some((statement, next)) = cstr(b, next) else { continue };
                    let (sql, types) = self.statements.get(&statement).cloned().unwrap_or_default();
                    let (params, formats) =
                        bind_params(b, next, &types).unwrap_or_else(|| ("(unreadable)".into(), Vec::new()));
                    let shown = if params.is_empty() {
                        one_line(&sql)
                    } else {
                        format!("{} -- {params}", one_line(&sql))
                    };
                    self.portals.insert(portal, (shown, statement, formats));
                }
                b'D' if b.first() == Some(&b'S') => shape.described = cstr(b, 1).map(|(name, _)| name),
                b'E' => {
                    if let Some((portal, _)) = cstr(b, 0) {
                        match self.portals.get(&portal) {
                            Some((shown, statement, formats)) => {
                                lines.push(shown.clone());
                                shape.executed = Some((statement.clone(), formats.clone()));
                            }
                            None => lines.push("(unknown portal)".into()),
                        }
                    }
                }
                b'F' => lines.push("(function call)".into()),
                _ => {}
            }
        }
        shape
    }
}

/// SQL on one line, its runs of white space made single spaces.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `Bind`'s parameters from `at` (after its portal and statement
/// names), shown as `$1 = …, $2 = …`, and the formats it asks for the
/// result's columns.
fn bind_params(b: &[u8], at: usize, types: &[u32]) -> Option<(String, Vec<i16>)> {
    let format_count = read_i16(b, at)?.max(0) as usize;
    let formats: Vec<i16> = (0..format_count).map(|k| read_i16(b, at + 2 + 2 * k)).collect::<Option<_>>()?;
    let mut at = at + 2 + 2 * format_count;
    let count = read_i16(b, at)?.max(0) as usize;
    at += 2;
    let mut shown = String::new();
    for k in 0..count {
        let len = read_i32(b, at)?;
        at += 4;
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats.get(k)?,
        };
        let value = if len < 0 {
            "NULL".to_string()
        } else {
            let bytes = b.get(at..at + len as usize)?;
            at += len as usize;
            render(bytes, format, types.get(k).copied().unwrap_or(0))
        };
        if k > 0 {
            shown.push_str(", ");
        }
        let _ = write!(shown, "${} = {value}", k + 1);
    }
    let result_count = read_i16(b, at)?.max(0) as usize;
    let results = (0..result_count).map(|k| read_i16(b, at + 2 + 2 * k)).collect::<Option<_>>()?;
    Some((shown, results))
}

/// One value of a known type, as SQL would show it; bytes otherwise.
fn render(bytes: &[u8], format: i16, oid: u32) -> String {
    const BOOL: u32 = 16;
    const INT8: u32 = 20;
    const INT2: u32 = 21;
    const INT4: u32 = 23;
    const TEXT: u32 = 25;
    const JSON: u32 = 114;
    const FLOAT8: u32 = 701;
    const VARCHAR: u32 = 1043;
    const TIMESTAMPTZ: u32 = 1184;
    const JSONB: u32 = 3802;
    let quoted = |text: &str| format!("'{}'", text.replace('\'', "''"));
    if format == 0 {
        return quoted(&String::from_utf8_lossy(bytes));
    }
    let int =
        |n: usize| (bytes.len() == n).then(|| bytes.iter().fold(0i64, |acc, &b| (acc << 8) | i64::from(b)));
    match oid {
        BOOL if bytes.len() == 1 => Some((if bytes[0] != 0 { "true" } else { "false" }).to_string()),
        INT2 => int(2).map(|v| (v as i16).to_string()),
        INT4 => int(4).map(|v| (v as i32).to_string()),
        INT8 => int(8).map(|v| v.to_string()),
        FLOAT8 if bytes.len() == 8 => Some(f64::from_be_bytes(bytes.try_into().expect("8")).to_string()),
        TEXT | VARCHAR | JSON => Some(quoted(&String::from_utf8_lossy(bytes))),
        JSONB if bytes.first() == Some(&1) => Some(quoted(&String::from_utf8_lossy(&bytes[1..]))),
        // Microseconds since 2000-01-01, shown as they are.
        TIMESTAMPTZ => int(8).map(|v| format!("timestamptz {v} µs after 2000-01-01")),
        _ => None,
    }
    .unwrap_or_else(|| {
        let mut hex = String::from("'\\x");
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        hex.push('\'');
        hex
    })
}

/// What the server answered a step, read from its messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Command tags (`INSERT 0 1`, `SELECT 2`, `BEGIN`, …), in order.
    pub tags: Vec<String>,
    /// Rows returned, each column as SQL would show it (a type this does
    /// not know, sent in binary, as bytes).
    pub rows: Vec<Vec<Option<String>>>,
    /// The error, if any: SQLSTATE and message.
    pub error: Option<(String, String)>,
    /// The transaction status at the end (`I` idle, `T` in a
    /// transaction, `E` in a failed one), once `ReadyForQuery` came.
    pub status: Option<char>,
    /// The columns of the rows coming: type and format.
    columns: Vec<(u32, i16)>,
    /// The formats the step's `Bind` asked for its rows, if it did.
    formats: Option<Vec<i16>>,
    /// The row types of the last `RowDescription`.
    described: Option<Vec<u32>>,
}

/// The format of column `k` of `count`, from a `Bind`'s result formats
/// (none: text; one: all; else one each).
fn format_of(formats: &[i16], k: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(k).copied().unwrap_or(0),
    }
}

impl Reply {
    /// The reply to a step that executes a statement whose row types a
    /// step before it described (`types`), with the formats its `Bind`
    /// asked for.
    pub fn expecting(types: Option<&Vec<u32>>, formats: Option<Vec<i16>>) -> Reply {
        let mut reply = Reply { formats, ..Reply::default() };
        if let (Some(types), Some(formats)) = (types, &reply.formats) {
            reply.columns = types.iter().enumerate().map(|(k, &oid)| (oid, format_of(formats, k))).collect();
        }
        reply
    }

    /// The row types of the `RowDescription` it held, if any.
    pub fn described(&self) -> Option<&Vec<u32>> {
        self.described.as_ref()
    }

    /// Reads one backend message into the reply.
    pub fn add(&mut self, message: &[u8]) {
        let b = body(message);
        match message.first() {
            Some(b'C') => {
                if let Some((tag, _)) = cstr(b, 0) {
                    self.tags.push(tag);
                }
            }
            Some(b'T') => {
                let count = read_i16(b, 0).unwrap_or(0).max(0) as usize;
                let mut at = 2;
                self.columns.clear();
                for _ in 0..count {
                    let Some((_, next)) = cstr(b, at) else { break };
                    // Table, attribute, type, size, modifier, format.
                    let oid = read_i32(b, next + 6).unwrap_or(0) as u32;
                    let described = read_i16(b, next + 16).unwrap_or(0);
                    // A statement's description says text; the `Bind`
                    // says what comes.
                    let format =
                        self.formats.as_ref().map_or(described, |f| format_of(f, self.columns.len()));
                    self.columns.push((oid, format));
                    at = next + 18;
                }
                self.described = Some(self.columns.iter().map(|(oid, _)| *oid).collect());
            }
            Some(b'D') => {
                let count = read_i16(b, 0).unwrap_or(0).max(0) as usize;
                let mut at = 2;
                let mut row = Vec::with_capacity(count);
                for column in 0..count {
                    let Some(len) = read_i32(b, at) else { break };
                    at += 4;
                    if len < 0 {
                        row.push(None);
                        continue;
                    }
                    let bytes = b.get(at..at + len as usize).unwrap_or(&[]);
                    at += len as usize;
                    let (oid, format) = self.columns.get(column).copied().unwrap_or((0, 0));
                    row.push(Some(render(bytes, format, oid)));
                }
                self.rows.push(row);
            }
            Some(b'E') => self.error = Some(error_fields(b)),
            Some(b'Z') => self.status = b.first().map(|&s| s as char),
            _ => {}
        }
    }

    /// The reply in one line: `INSERT 0 1`, `SELECT 1 [row…]`, or
    /// `ERROR 23505 duplicate key …`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.tags.clone();
        if !self.rows.is_empty() {
            let shown: Vec<String> = self
                .rows
                .iter()
                .take(3)
                .map(|row| {
                    let cols: Vec<String> =
                        row.iter().map(|c| c.clone().unwrap_or_else(|| "NULL".into())).collect();
                    format!("({})", cols.join(", "))
                })
                .collect();
            let more =
                if self.rows.len() > 3 { format!(" … {} rows", self.rows.len()) } else { String::new() };
            parts.push(format!("rows {}{more}", shown.join(" ")));
        }
        if let Some((code, message)) = &self.error {
            parts.push(format!("ERROR {code} {message}"));
        }
        if parts.is_empty() {
            "(no result)".into()
        } else {
            parts.join("; ")
        }
    }
}

/// An `ErrorResponse`'s SQLSTATE (`C`) and message (`M`).
fn error_fields(b: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut at = 0;
    while let Some(&field) = b.get(at) {
        if field == 0 {
            break;
        }
        let Some((value, next)) = cstr(b, at + 1) else { break };
        match field {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
        at = next;
    }
    (code, message)
}

/// The backend PID of a `BackendKeyData` message.
pub fn backend_pid(message: &[u8]) -> Option<i32> {
    (message.first() == Some(&b'K')).then(|| read_i32(body(message), 0)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn cs(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    #[test]
    fn a_message_is_framed_only_once_it_is_whole() {
        let m = message(b'Q', &cs("SELECT 1"));
        for cut in 0..m.len() {
            assert_eq!(message_len(&m[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(message_len(&m), Ok(Some(m.len())));
        let mut two = m.clone();
        two.extend(message(b'S', &[]));
        assert_eq!(message_len(&two), Ok(Some(m.len())));
    }

    #[test]
    fn a_length_outside_the_protocol_is_an_error() {
        assert!(message_len(&[b'Q', 0, 0, 0, 2]).is_err());
        assert!(message_len(&[b'Q', 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(startup_len(&[0, 0, 0, 4, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_startup_packet_carries_its_code() {
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend(SSL_REQUEST.to_be_bytes());
        assert_eq!(startup_len(&ssl[..7]), Ok(None));
        assert_eq!(startup_len(&ssl), Ok(Some(8)));
        assert_eq!(startup_code(&ssl), SSL_REQUEST);
    }

    #[test]
    fn steps_end_where_the_server_must_answer() {
        for tag in [b'Q', b'S', b'H', b'F'] {
            assert_eq!(boundary(tag), Boundary::Ends);
        }
        for tag in [b'P', b'B', b'D', b'E', b'C'] {
            assert_eq!(boundary(tag), Boundary::Part);
        }
        for tag in [b'X', b'd', b'c', b'f'] {
            assert_eq!(boundary(tag), Boundary::Passes);
        }
    }

    #[test]
    fn an_extended_batch_is_shown_as_its_sql_and_parameters() {
        let mut parse = cs("");
        parse.extend(cs("INSERT INTO t (a, b)\n   VALUES ($1, $2)"));
        parse.extend(2i16.to_be_bytes());
        parse.extend(23i32.to_be_bytes());
        parse.extend(25i32.to_be_bytes());
        let mut bind = cs("");
        bind.extend(cs(""));
        bind.extend(1i16.to_be_bytes());
        bind.extend(1i16.to_be_bytes()); // binary
        bind.extend(2i16.to_be_bytes());
        bind.extend(4i32.to_be_bytes());
        bind.extend(7i32.to_be_bytes());
        bind.extend(5i32.to_be_bytes());
        bind.extend(b"it's");
        bind.push(b'!');
        bind.extend(0i16.to_be_bytes());
        let mut step = message(b'P', &parse);
        step.extend(message(b'B', &bind));
        step.extend(message(b'E', &[&cs("")[..], &0i32.to_be_bytes()].concat()));
        step.extend(message(b'S', &[]));
        let mut prepared = Prepared::default();
        assert_eq!(
            prepared.shape(&step).lines,
            ["INSERT INTO t (a, b) VALUES ($1, $2) -- $1 = 7, $2 = 'it''s!'"]
        );
    }

    #[test]
    fn a_named_statement_is_remembered_across_steps() {
        let mut parse = cs("s1");
        parse.extend(cs("SELECT $1"));
        parse.extend(0i16.to_be_bytes());
        let mut prepared = Prepared::default();
        assert!(prepared.shape(&message(b'P', &parse)).lines.is_empty());
        let mut bind = cs("p");
        bind.extend(cs("s1"));
        bind.extend(0i16.to_be_bytes()); // text
        bind.extend(1i16.to_be_bytes());
        bind.extend((-1i32).to_be_bytes());
        bind.extend(0i16.to_be_bytes());
        let mut step = message(b'B', &bind);
        step.extend(message(b'E', &[&cs("p")[..], &0i32.to_be_bytes()].concat()));
        let shape = prepared.shape(&step);
        assert_eq!(shape.lines, ["SELECT $1 -- $1 = NULL"]);
        assert_eq!(shape.executed, Some(("s1".to_string(), Vec::new())));
    }

    #[test]
    fn a_reply_keeps_tags_rows_errors_and_status() {
        let mut reply = Reply::default();
        let mut row = 2i16.to_be_bytes().to_vec();
        row.extend(3i32.to_be_bytes());
        row.extend(b"abc");
        row.extend((-1i32).to_be_bytes());
        reply.add(&message(b'D', &row));
        reply.add(&message(b'C', &cs("SELECT 1")));
        let mut error = vec![b'S'];
        error.extend(cs("ERROR"));
        error.push(b'C');
        error.extend(cs("23505"));
        error.push(b'M');
        error.extend(cs("duplicate key"));
        error.push(0);
        reply.add(&message(b'E', &error));
        reply.add(&message(b'Z', b"E"));
        assert_eq!(reply.rows, vec![vec![Some("'abc'".to_string()), None]]);
        assert_eq!(reply.error, Some(("23505".into(), "duplicate key".into())));
        assert_eq!(reply.status, Some('E'));
        assert_eq!(reply.summary(), "SELECT 1; rows ('abc', NULL); ERROR 23505 duplicate key");
    }

    #[test]
    fn backend_key_data_names_the_pid() {
        let mut key = 4242i32.to_be_bytes().to_vec();
        key.extend(7i32.to_be_bytes());
        assert_eq!(backend_pid(&message(b'K', &key)), Some(4242));
        assert_eq!(backend_pid(&message(b'Z', b"I")), None);
    }
}
