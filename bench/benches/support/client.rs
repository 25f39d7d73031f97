//! A keep-alive HTTP/1.1 connection to `cusim serve`, as the benchmarks'
//! clients use it: one request at a time, the answer read by its
//! `Content-Length`.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Connection {
    reader: BufReader<TcpStream>,
    key: String,
}

impl Connection {
    /// Opens one to `addr`, its requests sent with the secret key `key`.
    pub async fn open(addr: SocketAddr, key: &str) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("the server listens");
        stream.set_nodelay(true).unwrap();
        Connection { reader: BufReader::new(stream), key: key.to_owned() }
    }

    /// Sends `method path` with the JSON `body`; the status and the body.
    pub async fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.key,
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
