//! HTTP/1.1 POST over one kept-alive TCP connection: the OTLP exporter's send, run without the GIL.
//!
//! Only what an OTLP/HTTP collector needs: a request with a body, and a response whose status is read and whose
//! body (Content-Length, chunked, or up to the close) is discarded. Plain `http://` only; TLS and proxies stay
//! with Python's http.client and httpx. Timeouts, retries and what a status means are the caller's policy.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

/// A response head or chunk line longer than this is not an HTTP answer we can use.
const MAX_HEAD: usize = 64 * 1024;

pub struct Poster {
    host: String,
    port: u16,
    /// The request line and headers, up to and including `Content-Length: `.
    head: Vec<u8>,
    timeout: Duration,
    /// The idle kept-alive connection, or null: taken out for a post and put back after, by atomic swaps. No
    /// lock: posts run without the GIL, so a fork (taken with it) could land while one held a lock, and the
    /// child's `close()` would then wait forever.
    idle: AtomicPtr<Conn>,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet used, from `pos`.
    buf: Vec<u8>,
    pos: usize,
}

impl Poster {
    /// `host_header` is the Host value (host[:port] as in the URL); `headers` must hold no CR, LF or NUL.
    pub fn new(
        host: &str,
        port: u16,
        path: &str,
        host_header: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Poster, String> {
        let bad = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        if bad(path) || bad(host_header) || path.contains(' ') {
            return Err(format!("invalid request target {path:?} or host {host_header:?}"));
        }
        let mut head = format!("POST {path} HTTP/1.1\r\n").into_bytes();
        let user_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        if !user_host {
            head.extend_from_slice(format!("Host: {host_header}\r\n").as_bytes());
        }
        for (k, v) in headers {
            if k.is_empty() || bad(k) || bad(v) || k.contains(':') || k.contains(' ') {
                return Err(format!("invalid header {k:?}"));
            }
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: ");
        Ok(Poster {
            host: host.to_owned(),
            port,
            head,
            timeout: timeout.max(Duration::from_millis(1)),
            idle: AtomicPtr::new(ptr::null_mut()),
        })
    }

    fn take_idle(&self) -> Option<Box<Conn>> {
        let p = self.idle.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null pointer here came from `Box::into_raw` in `put_idle`, and the swap made this call
        // its only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    fn put_idle(&self, conn: Box<Conn>) {
        let old = self.idle.swap(Box::into_raw(conn), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: as in `take_idle`; another post's connection, put back first: this one replaces it.
            drop(unsafe { Box::from_raw(old) });
        }
    }

    /// Posts `body` and returns the response status. An error means no complete answer came (refused, reset,
    /// timed out, malformed); a kept-alive connection the server closed while idle is replaced once first.
    pub fn post(&self, body: &[u8]) -> io::Result<u16> {
        for attempt in 0..2 {
            let idle = self.take_idle();
            let reused = idle.is_some();
            let mut conn = match idle {
                Some(c) => c,
                None => Box::new(self.connect()?),
            };
            match self.exchange(&mut conn, body) {
                Ok((status, keep)) => {
                    if keep {
                        self.put_idle(conn);
                    }
                    return Ok(status);
                }
                Err(e) if reused && attempt == 0 && stale(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("unreachable"))
    }

    /// Closes the idle connection (shutdown), or drops a forked child's copy of the parent's.
    pub fn close(&self) {
        drop(self.take_idle());
    }

    fn connect(&self) -> io::Result<Conn> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    return Ok(Conn {
                        stream,
                        buf: Vec::with_capacity(1024),
                        pos: 0,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for the host")))
    }

    fn exchange(&self, conn: &mut Conn, body: &[u8]) -> io::Result<(u16, bool)> {
        let mut head = Vec::with_capacity(self.head.len() + 24);
        head.extend_from_slice(&self.head);
        head.extend_from_slice(body.len().to_string().as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        conn.buf.clear();
        conn.pos = 0;
        // One segment when the body is small; else two writes (no Nagle delay: TCP_NODELAY).
        if body.len() <= 16 * 1024 {
            head.extend_from_slice(body);
            conn.stream.write_all(&head)?;
        } else {
            conn.stream.write_all(&head)?;
            conn.stream.write_all(body)?;
        }
        loop {
            let response = conn.read_head()?;
            if (100..200).contains(&response.status) {
                continue; // an interim answer (100 Continue): the real one follows
            }
            let mut keep = response.keep_alive;
            if response.status == 204 || response.status == 304 {
                // no body
            } else if response.chunked {
                conn.skip_chunked()?;
            } else if let Some(n) = response.length {
                conn.skip(n)?;
            } else {
                conn.skip_to_eof()?;
                keep = false;
            }
            // Bytes past the answer mean the exchange is out of step: do not reuse the connection.
            return Ok((response.status, keep && conn.pos == conn.buf.len()));
        }
    }
}

impl Drop for Poster {
    fn drop(&mut self) {
        self.close();
    }
}

/// The errors of a kept-alive connection the server closed while it sat idle.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP response: {what}"))
}

impl Conn {
    /// Reads more bytes; an EOF is an error (the server closed before the answer was complete).
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 8192, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            )),
            _ => Ok(()),
        }
    }

    /// The next CRLF-terminated line, without its CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            self.fill()?;
        }
    }

    fn read_head(&mut self) -> io::Result<Head> {
        let status_line = self.line()?;
        let text = std::str::from_utf8(&status_line).map_err(|_| invalid("status line"))?;
        let mut parts = text.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| invalid("status"))?;
        if !version.starts_with("HTTP/1.") {
            return Err(invalid("version"));
        }
        let mut head = Head {
            status,
            length: None,
            chunked: false,
            keep_alive: version != "HTTP/1.0",
        };
        let mut total = status_line.len();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok(head);
            }
            total += line.len();
            if total > MAX_HEAD {
                return Err(invalid("headers too long"));
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(invalid("header line"));
            };
            let name = &line[..colon];
            let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
            if name.eq_ignore_ascii_case(b"content-length") {
                head.length = Some(value.parse().map_err(|_| invalid("content-length"))?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                head.chunked = value.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                let value = value.to_ascii_lowercase();
                if value.split(',').any(|t| t.trim() == "close") {
                    head.keep_alive = false;
                } else if value.split(',').any(|t| t.trim() == "keep-alive") {
                    head.keep_alive = true;
                }
            }
        }
    }

    fn skip(&mut self, mut n: usize) -> io::Result<()> {
        loop {
            let have = (self.buf.len() - self.pos).min(n);
            self.pos += have;
            n -= have;
            if n == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn skip_chunked(&mut self) -> io::Result<()> {
        loop {
            let line = self.line()?;
            let size = std::str::from_utf8(&line).unwrap_or("");
            let size = size.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailer fields, then the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.skip(size)?;
            if !self.line()?.is_empty() {
                return Err(invalid("chunk end"));
            }
        }
    }

    fn skip_to_eof(&mut self) -> io::Result<()> {
        loop {
            match self.fill() {
                Ok(()) => self.pos = self.buf.len(),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A server that answers each request on a connection with the next of `answers` (raw bytes), reading the
    /// request head and its Content-Length body first; `None` closes the connection without answering.
    fn serve(answers: Vec<Option<&'static [u8]>>) -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut bodies = Vec::new();
            let mut answers = answers.into_iter();
            'accept: while let Ok((mut s, _)) = listener.accept() {
                loop {
                    let mut req = Vec::new();
                    let mut byte = [0u8; 1];
                    while !req.ends_with(b"\r\n\r\n") {
                        if s.read(&mut byte).unwrap_or(0) == 0 {
                            continue 'accept;
                        }
                        req.push(byte[0]);
                    }
                    let text = String::from_utf8(req).unwrap();
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body).unwrap();
                    bodies.push(body);
                    match answers.next() {
                        Some(Some(a)) => s.write_all(a).unwrap(),
                        Some(None) => continue 'accept,
                        None => break 'accept,
                    }
                    if answers.len() == 0 {
                        break 'accept;
                    }
                }
            }
            bodies
        });
        (port, handle)
    }

    fn poster(port: u16) -> Poster {
        let headers = [("content-type".to_owned(), "application/x-protobuf".to_owned())];
        Poster::new(
            "127.0.0.1",
            port,
            "/v1/traces",
            "127.0.0.1",
            &headers,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn bodies_of_every_framing_on_one_connection() {
        let (port, server) = serve(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
            Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"),
            Some(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Some(b"HTTP/1.0 500 Oops\r\n\r\nbody to the close"),
        ]);
        let p = poster(port);
        let big = vec![7u8; 100_000];
        assert_eq!(p.post(b"one").unwrap(), 200);
        assert_eq!(p.post(&big).unwrap(), 503);
        assert_eq!(p.post(b"").unwrap(), 200);
        assert_eq!(p.post(b"four").unwrap(), 204);
        assert_eq!(p.post(b"five").unwrap(), 500);
        assert!(
            p.idle.load(Ordering::Acquire).is_null(),
            "a response read to the close leaves no connection"
        );
        let bodies = server.join().unwrap();
        assert_eq!(bodies.len(), 5);
        assert_eq!(bodies[1], big);
    }

    #[test]
    fn a_connection_closed_while_idle_is_replaced_once() {
        // The server reads the second request and closes unanswered, as one closing an idle connection at that
        // moment would: the post is sent once more on a new connection.
        let (port, server) = serve(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            None,
            Some(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
        ]);
        let p = poster(port);
        assert_eq!(p.post(b"a").unwrap(), 200);
        assert_eq!(p.post(b"b").unwrap(), 202);
        assert_eq!(
            server.join().unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn refused_silent_and_malformed_are_errors() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(poster(port).post(b"x").is_err(), "nothing listens");
        let (port, _server) = serve(vec![Some(b"NOT HTTP\r\n\r\n")]);
        assert_eq!(poster(port).post(b"x").unwrap_err().kind(), io::ErrorKind::InvalidData);
        // Accepts and never answers: the read times out.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Poster::new("127.0.0.1", port, "/", "h", &[], Duration::from_millis(100)).unwrap();
        let started = std::time::Instant::now();
        assert!(p.post(b"x").is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn headers_with_line_breaks_are_refused() {
        let h = [("x-token".to_owned(), "a\r\nInjected: 1".to_owned())];
        assert!(Poster::new("h", 80, "/", "h", &h, Duration::from_secs(1)).is_err());
        assert!(Poster::new("h", 80, "/a b", "h", &[], Duration::from_secs(1)).is_err());
    }
}
