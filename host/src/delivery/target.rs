//! Where outbound webhooks may go. A subscription's URL is chosen through the API, so
//! without a guard it could make the host call its own network (cloud metadata
//! endpoints, admin ports on loopback, the office LAN). Every address a target resolves
//! to is checked at connect time (a resolver wrapped around the system's), and literal
//! IP addresses before the request; private and loopback addresses are refused unless
//! the configuration allows them.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::config::DeliveryConfig;

/// What the configuration allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

impl From<&DeliveryConfig> for TargetPolicy {
    fn from(config: &DeliveryConfig) -> TargetPolicy {
        TargetPolicy {
            allow_loopback: config.allow_loopback,
            allow_private: config.allow_private,
        }
    }
}

/// The kind of a non-public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Private,
}

/// Whether `ip` is loopback, private (in the wide sense: anything not publicly routable)
/// or public (`None`).
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // CGNAT
    let protocol_assignments = a == 192 && b == 0 && c == 0;
    let benchmarking = a == 198 && (18..20).contains(&b);
    let reserved = a >= 240;
    if ip.is_loopback() || a == 0 {
        // 0.0.0.0 reaches the local host on Linux.
        Some(AddressClass::Loopback)
    } else if ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || shared
        || protocol_assignments
        || benchmarking
        || reserved
    {
        Some(AddressClass::Private)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_loopback() || ip.is_unspecified() {
        Some(AddressClass::Loopback)
    } else if ip.is_unique_local() || ip.is_unicast_link_local() || ip.is_multicast() {
        Some(AddressClass::Private)
    } else {
        None
    }
}

/// A target the policy refuses; the message says how to allow it.
#[derive(Debug, Clone)]
pub struct TargetRefused {
    pub host: String,
    pub ip: IpAddr,
    pub class: AddressClass,
}

impl std::fmt::Display for TargetRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, setting) = match self.class {
            AddressClass::Loopback => ("loopback", "allow-loopback"),
            AddressClass::Private => ("private", "allow-private"),
        };
        write!(
            f,
            "refused to deliver to {}: it is {}, a {kind} address; sluice only sends to public addresses unless the configuration's [delivery] section sets {setting} = true",
            self.host, self.ip
        )
    }
}

impl std::error::Error for TargetRefused {}

impl TargetPolicy {
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), TargetRefused> {
        match classify(ip) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(AddressClass::Private) if self.allow_private => Ok(()),
            Some(class) => Err(TargetRefused {
                host: host.to_string(),
                ip,
                class,
            }),
        }
    }

    /// Checks a URL whose host is a literal address (names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), TargetRefused> {
        let host = url.host_str().unwrap_or_default();
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.check(host, ip),
            Err(_) => Ok(()),
        }
    }
}

/// The system resolver, keeping only the addresses the policy allows; a name with none
/// left fails with [`TargetRefused`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: TargetPolicy,
}

/// Addresses a name resolved to that the policy allows.
type Resolved = std::vec::IntoIter<SocketAddr>;
type ResolveError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for GuardedResolver {
    type Response = Resolved;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Resolved, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| match policy.check(&host, address.ip()) {
                    Ok(()) => true,
                    Err(error) => {
                        refused.get_or_insert(error);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(refused)) => Err(Box::new(refused) as ResolveError),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// The [`TargetRefused`] somewhere in an error's chain of sources.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a TargetRefused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<TargetRefused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        let class = |text: &str| classify(text.parse().unwrap());
        assert_eq!(class("127.0.0.1"), Some(AddressClass::Loopback));
        assert_eq!(class("0.0.0.0"), Some(AddressClass::Loopback));
        assert_eq!(class("::1"), Some(AddressClass::Loopback));
        assert_eq!(class("::ffff:127.0.0.1"), Some(AddressClass::Loopback));
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert_eq!(class(private), Some(AddressClass::Private), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(class(public), None, "{public}");
        }
    }

    #[test]
    fn the_policy_allows_what_the_configuration_says() {
        let strict = TargetPolicy::default();
        let error = strict.check("localhost", "127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("allow-loopback = true"), "{error}");
        let error = strict
            .check("metadata", "169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("allow-private = true"), "{error}");
        let loopback = TargetPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(loopback.check("localhost", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("lan", "10.0.0.1".parse().unwrap()).is_err());
        let url = url::Url::parse("http://[::1]:8080/hook").unwrap();
        assert!(strict.check_url(&url).is_err());
        assert!(loopback.check_url(&url).is_ok());
    }
}
