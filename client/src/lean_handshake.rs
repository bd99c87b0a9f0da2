//! The client's half of the WebSocket opening handshake (RFC 6455, section 4)
//! over a bare TCP stream: the request written in one piece, the response head
//! read and checked with `httparse`, and any bytes behind it handed back.
//!
//! This is the handshake of the lean client the load tester opens tens of
//! thousands of sockets with. hyper's client, which [`connect`] still uses,
//! spawns a connection task per socket and builds request and response header
//! maps; on a machine the tester shares with the server, that CPU is taken
//! from the server under test.
//!
//! [`connect`]: crate::connect

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use fastwebsockets::WebSocketError;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Appended to the client's key before hashing (RFC 6455, section 1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A response head longer than this is refused.
const MAX_RESPONSE_HEAD_BYTES: usize = 8 * 1024;
/// Response headers read at most.
const MAX_RESPONSE_HEADERS: usize = 32;
/// A 101 from this server is ~130 bytes; one read usually takes it whole.
const FIRST_READ_BYTES: usize = 512;

/// Upgrades `stream` to a WebSocket at `path` (`authority` is the `Host`) and
/// returns the bytes the server sent right behind its response head.
pub(super) async fn upgrade(
    stream: &mut TcpStream,
    authority: &str,
    path: &str,
) -> Result<Bytes, WebSocketError> {
    let key = fastwebsockets::handshake::generate_key();
    stream
        .write_all(request(authority, path, &key).as_bytes())
        .await?;
    let accept = accept_value(&key);
    let mut received = BytesMut::with_capacity(FIRST_READ_BYTES);
    loop {
        if stream.read_buf(&mut received).await? == 0 {
            return Err(WebSocketError::ConnectionClosed);
        }
        if let Some(head) = response_head(&received, &accept)? {
            // A copy, so the socket does not keep this buffer for its life.
            return Ok(Bytes::copy_from_slice(&received[head..]));
        }
        if received.len() >= MAX_RESPONSE_HEAD_BYTES {
            return Err(WebSocketError::InvalidValue);
        }
    }
}

/// The upgrade request (section 4.1).
fn request(authority: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// What the server must answer in `Sec-WebSocket-Accept` for `key`.
fn accept_value(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID);
    STANDARD.encode(sha1.finalize())
}

/// The length of the response head at the start of `bytes` once it is all
/// there (`None` before), after checking that it accepts the upgrade: status
/// 101, `Upgrade: websocket`, an `upgrade` token in `Connection` and the
/// expected `Sec-WebSocket-Accept` (section 4.2.2).
fn response_head(bytes: &[u8], expected_accept: &str) -> Result<Option<usize>, WebSocketError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WebSocketError::InvalidValue),
    };
    let code = response.code.unwrap_or_default();
    if code != 101 {
        return Err(WebSocketError::InvalidStatusCode(code));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    if !header("upgrade").is_some_and(|value| value.eq_ignore_ascii_case(b"websocket")) {
        return Err(WebSocketError::InvalidUpgradeHeader);
    }
    if !header("connection").is_some_and(has_upgrade_token) {
        return Err(WebSocketError::InvalidConnectionHeader);
    }
    if header("sec-websocket-accept") != Some(expected_accept.as_bytes()) {
        return Err(WebSocketError::InvalidValue);
    }
    Ok(Some(length))
}

/// Whether a `Connection` value lists `upgrade` (any case).
fn has_upgrade_token(value: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and accept value of RFC 6455's own example (section 1.3).
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn head(status: &str, headers: &[&str]) -> String {
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head + "\r\n"
    }

    fn accepting() -> String {
        head(
            "101 Switching Protocols",
            &[
                "upgrade: websocket",
                "connection: upgrade",
                &format!("sec-websocket-accept: {ACCEPT}"),
            ],
        )
    }

    #[test]
    fn the_accept_value_is_the_rfcs() {
        assert_eq!(accept_value(KEY), ACCEPT);
    }

    #[test]
    fn the_request_asks_for_version_13_with_the_key() {
        let request = request("127.0.0.1:8000", "/ws/chats/1/?token=t", KEY);
        assert!(request.starts_with("GET /ws/chats/1/?token=t HTTP/1.1\r\n"));
        for line in [
            "Host: 127.0.0.1:8000",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Key: {KEY}"),
        ] {
            assert!(request.contains(&format!("{line}\r\n")), "{line}");
        }
        assert!(request.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_complete_accepting_head_gives_its_length_and_leaves_what_follows() {
        let head = accepting();
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(response_head(&bytes, ACCEPT).unwrap(), Some(head.len()));
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        let head = accepting();
        for cut in [1, 12, head.len() - 1] {
            assert_eq!(
                response_head(&head.as_bytes()[..cut], ACCEPT).unwrap(),
                None
            );
        }
    }

    #[test]
    fn the_connection_header_may_list_other_tokens_in_any_case() {
        let head = head(
            "101 Switching Protocols",
            &[
                "Upgrade: WebSocket",
                "Connection: keep-alive, Upgrade",
                &format!("Sec-WebSocket-Accept: {ACCEPT}"),
            ],
        );
        assert!(response_head(head.as_bytes(), ACCEPT).unwrap().is_some());
    }

    #[test]
    fn a_refusal_or_a_wrong_head_is_an_error() {
        let accept = format!("sec-websocket-accept: {ACCEPT}");
        let cases = [
            (head("401 Unauthorized", &["content-length: 0"]), "status"),
            (
                head("101 Switching Protocols", &["connection: upgrade", &accept]),
                "upgrade",
            ),
            (
                head(
                    "101 Switching Protocols",
                    &["upgrade: h2c", "connection: upgrade", &accept],
                ),
                "upgrade",
            ),
            (
                head("101 Switching Protocols", &["upgrade: websocket", &accept]),
                "connection",
            ),
            (
                head(
                    "101 Switching Protocols",
                    &[
                        "upgrade: websocket",
                        "connection: upgrade",
                        "sec-websocket-accept: x",
                    ],
                ),
                "accept",
            ),
            ("HTTP/1.1 abc\r\n\r\n".to_owned(), "malformed"),
        ];
        for (head, why) in cases {
            let error = response_head(head.as_bytes(), ACCEPT).unwrap_err();
            let expected = match why {
                "status" => matches!(error, WebSocketError::InvalidStatusCode(401)),
                "upgrade" => matches!(error, WebSocketError::InvalidUpgradeHeader),
                "connection" => matches!(error, WebSocketError::InvalidConnectionHeader),
                _ => matches!(error, WebSocketError::InvalidValue),
            };
            assert!(expected, "{why}: {error:?}");
        }
    }
}
