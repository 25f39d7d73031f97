//! Server URLs, pointed through a proxy: `postgres://user:secret@host:port/db?…`
//! and `redis://:secret@host:port/0` keep everything but their host and
//! port.

use std::net::SocketAddr;

/// A server URL split around its host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `scheme://userinfo@`
    head: String,
    /// `host:port` (the scheme's default port filled in).
    pub upstream: String,
    /// `/db?…`, or empty.
    tail: String,
}

impl ServerUrl {
    /// Reads `url`, whose scheme must be one of `schemes`; `default_port`
    /// when it names none.
    pub fn parse(url: &str, schemes: &[&str], default_port: u16) -> Result<ServerUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("{url:?} is not a URL (scheme://host:port/…)"));
        };
        if !schemes.contains(&scheme) {
            return Err(format!("{url:?}: the scheme must be {}", schemes.join(" or ")));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, host)) => (format!("{user}@"), host),
            None => (String::new(), authority),
        };
        if hostport.is_empty() {
            return Err(format!("{url:?} names no host (a socket folder cannot be proxied: use host:port)"));
        }
        let upstream = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                port.parse::<u16>().map_err(|_| format!("{url:?}: {port:?} is not a port"))?;
                hostport.to_string()
            }
            _ => format!("{hostport}:{default_port}"),
        };
        Ok(ServerUrl { head: format!("{scheme}://{userinfo}"), upstream, tail: tail.to_string() })
    }

    /// The same URL with `proxy` as its host and port.
    pub fn through(&self, proxy: SocketAddr) -> String {
        format!("{}{proxy}{}", self.head, self.tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_all_but_its_host_and_port() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let pg = ServerUrl::parse(
            "postgres://app:s%40cret@db.local:5433/billing?sslmode=disable",
            &["postgres", "postgresql"],
            5432,
        )
        .unwrap();
        assert_eq!(pg.upstream, "db.local:5433");
        assert_eq!(pg.through(proxy), "postgres://app:s%40cret@127.0.0.1:4000/billing?sslmode=disable");
        let redis = ServerUrl::parse("redis://:pw@localhost", &["redis"], 6379).unwrap();
        assert_eq!(redis.upstream, "localhost:6379");
        assert_eq!(redis.through(proxy), "redis://:pw@127.0.0.1:4000");
    }

    #[test]
    fn a_url_that_cannot_be_proxied_says_why() {
        let schemes = &["postgres"];
        assert!(ServerUrl::parse("localhost:5432", schemes, 5432).unwrap_err().contains("not a URL"));
        assert!(ServerUrl::parse("mysql://h/db", schemes, 5432)
            .unwrap_err()
            .contains("scheme must be postgres"));
        assert!(ServerUrl::parse("postgres:///db?host=/tmp", schemes, 5432).unwrap_err().contains("no host"));
        assert!(ServerUrl::parse("postgres://h:port/db", schemes, 5432).unwrap_err().contains("not a port"));
    }
}
