//! A minimal HTTP/1.0 GET for fetching CRLs from the distribution points a certificate names
//! (RFC 5280 §4.2.1.13). CRLs are signed, so plain `http:` is what CAs publish them over; no
//! TLS, no redirects, no proxies. Everything the server sends is untrusted: a response that is
//! not a plain `200` with a body within the size limit is an error, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest body taken (a CRL of ~100,000 entries is ~4 MB).
pub const MAX_BODY: usize = 8 << 20;

/// Host, port and path of an `http://` URL (`http://host[:port][/path]`, the host a name, an
/// IPv4 address or a bracketed IPv6 address).
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are fetched"))?;
    // A fragment is not sent; a query with no path before it belongs to the path.
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!("{url}: user information in the URL"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: unclosed IPv6 address"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if host
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b"/?#[]@\\".contains(&b))
    {
        return Err(format!(
            "{url}: a host with spaces, control or reserved characters"
        ));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{url}: control characters or spaces in the path"));
    }
    Ok((host.to_string(), port, path))
}

/// The body of a complete HTTP/1.x response, if its status is 200. The body runs to the end
/// of `resp` (the request asked the server to close), or to `Content-Length` if given.
pub fn parse_http_response(resp: &[u8]) -> Result<&[u8], String> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the headers")?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| "headers are not UTF-8")?;
    let body = &resp[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status:.60}"));
    }
    if code != "200" {
        return Err(format!("HTTP status {status:.60}"));
    }
    let mut length = None;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!("transfer encoding {value:.30} not supported"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:.30}"))?,
            );
        }
    }
    match length {
        Some(n) if n > body.len() => Err(format!("body cut short: {} of {n} bytes", body.len())),
        Some(n) => Ok(&body[..n]),
        None => Ok(body),
    }
}

/// GETs `url` with HTTP/1.0, giving up after `timeout` in all or when the response exceeds
/// [`MAX_BODY`] plus headers.
pub fn http_get(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    http_request(url, None, timeout)
}

/// POSTs `body` of type `content_type` to `url` (an OCSP request), as [`http_get`].
pub fn http_post(
    url: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    http_request(url, Some((content_type, body)), timeout)
}

fn http_request(
    url: &str,
    post: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let (host, port, path) = parse_http_url(url)?;
    let start = Instant::now();
    let left = |what: &str| {
        timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{url}: timed out {what}"))
    };
    let addrs =
        resolve(&host, port, left("looking up the host")?).map_err(|e| format!("{url}: {e}"))?;
    let mut conn = None;
    let mut last = format!("{url}: {host} has no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, left("connecting")?) {
            Ok(s) => {
                conn = Some(s);
                break;
            }
            Err(e) => last = format!("{url}: {a}: {e}"),
        }
    }
    let mut s = conn.ok_or(last)?;
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    s.set_write_timeout(Some(left("sending")?))
        .map_err(|e| e.to_string())?;
    let mut req = match post {
        None => format!(
            "GET {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: ferrogate-ike\r\nAccept: application/pkix-crl, */*\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        Some((ty, body)) => format!(
            "POST {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: ferrogate-ike\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes(),
    };
    if let Some((_, body)) = post {
        req.extend_from_slice(body);
    }
    s.write_all(&req).map_err(|e| format!("{url}: {e}"))?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        s.set_read_timeout(Some(left("reading")?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if resp.len() > MAX_BODY + 16384 {
                    return Err(format!("{url}: more than {MAX_BODY} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    parse_http_response(&resp)
        .map(<[u8]>::to_vec)
        .map_err(|e| format!("{url}: {e}"))
}

/// The addresses of `host`: an IP address as it is; a name looked up on a thread of its own,
/// waited for at most `timeout` (the resolver has no timeout of its own; a lookup that takes
/// longer finishes on its thread, unread).
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("crl-resolve".into())
        .spawn(move || {
            let r = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        })
        .map_err(|e| e.to_string())?;
    rx.recv_timeout(timeout)
        .map_err(|_| format!("no address for {host} within {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let ok = |u: &str| parse_http_url(u).unwrap();
        assert_eq!(
            ok("http://203.0.113.2:8080/ca.crl"),
            ("203.0.113.2".into(), 8080, "/ca.crl".into())
        );
        assert_eq!(
            ok("http://crl.example.net/x/y.crl"),
            ("crl.example.net".into(), 80, "/x/y.crl".into())
        );
        assert_eq!(
            ok("http://[2001:db8::2]:81/c"),
            ("2001:db8::2".into(), 81, "/c".into())
        );
        assert_eq!(ok("http://h"), ("h".into(), 80, "/".into()));
        assert_eq!(ok("http://h?x=1#f"), ("h".into(), 80, "/?x=1".into()));
        assert_eq!(ok("http://h/c.crl#f"), ("h".into(), 80, "/c.crl".into()));
        for bad in [
            "https://h/c",
            "ldap://h/cn=x",
            "http:///c",
            "http://h:99999/c",
            "http://[::1/c",
            "http://u@h/c",
            "http://h/a b",
            "http://h\r\nX: y/c",
            "http://h x/c",
            "http://h\\x/c",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_give_their_body_only_on_200() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Type: application/pkix-crl\r\n\r\nDERDATA";
        assert_eq!(parse_http_response(r).unwrap(), b"DERDATA");
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nDERDATA";
        assert_eq!(parse_http_response(r).unwrap(), b"DER");
        for bad in [
            &b"HTTP/1.0 404 Not Found\r\n\r\n"[..],
            b"HTTP/1.0 301 Moved\r\nLocation: http://x/\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n",
            b"",
        ] {
            assert!(parse_http_response(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_get_against_a_local_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nthe crl").unwrap();
            String::from_utf8(req).unwrap()
        });
        let body = http_get(
            &format!("http://127.0.0.1:{port}/ca.crl"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(body, b"the crl");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /ca.crl HTTP/1.0\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        // A server that never answers costs the timeout, not more.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = Instant::now();
        let e = http_get(
            &format!("http://127.0.0.1:{port}/x"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.contains("timed out") || e.contains("Resource"), "{e}");
        drop(l);
    }
}
