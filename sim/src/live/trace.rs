//! What a driven schedule ran: the real statements and commands, each with
//! the request it belongs to, in the order they were let through.

use serde::Serialize;

/// One step let through to Postgres or Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The request it belongs to (none: the server's own work, let
    /// through as a decision of the mover numbered one past the last
    /// request).
    pub request: Option<usize>,
    /// `postgres` or `redis`.
    pub store: String,
    /// The proxy's number for the connection, and the step's there.
    pub conn: u64,
    pub seq: u64,
    /// SQL with its parameters, or the Redis command.
    pub statements: Vec<String>,
    /// What came back (command tags, rows), once it did.
    pub reply: Option<String>,
    /// Its SQLSTATE or Redis error, if it failed.
    pub error: Option<String>,
    /// Whether it waited on a lock inside Postgres (its reply then held
    /// and let go as a decision of its own).
    pub waited: bool,
    /// The fault injected at it (`db_error`, `cache_down`,
    /// `lost_response`), if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl Line {
    /// The line as text: `[r0] postgres#3 SQL → reply`.
    pub fn text(&self) -> String {
        let who = self.request.map_or("server".to_owned(), |r| format!("r{r}"));
        let reply = match (&self.reply, &self.error) {
            (_, Some(error)) => format!(" → error {error}"),
            (Some(reply), None) => format!(" → {reply}"),
            (None, None) => " → (no reply)".to_owned(),
        };
        let waited = if self.waited { " [waited on a lock]" } else { "" };
        let fault = self.fault.as_ref().map_or(String::new(), |kind| format!(" [{kind}]"));
        format!("[{who}] {}#{} {}{reply}{waited}{fault}", self.store, self.conn, self.statements.join("; "))
    }

    /// What the step is, without its values: the SQL before its
    /// parameters, or the Redis command's name. Two runs of one schedule
    /// make fresh ids, so the order of steps is compared by this.
    pub fn shape(&self) -> String {
        let shapes: Vec<&str> = self
            .statements
            .iter()
            .map(|s| match self.store.as_str() {
                "redis" => s.split(' ').next().unwrap_or(""),
                _ => s.split(" -- ").next().unwrap_or(""),
            })
            .collect();
        format!("{}:{}", self.request.map_or("-".to_owned(), |r| r.to_string()), shapes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_who_what_and_answer_and_its_shape_drops_the_values() {
        let line = Line {
            request: Some(1),
            store: "postgres".into(),
            conn: 3,
            seq: 0,
            statements: vec!["insert into customers (id) values ($1) -- $1 = 'x-a'".into()],
            reply: Some("INSERT 0 1".into()),
            error: None,
            waited: true,
            fault: None,
        };
        assert_eq!(
            line.text(),
            "[r1] postgres#3 insert into customers (id) values ($1) -- $1 = 'x-a' → INSERT 0 1 [waited on a lock]"
        );
        assert_eq!(line.shape(), "1:insert into customers (id) values ($1)");
        let redis = Line { store: "redis".into(), statements: vec!["GET x-a".into()], ..line };
        assert_eq!(redis.shape(), "1:GET");
    }
}
