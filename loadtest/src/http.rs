//! A keep-alive HTTP/1.1 client on hyper's connection API: one connection per
//! client, requests one after another on it (as a browser tab or app would).

use crate::endpoint::Endpoint;
use crate::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

pub struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    endpoint: Endpoint,
}

impl HttpClient {
    pub async fn connect(endpoint: &Endpoint) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(endpoint.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(HttpClient {
            sender,
            endpoint: endpoint.clone(),
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.endpoint.authority)
            .header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// POSTs JSON and parses the JSON answer; non-2xx is an error.
    pub async fn post_json(
        &mut self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let (status, bytes) = self
            .request(Method::POST, path, token, Some(serde_json::to_vec(body)?))
            .await?;
        if !status.is_success() {
            return Err(
                format!("POST {path}: {status} {}", String::from_utf8_lossy(&bytes)).into(),
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}
