//! The `TRUSTED_PROXIES` setting, and who the client is behind those proxies. It names the addresses
//! and networks whose `X-Forwarded-For` is believed (none by default). The only
//! user of `ipnet`.
//!
//! Each proxy appends the address it was reached from, so the header is read
//! from the right: starting at the TCP peer, while the address in hand is a
//! trusted proxy, the next one to the left is taken. The first address that is
//! not a trusted proxy is the client. Entries a client wrote itself sit to the
//! left of the first trusted hop's and are never reached, so they cannot be
//! used to pick a rate-limit bucket.

use hyper::header::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.5`, `::1`) and networks (`172.16.0.0/12`);
    /// the error names the entry that is neither.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let networks = entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an IP address or a CIDR network"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// Whether connections from `addr` are a trusted proxy's.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.networks.iter().any(|net| net.contains(&addr))
    }

    /// The client's address: the TCP peer, or behind trusted proxies the
    /// nearest address in `X-Forwarded-For` that is not one of them.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if self.networks.is_empty() {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.rsplit(','));
        for hop in hops {
            if !self.trusts(client) {
                break;
            }
            match hop.trim().parse::<IpAddr>() {
                Ok(addr) => client = canonical(addr),
                // A hop no proxy would write: stop at the last address known.
                Err(_) => break,
            }
        }
        client
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn with_no_trusted_proxy_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.0.0.2"), &headers(&["1.2.3.4"])),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.168.1.7"]);
        let peer = ip("10.0.0.2");
        assert_eq!(trusted.client(peer, &headers(&["1.2.3.4"])), ip("1.2.3.4"));
        assert_eq!(
            trusted.client(peer, &headers(&["6.6.6.6, 1.2.3.4, 192.168.1.7"])),
            ip("1.2.3.4"),
            "a spoofed entry left of the real client is never reached"
        );
        assert_eq!(
            trusted.client(peer, &headers(&["6.6.6.6", "1.2.3.4"])),
            ip("1.2.3.4"),
            "repeated headers read as one list"
        );
        assert_eq!(trusted.client(peer, &HeaderMap::new()), peer, "no header");
        assert_eq!(trusted.client(peer, &headers(&["junk"])), peer);
        assert_eq!(
            trusted.client(ip("5.5.5.5"), &headers(&["1.2.3.4"])),
            ip("5.5.5.5"),
            "an untrusted peer's header is not believed"
        );
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.2"), &headers(&["1.2.3.4"])),
            ip("1.2.3.4"),
            "an IPv4 peer seen through an IPv6 socket"
        );
    }

    #[test]
    fn entries_that_are_not_addresses_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nginx".into()]).is_err());
        assert!(TrustedProxies::parse(&["::1".into(), "fd00::/8".into()]).is_ok());
    }
}
