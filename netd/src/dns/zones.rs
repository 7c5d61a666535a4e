//! The zones netd is the authority for, where nothing is forwarded.
//!
//! A name there that no container or service has is answered NXDOMAIN
//! here, so the upstream resolvers (often a provider's or a public one)
//! never learn container names or addresses: reverse lookups of peers'
//! addresses are what servers and loggers do all day, and a name a
//! container was removed under keeps being asked for.
//!
//! - The reverse zones of every netd subnet (any network's, default bridge,
//!   internal and overlay ones included, whether or not the asker is on
//!   it): routes to those addresses lead to netd's bridges on this host,
//!   so nobody upstream can know better.
//! - `NETWORK` for each network the asker is on, where `NAME.NETWORK`
//!   names live. Only the asker's own: another network's name may be a
//!   real domain (a network called `dev`), and shadowing it for every
//!   container would break them all; the asker's own networks shadow it
//!   only for the asker, which already gets `NAME.NETWORK` names there.
//!
//! Names are compared lowercase, without the root's trailing dot.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The `in-addr.arpa` suffix reverse names end in.
const ARPA: &str = "in-addr.arpa";

/// A name under `in-addr.arpa`, read from the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reverse {
    /// The octets it spells, as a prefix: `0.188.10.in-addr.arpa` is
    /// 10.188.0.0/24, `in-addr.arpa` itself 0.0.0.0/0.
    pub prefix: Ipv4Net,
    /// Labels left of the octets (a fifth label, or one that is not an
    /// octet): a name no address has.
    pub deeper: bool,
}

impl Reverse {
    /// `None` when `name` is not under `in-addr.arpa`.
    pub fn parse(name: &str) -> Option<Reverse> {
        let rest = if name == ARPA {
            ""
        } else {
            name.strip_suffix(ARPA)?.strip_suffix('.')?
        };
        let mut octets = [0u8; 4];
        let mut len = 0;
        let mut deeper = false;
        for label in rest.rsplit('.').filter(|l| !l.is_empty()) {
            match octet(label) {
                Some(o) if len < octets.len() => {
                    octets[len] = o;
                    len += 1;
                }
                _ => {
                    deeper = true;
                    break;
                }
            }
        }
        let bits = u8::try_from(len * 8).ok()?;
        let prefix = Ipv4Net::new(Ipv4Addr::from(octets), bits).ok()?;
        Some(Reverse { prefix, deeper })
    }

    /// The address, when the name is exactly one address's PTR name.
    pub fn addr(&self) -> Option<Ipv4Addr> {
        (self.prefix.prefix_len() == 32 && !self.deeper).then(|| self.prefix.addr())
    }

    /// Whether the name is in the reverse zone of one of `subnets`.
    pub fn within_any(&self, subnets: &[Ipv4Net]) -> bool {
        subnets.iter().any(|s| s.contains(&self.prefix))
    }
}

/// An octet as reverse names spell it: decimal, no sign, no leading zero.
fn octet(label: &str) -> Option<u8> {
    let canonical =
        label.bytes().all(|b| b.is_ascii_digit()) && (label.len() == 1 || !label.starts_with('0'));
    if !canonical {
        return None;
    }
    label.parse().ok()
}

/// Whether `name` is `zone` itself or a name under it.
pub fn within(name: &str, zone: &str) -> bool {
    name.strip_suffix(zone)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn reverse_names_are_read_from_the_right() {
        let r = Reverse::parse("7.0.188.10.in-addr.arpa").unwrap();
        assert_eq!(r.addr(), Some(Ipv4Addr::new(10, 188, 0, 7)));
        let r = Reverse::parse("0.188.10.in-addr.arpa").unwrap();
        assert_eq!(
            (r.prefix, r.deeper, r.addr()),
            (net("10.188.0.0/24"), false, None)
        );
        let r = Reverse::parse("in-addr.arpa").unwrap();
        assert_eq!(r.prefix, net("0.0.0.0/0"));
        // Longer than an address, or not octets: deeper than any address.
        for name in [
            "x.7.0.188.10.in-addr.arpa",
            "1.7.0.188.10.in-addr.arpa",
            "_tcp.0.188.10.in-addr.arpa",
            "07.0.188.10.in-addr.arpa",
            "256.0.188.10.in-addr.arpa",
            "+7.0.188.10.in-addr.arpa",
        ] {
            let r = Reverse::parse(name).unwrap();
            assert!(r.deeper && r.addr().is_none(), "{name}: {r:?}");
        }
        assert_eq!(
            Reverse::parse("x.7.0.188.10.in-addr.arpa").unwrap().prefix,
            net("10.188.0.7/32")
        );
        assert_eq!(
            Reverse::parse("_tcp.0.188.10.in-addr.arpa").unwrap().prefix,
            net("10.188.0.0/24")
        );
        for name in ["example.com", "xin-addr.arpa", "1.ip6.arpa", "arpa"] {
            assert_eq!(Reverse::parse(name), None, "{name}");
        }
    }

    #[test]
    fn reverse_zones_of_subnets() {
        let subnets = [net("10.188.0.0/24"), net("172.17.0.0/16")];
        let ours = |name: &str| Reverse::parse(name).unwrap().within_any(&subnets);
        assert!(ours("77.0.188.10.in-addr.arpa"));
        assert!(ours("x.77.0.188.10.in-addr.arpa"));
        assert!(ours("0.188.10.in-addr.arpa"), "the subnet's own zone");
        assert!(ours("5.17.172.in-addr.arpa"), "inside a /16");
        assert!(!ours("188.10.in-addr.arpa"), "wider than the subnet");
        assert!(!ours("10.in-addr.arpa"));
        assert!(!ours("in-addr.arpa"));
        assert!(!ours("7.100.51.198.in-addr.arpa"));
        // Not on an octet boundary.
        let odd = [net("10.188.0.0/23")];
        let ours = |name: &str| Reverse::parse(name).unwrap().within_any(&odd);
        assert!(ours("1.188.10.in-addr.arpa") && ours("9.1.188.10.in-addr.arpa"));
        assert!(!ours("2.188.10.in-addr.arpa"));
    }

    #[test]
    fn names_within_a_zone() {
        assert!(within("n1", "n1"));
        assert!(within("web.n1", "n1"));
        assert!(within("a.b.my.net", "my.net"));
        assert!(!within("xn1", "n1"));
        assert!(!within("n1.example", "n1"));
        assert!(!within("web.n2", "n1"));
    }
}
