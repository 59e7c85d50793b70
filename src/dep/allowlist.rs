//! Which upstream hosts depd may call with a name's credentials: the
//! `apple.allowed_hosts` list of the configuration file.
//!
//! A base URL can be set through the API (`PUT /v1/config/{name}`), and the
//! proxy then sends the name's session token there and streams the answer
//! back; `/session` sends signed OAuth requests there. Without a list,
//! anyone holding the API key could make depd read internal services or a
//! cloud metadata address. The list is checked three times:
//!
//! - when a base URL is set ([`Allowlist::check_url`] and
//!   [`Allowlist::check_resolved`]), so a bad URL is refused with a 400;
//! - before every request to Apple ([`Allowlist::check_url`]), so a stored
//!   URL that a reload took off the list stops being called;
//! - when connecting: the HTTP client resolves names through
//!   [`CheckedResolver`], which refuses a host whose addresses are internal
//!   (loopback, private, link-local, ...) unless an address entry allows
//!   them. A name that resolves to 169.254.169.254 is refused even if the
//!   name itself is listed.
//!
//! Entries are host names (`mdmenrollment.apple.com`), wildcard suffixes
//! (`*.example.com`: any subdomain, not the bare name), IP addresses
//! (`127.0.0.1`, `::1`) or networks (`10.1.0.0/16`). Plain `http` is for
//! loopback hosts only (`localhost` or a loopback address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Every Apple host depd calls, and loopback for the demo and tests.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &[
    // DEP (Automated Device Enrollment).
    "mdmenrollment.apple.com",
    // APNs, production and sandbox (the MDM service's push).
    "api.push.apple.com",
    "api.sandbox.push.apple.com",
    // Apple Business and School Manager API, and its token host.
    "api-business.apple.com",
    "api-school.apple.com",
    "account.apple.com",
    // Loopback: depsim, the demo, a local test double.
    "localhost",
    "127.0.0.0/8",
    "::1",
];

/// Why a URL or an address is refused. The text names the host and the
/// rule, never a path or query (which may hold credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Invalid(String),
    #[error("host {0:?} is not in apple.allowed_hosts")]
    Host(String),
    #[error("plain http is allowed only for loopback hosts, not {0:?}; use https")]
    PlainHttp(String),
    #[error(
        "host {host:?} resolves to {addr}, an internal address that apple.allowed_hosts does not list"
    )]
    Address { host: String, addr: IpAddr },
    #[error("host {0:?} does not resolve: {1}")]
    Unresolved(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Name(String),
    Suffix(String),
    Net(IpAddr, u8),
}

/// The parsed `apple.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Default for Allowlist {
    fn default() -> Self {
        let entries: Vec<String> = DEFAULT_ALLOWED_HOSTS
            .iter()
            .map(|s| s.to_string())
            .collect();
        // The defaults are constants that the tests parse.
        Allowlist::parse(&entries).unwrap_or(Allowlist { entries: vec![] })
    }
}

impl Allowlist {
    /// Parses the configuration's entries; the error names the bad one.
    pub fn parse(raw: &[String]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(raw.len());
        for item in raw {
            let item = item.trim();
            let bad =
                |why: &str| format!("{item:?} is not a host, *.suffix, address or network: {why}");
            if item.is_empty() {
                return Err(bad("empty"));
            }
            if let Some((addr, bits)) = item.split_once('/') {
                let addr: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
                let bits: u8 = bits.parse().map_err(|_| bad("bad prefix length"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if bits > max {
                    return Err(bad("prefix length too long"));
                }
                entries.push(Entry::Net(canonical(addr), bits));
            } else if let Ok(addr) = item.trim_matches(['[', ']']).parse::<IpAddr>() {
                let addr = canonical(addr);
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                entries.push(Entry::Net(addr, bits));
            } else if let Some(suffix) = item.strip_prefix("*.") {
                check_name(suffix).map_err(|w| bad(&w))?;
                entries.push(Entry::Suffix(suffix.to_ascii_lowercase()));
            } else {
                check_name(item).map_err(|w| bad(&w))?;
                entries.push(Entry::Name(item.to_ascii_lowercase()));
            }
        }
        Ok(Allowlist { entries })
    }

    /// Whether the URL's scheme and host pass: the host is listed (by
    /// name, or an IP literal inside a listed network), and plain `http`
    /// only for loopback. Addresses of names are checked on connection.
    pub fn check_url(&self, url: &str) -> Result<(), Refusal> {
        let (scheme, host) = scheme_and_host(url)?;
        let literal = host.parse::<IpAddr>().ok().map(canonical);
        let listed = match literal {
            Some(ip) => self.covers(ip),
            None => self.lists_name(&host),
        };
        if !listed {
            return Err(Refusal::Host(host));
        }
        if scheme == "http" {
            let loopback = match literal {
                Some(ip) => ip.is_loopback(),
                None => is_localhost(&host),
            };
            if !loopback {
                return Err(Refusal::PlainHttp(host));
            }
        }
        if let Some(ip) = literal {
            self.check_addr(&host, ip)?;
        }
        Ok(())
    }

    /// [`check_url`](Self::check_url), then resolves a host name and checks
    /// every address, as a connection would. A name that does not resolve
    /// now passes (it is listed; connections check it again).
    pub async fn check_resolved(&self, url: &str) -> Result<(), Refusal> {
        self.check_url(url)?;
        let (scheme, host) = scheme_and_host(url)?;
        if host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        let port = if scheme == "http" { 80 } else { 443 };
        match resolve(&host, port).await {
            Ok(addrs) => self.check_addrs(&host, scheme == "http", &addrs),
            // DNS may be down for a moment; the name is listed, and every
            // connection checks the addresses again.
            Err(Refusal::Unresolved(..)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Resolves `host` and checks every address, as [`CheckedResolver`]
    /// does for awc: for clients that open their own connections (APNs).
    pub async fn resolve_checked(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let host_lc = host.trim_end_matches('.').to_ascii_lowercase();
        let literal = host_lc.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let addrs = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => resolve(&host_lc, port).await?,
        };
        self.check_addrs(&host_lc, false, &addrs)?;
        Ok(addrs)
    }

    /// An address passes if it is a public one, or one a network entry
    /// lists. Internal addresses (loopback, private, link-local, ...) must
    /// be listed explicitly.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), Refusal> {
        let addr = canonical(addr);
        if is_internal(addr) && !self.covers(addr) {
            return Err(Refusal::Address {
                host: host.to_owned(),
                addr,
            });
        }
        Ok(())
    }

    fn check_addrs(&self, host: &str, plain: bool, addrs: &[SocketAddr]) -> Result<(), Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::Unresolved(host.to_owned(), "no addresses".into()));
        }
        for a in addrs {
            self.check_addr(host, a.ip())?;
            if plain && !canonical(a.ip()).is_loopback() {
                return Err(Refusal::PlainHttp(host.to_owned()));
            }
        }
        Ok(())
    }

    fn lists_name(&self, host: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Name(n) => n == host,
            Entry::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            Entry::Net(..) => false,
        })
    }

    fn covers(&self, addr: IpAddr) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Net(net, bits) => in_net(addr, *net, *bits),
            _ => false,
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err("host names are letters, digits, '-' and '.'".into())
    }
}

fn is_localhost(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// The URL's scheme and lower-cased host (IPv6 without brackets).
fn scheme_and_host(url: &str) -> Result<(String, String), Refusal> {
    let uri: actix_web::http::Uri = url
        .parse()
        .map_err(|_| Refusal::Invalid("not a URL".into()))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => {
            return Err(Refusal::Invalid(
                "the URL must start with http:// or https://".into(),
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Refusal::Invalid("the URL has no host".into()))?;
    let host = host
        .trim_matches(['[', ']'])
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Ok((scheme.to_owned(), host))
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|e| Refusal::Unresolved(host.to_owned(), e.to_string()))
}

/// IPv4-mapped IPv6 addresses are checked as the IPv4 address they are.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Addresses that are not on the public internet: what an attacker would
/// aim a server-side request at.
fn is_internal(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10, shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xFE) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xFE00) == 0xFC00 // fc00::/7, unique local
                || (s[0] & 0xFFC0) == 0xFE80 // fe80::/10, link-local
                || (s[0] & 0xFFC0) == 0xFEC0 // fec0::/10, site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64, may reach IPv4 internals
                || a == Ipv4Addr::UNSPECIFIED.to_ipv6_compatible()
        }
    }
}

/// awc's resolver, checking every address a host name resolves to against
/// the allowlist before a connection is made to any of them. (IP literals
/// never reach a resolver; [`Allowlist::check_url`] checks them before the
/// request is sent.)
#[derive(Clone)]
pub struct CheckedResolver {
    pub allow: Arc<Allowlist>,
}

/// A connection refused by [`CheckedResolver`]; the HTTP client's error
/// carries it so the caller can tell a refusal from a network failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub Refusal);

impl actix_tls::connect::Resolve for CheckedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>>
    {
        Box::pin(async move {
            let host_lc = host.trim_end_matches('.').to_ascii_lowercase();
            let addrs = resolve(&host_lc, port)
                .await
                .map_err(|r| Box::new(Refused(r)) as Box<dyn std::error::Error>)?;
            // The scheme is not known here; plain http was checked on the
            // URL (loopback names only) and is checked again by address in
            // `check_resolved` when the URL is set.
            self.allow
                .check_addrs(&host_lc, false, &addrs)
                .map_err(|r| Box::new(Refused(r)) as Box<dyn std::error::Error>)?;
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid list")
    }

    #[test]
    fn the_defaults_parse_and_allow_apple_and_loopback() {
        let d = Allowlist::default();
        assert_eq!(d.entries.len(), DEFAULT_ALLOWED_HOSTS.len());
        for ok in [
            "https://mdmenrollment.apple.com",
            "https://MDMENROLLMENT.apple.com./x",
            "http://127.0.0.1:9000/prefix",
            "http://[::1]:9000",
            "http://localhost:1",
            "https://api-business.apple.com/v1",
        ] {
            assert_eq!(d.check_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unlisted_internal_and_plain_http_are_refused() {
        let d = Allowlist::default();
        for (url, want) in [
            (
                "http://169.254.169.254/latest",
                "not in apple.allowed_hosts",
            ),
            ("https://10.0.0.1", "not in apple.allowed_hosts"),
            ("https://example.com", "not in apple.allowed_hosts"),
            ("https://evil.mdmenrollment.apple.com.example.com", "not in"),
            ("http://mdmenrollment.apple.com", "plain http"),
            ("ftp://mdmenrollment.apple.com", "http:// or https://"),
            (
                "http://[::ffff:169.254.169.254]",
                "not in apple.allowed_hosts",
            ),
        ] {
            let err = d.check_url(url).expect_err(url).to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
        // Listing an internal network by name is not enough: the address
        // must be listed.
        let named = list(&["metadata.internal", "10.0.0.0/8"]);
        assert!(
            named
                .check_addr(
                    "metadata.internal",
                    "169.254.169.254".parse().expect("address")
                )
                .is_err()
        );
        assert!(
            named
                .check_addr("x", "10.2.3.4".parse().expect("address"))
                .is_ok()
        );
        assert!(
            named
                .check_addr("x", "17.253.144.10".parse().expect("address"))
                .is_ok()
        );
        assert!(
            named
                .check_addr("x", "::ffff:192.168.1.1".parse().expect("address"))
                .is_err()
        );
        assert!(
            named
                .check_addr("x", "fe80::1".parse().expect("address"))
                .is_err()
        );
        assert!(
            named
                .check_addr("x", "fd00::1".parse().expect("address"))
                .is_err()
        );
    }

    #[test]
    fn suffixes_match_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(l.check_url("https://a.example.com").is_ok());
        assert!(l.check_url("https://a.b.example.com").is_ok());
        assert!(l.check_url("https://example.com").is_err());
        assert!(l.check_url("https://badexample.com").is_err());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["", "10.0.0.0/33", "a b", "http://x", "*.", "1.2.3.4/x"] {
            let err = Allowlist::parse(&[bad.to_string()]).expect_err(bad);
            assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
        }
    }

    #[actix_web::test]
    async fn a_name_resolving_to_loopback_needs_loopback_listed() {
        let names_only = list(&["localhost"]);
        let err = names_only
            .check_resolved("http://localhost:9/x")
            .await
            .expect_err("loopback address not listed");
        assert!(matches!(err, Refusal::Address { .. }), "{err}");
        assert!(
            Allowlist::default()
                .check_resolved("http://localhost:9/x")
                .await
                .is_ok()
        );
    }
}
