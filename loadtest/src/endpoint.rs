//! Where the server is: `http://host:port` parsed once, resolved to an address.

use crate::Result;
use std::net::SocketAddr;

/// A server base URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, for the `Host` header.
    pub authority: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    pub async fn resolve(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .ok_or_else(|| format!("{url}: only http:// (and ws://) URLs are supported"))?;
        let authority = rest.trim_end_matches('/').to_owned();
        let with_port = if authority.contains(':') {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        Ok(Endpoint { authority, addr })
    }

    /// Every endpoint of a comma-separated list.
    pub async fn resolve_all(urls: &str) -> Result<Vec<Self>> {
        let mut endpoints = Vec::new();
        for url in urls.split(',').filter(|u| !u.trim().is_empty()) {
            endpoints.push(Self::resolve(url.trim()).await?);
        }
        if endpoints.is_empty() {
            return Err("no --url given".into());
        }
        Ok(endpoints)
    }
}
