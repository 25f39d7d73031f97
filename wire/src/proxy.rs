//! The proxies: a listener on loopback, and per connection accepted, a
//! connection to the real server and two pumps, one each way.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::pg::{self, Boundary, FrameError};
use crate::resp;

/// Which server a proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Store {
    Postgres,
    Redis,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Postgres => "postgres",
            Store::Redis => "redis",
        })
    }
}

/// One step at the wire: which connection sent it, its number there, and
/// what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    pub store: Store,
    /// The proxy's number for the connection, in the order accepted.
    pub conn: u64,
    /// The step's number on its connection, from 0.
    pub seq: u64,
    /// The Postgres backend serving the connection.
    pub pid: Option<i32>,
    /// What it runs: a line per statement (SQL with its parameters), or
    /// the Redis command.
    pub statements: Vec<String>,
}

/// What a proxy reports, in the order it happened on each connection.
#[derive(Debug)]
pub enum Event {
    /// A connection was accepted: the server opens one (its startup is
    /// under way; for Postgres, `Opened` follows).
    Accepted { store: Store, conn: u64 },
    /// A connection is ready for steps (for Postgres: after its startup,
    /// with its backend's PID).
    Opened { store: Store, conn: u64, pid: Option<i32> },
    /// A step relayed at once (the gate was open, or a Redis setup
    /// command).
    Passed(StepInfo),
    /// A step held until [`Held::release`].
    Held(Held),
    /// The server answered a step: the reply in one line, and its error
    /// (SQLSTATE, or the Redis error's first word) if it failed. Sent
    /// before the reply's last byte reaches the client.
    Replied { store: Store, conn: u64, seq: u64, reply: String, error: Option<String> },
    /// A reply held, as [`Proxy::hold_replies`] asked, until
    /// [`HeldReply::release`].
    ReplyHeld(HeldReply),
    /// The connection ended (either side closed it, or a release closed
    /// it).
    Closed { store: Store, conn: u64 },
    /// The real server could not be reached for a connection accepted
    /// (the client's connection is closed), or a side spoke something
    /// that is not the protocol.
    Failed { store: Store, conn: u64, error: String },
}

/// What becomes of a held step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Relay it to the server.
    Forward,
    /// Close the connection before it reaches the server.
    CloseBefore,
    /// Relay it, let the server run it, and close the connection instead
    /// of relaying its reply (a response lost).
    LoseReply,
}

/// A step held at the wire.
pub struct Held {
    pub step: StepInfo,
    decide: oneshot::Sender<Release>,
}

impl Held {
    /// Lets the step go as `how` says.
    pub fn release(self, how: Release) {
        // A connection that closed meanwhile has nothing to release.
        let _ = self.decide.send(how);
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held").field("step", &self.step).finish()
    }
}

/// A reply held at the wire.
pub struct HeldReply {
    pub store: Store,
    pub conn: u64,
    pub seq: u64,
    pub reply: String,
    let_go: oneshot::Sender<()>,
}

impl HeldReply {
    /// Relays the reply to the client.
    pub fn release(self) {
        let _ = self.let_go.send(());
    }
}

impl fmt::Debug for HeldReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldReply").field("conn", &self.conn).field("seq", &self.seq).finish()
    }
}

/// A connection's state the controller may read and set.
#[derive(Default)]
struct ConnState {
    pid: AtomicI32,
    hold_replies: AtomicBool,
}

impl ConnState {
    /// The Postgres backend's PID, once `BackendKeyData` named it.
    fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&pid| pid != 0)
    }
}

/// What the proxy and its connections share.
struct Shared {
    store: Store,
    upstream: String,
    events: mpsc::UnboundedSender<Event>,
    gated: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Shared {
    fn send(&self, event: Event) {
        // A controller that stopped listening leaves the proxy relaying.
        let _ = self.events.send(event);
    }
}

/// A proxy on loopback in front of one real server. Dropping it closes
/// its listener and every connection through it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: AbortHandle,
}

impl Proxy {
    /// Listens on an unused loopback port for connections to relay to
    /// `upstream` (`host:port`), reporting to `events`. Starts with its
    /// gate open.
    pub async fn start(
        store: Store,
        upstream: &str,
        events: mpsc::UnboundedSender<Event>,
    ) -> io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store,
            upstream: upstream.to_string(),
            events,
            gated: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(BTreeMap::new()),
        });
        let accepting = tokio::spawn(accept(listener, Arc::clone(&shared))).abort_handle();
        Ok(Proxy { addr, shared, accepting })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds every step from now on (`true`), or relays them (`false`).
    /// A step already held stays held until released.
    pub fn set_gated(&self, gated: bool) {
        self.shared.gated.store(gated, Ordering::SeqCst);
    }

    /// Holds connection `conn`'s replies (each whole, up to Postgres's
    /// `ReadyForQuery`) until released (`true`), or relays them.
    pub fn hold_replies(&self, conn: u64, hold: bool) {
        if let Some(state) = self.shared.conns.lock().expect("not poisoned").get(&conn) {
            state.hold_replies.store(hold, Ordering::SeqCst);
        }
    }
}

/// Accepts connections, each served by a task of its own that this one
/// owns (finished ones are reaped as it goes).
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => return,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = client.set_nodelay(true);
        let conn = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        let state = Arc::new(ConnState::default());
        shared.conns.lock().expect("not poisoned").insert(conn, Arc::clone(&state));
        shared.send(Event::Accepted { store: shared.store, conn });
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let store = shared.store;
            let result = match store {
                Store::Postgres => pg_connection(&shared, conn, &state, client).await,
                Store::Redis => redis_connection(&shared, conn, &state, client).await,
            };
            if let Err(error) = result {
                shared.send(Event::Failed { store, conn, error: error.to_string() });
            }
            shared.conns.lock().expect("not poisoned").remove(&conn);
            shared.send(Event::Closed { store, conn });
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The listening task owns every connection's task: aborted, it
        // drops them, and they abort too.
        self.accepting.abort();
    }
}

/// Reads whole frames from one side.
struct Frames {
    half: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Frames {
    fn new(half: OwnedReadHalf) -> Frames {
        Frames { half, buf: Vec::with_capacity(8192) }
    }

    /// The next whole frame (`frame` says how long the one at the front
    /// is, once it is whole); `None` at a clean end of the stream.
    async fn next(
        &mut self,
        frame: fn(&[u8]) -> Result<Option<usize>, FrameError>,
    ) -> io::Result<Option<Vec<u8>>> {
        loop {
            if !self.buf.is_empty() {
                let len = frame(&self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if let Some(len) = len {
                    let rest = self.buf.split_off(len);
                    return Ok(Some(std::mem::replace(&mut self.buf, rest)));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.half.read(&mut chunk).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a message",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A step sent to the server whose reply has not all come back.
struct Pending {
    seq: u64,
    /// Postgres: the statement whose row types the step describes, and
    /// the one whose rows it returns, with the formats asked.
    described: Option<String>,
    executed: Option<(String, Vec<i16>)>,
    /// Its reply ends with `ReadyForQuery` (Postgres: it ended with a
    /// `Sync`, a `Query` or a function call; always for Redis).
    answered: bool,
    lose: bool,
}

type Queue = Arc<Mutex<VecDeque<Pending>>>;

/// Holds or reports a whole step, as the gate says; what to do with it.
async fn decide(shared: &Shared, step: StepInfo, always_pass: bool) -> Release {
    if always_pass || !shared.gated.load(Ordering::SeqCst) {
        shared.send(Event::Passed(step));
        return Release::Forward;
    }
    let (decide, decided) = oneshot::channel();
    shared.send(Event::Held(Held { step, decide }));
    // A controller gone without deciding leaves the step to go through.
    decided.await.unwrap_or(Release::Forward)
}

/// Decides a whole step (`bytes`, awaited as `pending`) and relays it
/// unless it is to be closed before: `false` when the connection ends.
async fn relay_step(
    shared: &Shared,
    info: StepInfo,
    always_pass: bool,
    (bytes, mut pending): (&[u8], Pending),
    queue: &Queue,
    server: &mut OwnedWriteHalf,
) -> io::Result<bool> {
    let release = decide(shared, info, always_pass).await;
    if release == Release::CloseBefore {
        return Ok(false);
    }
    pending.lose = release == Release::LoseReply;
    queue.lock().expect("not poisoned").push_back(pending);
    server.write_all(bytes).await?;
    Ok(true)
}

/// After a reply: reports it, and waits while the connection's replies
/// are held.
async fn replied(
    shared: &Shared,
    state: &ConnState,
    conn: u64,
    pending: &Pending,
    reply: String,
    error: Option<String>,
) {
    let store = shared.store;
    shared.send(Event::Replied { store, conn, seq: pending.seq, reply: reply.clone(), error });
    if state.hold_replies.load(Ordering::SeqCst) {
        let (let_go, released) = oneshot::channel();
        shared.send(Event::ReplyHeld(HeldReply { store, conn, seq: pending.seq, reply, let_go }));
        let _ = released.await;
    }
}

async fn pg_connection(shared: &Shared, conn: u64, state: &ConnState, client: TcpStream) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let mut from_client = Frames::new(client_read);
    // The startup: an SSL or GSS encryption request is answered `N` (plain
    // TCP on loopback), a cancel request is relayed, and the startup
    // message opens the real connection.
    let startup = loop {
        let Some(packet) = from_client.next(pg::startup_len).await? else { return Ok(()) };
        match pg::startup_code(&packet) {
            pg::SSL_REQUEST | pg::GSSENC_REQUEST => client_write.write_all(b"N").await?,
            _ => break packet,
        }
    };
    let server = match TcpStream::connect(&shared.upstream).await {
        Ok(server) => server,
        Err(e) => {
            let error = format!("cannot reach Postgres at {}: {e}", shared.upstream);
            return Err(io::Error::new(e.kind(), error));
        }
    };
    let _ = server.set_nodelay(true);
    let (server_read, mut server_write) = server.into_split();
    server_write.write_all(&startup).await?;
    if pg::startup_code(&startup) == pg::CANCEL_REQUEST {
        return Ok(());
    }
    let queue: Queue = Arc::default();
    let from_client = pg_from_client(shared, conn, state, from_client, server_write, &queue);
    let from_server = pg_from_server(shared, conn, state, Frames::new(server_read), client_write, &queue);
    both_ways(from_client, from_server).await
}

/// Runs a connection's two pumps. When the client's side ends, the
/// server's goes on until the server closes too, so the replies it was
/// still sending are reported (a client may close as soon as it read an
/// error, before the rest of its reply came); a client gone by then
/// cannot be written to, which is no error. When the server's side ends
/// (or a reply is lost), the connection ends.
async fn both_ways(
    from_client: impl std::future::Future<Output = io::Result<()>>,
    from_server: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::pin!(from_client, from_server);
    tokio::select! {
        result = &mut from_client => {
            result?;
            match from_server.await {
                Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => Ok(()),
                other => other,
            }
        }
        result = &mut from_server => result,
    }
}

async fn pg_from_client(
    shared: &Shared,
    conn: u64,
    state: &ConnState,
    mut frames: Frames,
    mut server: OwnedWriteHalf,
    queue: &Queue,
) -> io::Result<()> {
    let mut prepared = pg::Prepared::default();
    let mut step: Vec<u8> = Vec::new();
    let mut seq = 0;
    while let Some(message) = frames.next(pg::message_len).await? {
        let tag = message[0];
        // Authentication answers (`p`) pass as the startup does.
        if tag == b'p' {
            server.write_all(&message).await?;
            continue;
        }
        match pg::boundary(tag) {
            Boundary::Passes => {
                if !step.is_empty() {
                    server.write_all(&std::mem::take(&mut step)).await?;
                }
                server.write_all(&message).await?;
                continue;
            }
            Boundary::Part => {
                step.extend_from_slice(&message);
                continue;
            }
            Boundary::Ends => step.extend_from_slice(&message),
        }
        let bytes = std::mem::take(&mut step);
        let shape = prepared.shape(&bytes);
        let info = StepInfo { store: Store::Postgres, conn, seq, pid: state.pid(), statements: shape.lines };
        let pending = Pending {
            seq,
            described: shape.described,
            executed: shape.executed,
            answered: tag != b'H',
            lose: false,
        };
        if !relay_step(shared, info, false, (&bytes, pending), queue, &mut server).await? {
            return Ok(());
        }
        seq += 1;
    }
    Ok(())
}

async fn pg_from_server(
    shared: &Shared,
    conn: u64,
    state: &ConnState,
    mut frames: Frames,
    mut client: OwnedWriteHalf,
    queue: &Queue,
) -> io::Result<()> {
    let mut started = false;
    let mut reply = pg::Reply::default();
    // Whether the reply under way has had a message yet.
    let mut fresh = true;
    // Each statement's row types, as a step described them.
    let mut row_types: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    // A reply kept back: to be lost, or held.
    let mut kept: Vec<u8> = Vec::new();
    while let Some(message) = frames.next(pg::message_len).await? {
        if let Some(pid) = pg::backend_pid(&message) {
            state.pid.store(pid, Ordering::SeqCst);
        }
        if !started {
            client.write_all(&message).await?;
            if message[0] == b'Z' {
                started = true;
                shared.send(Event::Opened { store: Store::Postgres, conn, pid: state.pid() });
            }
            continue;
        }
        if std::mem::take(&mut fresh) {
            let queue = queue.lock().expect("not poisoned");
            if let Some((statement, formats)) = queue.front().and_then(|p| p.executed.clone()) {
                reply = pg::Reply::expecting(row_types.get(&statement), Some(formats));
            }
        }
        reply.add(&message);
        let (losing, keeping) = {
            let queue = queue.lock().expect("not poisoned");
            let losing = queue.iter().find(|p| p.answered).is_some_and(|p| p.lose);
            (losing, losing || state.hold_replies.load(Ordering::SeqCst))
        };
        if message[0] != b'Z' {
            if keeping {
                kept.extend_from_slice(&message);
            } else {
                client.write_all(&message).await?;
            }
            continue;
        }
        // `ReadyForQuery`: the reply of every step up to the first that a
        // `ReadyForQuery` answers (steps that ended in a `Flush` before it
        // share it).
        let done = {
            let mut queue = queue.lock().expect("not poisoned");
            let mut done = None;
            while let Some(p) = queue.pop_front() {
                if p.answered {
                    done = Some(p);
                    break;
                }
            }
            done
        };
        let finished = std::mem::take(&mut reply);
        fresh = true;
        if let Some(pending) = &done {
            if let (Some(name), Some(types)) = (&pending.described, finished.described()) {
                row_types.insert(name.clone(), types.clone());
            }
        }
        if let Some(pending) = done {
            let error = finished.error.as_ref().map(|(code, _)| code.clone());
            replied(shared, state, conn, &pending, finished.summary(), error).await;
        }
        if losing {
            return Ok(());
        }
        kept.extend_from_slice(&message);
        client.write_all(&std::mem::take(&mut kept)).await?;
    }
    Ok(())
}

/// A Redis connection's setup commands, relayed as they come before any
/// other command.
fn is_setup(words: &[String]) -> bool {
    let first = words.first().map(|w| w.to_ascii_uppercase());
    matches!(first.as_deref(), Some("HELLO" | "AUTH" | "SELECT" | "CLIENT" | "READONLY"))
}

async fn redis_connection(
    shared: &Shared,
    conn: u64,
    state: &ConnState,
    client: TcpStream,
) -> io::Result<()> {
    let server = match TcpStream::connect(&shared.upstream).await {
        Ok(server) => server,
        Err(e) => {
            let error = format!("cannot reach Redis at {}: {e}", shared.upstream);
            return Err(io::Error::new(e.kind(), error));
        }
    };
    let _ = server.set_nodelay(true);
    shared.send(Event::Opened { store: Store::Redis, conn, pid: None });
    let (server_read, server_write) = server.into_split();
    let (client_read, client_write) = client.into_split();
    let queue: Queue = Arc::default();
    let from_client = redis_from_client(shared, conn, Frames::new(client_read), server_write, &queue);
    let from_server = redis_from_server(shared, conn, state, Frames::new(server_read), client_write, &queue);
    both_ways(from_client, from_server).await
}

async fn redis_from_client(
    shared: &Shared,
    conn: u64,
    mut frames: Frames,
    mut server: OwnedWriteHalf,
    queue: &Queue,
) -> io::Result<()> {
    let mut seq = 0;
    let mut setting_up = true;
    while let Some(command) = frames.next(resp::command_len).await? {
        let words = resp::command_words(&command);
        setting_up &= is_setup(&words);
        let info = StepInfo {
            store: Store::Redis,
            conn,
            seq,
            pid: None,
            statements: vec![resp::show_command(&command)],
        };
        let pending = Pending { seq, described: None, executed: None, answered: true, lose: false };
        if !relay_step(shared, info, setting_up, (&command, pending), queue, &mut server).await? {
            return Ok(());
        }
        seq += 1;
    }
    Ok(())
}

async fn redis_from_server(
    shared: &Shared,
    conn: u64,
    state: &ConnState,
    mut frames: Frames,
    mut client: OwnedWriteHalf,
    queue: &Queue,
) -> io::Result<()> {
    while let Some(reply) = frames.next(resp::reply_len).await? {
        if resp::is_push(&reply) {
            client.write_all(&reply).await?;
            continue;
        }
        let Some(pending) = queue.lock().expect("not poisoned").pop_front() else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "Redis replied to no command"));
        };
        let shown = resp::show_reply(&reply);
        let error = (reply.first() == Some(&b'-')).then(|| {
            shown.trim_start_matches("(error) ").split_whitespace().next().unwrap_or("").to_string()
        });
        replied(shared, state, conn, &pending, shown, error).await;
        if pending.lose {
            return Ok(());
        }
        client.write_all(&reply).await?;
    }
    Ok(())
}
