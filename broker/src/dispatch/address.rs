//! Which addresses the broker's outbound requests may reach. An RP registers its own URL, so
//! without a rule anyone who can register a client could make the broker POST into the
//! province's internal network (SSRF). In production no special-purpose address is reachable —
//! loopback, private (RFC 1918, ULA), link-local, carrier-grade NAT, unspecified, multicast,
//! documentation, benchmarking and reserved ranges, and IPv4-mapped/embedded forms of them —
//! except inside the networks an operator allows (`dispatch.allow_networks`, the province's
//! intranet). Development also allows loopback, where the demo app and the tests' RPs listen.
//!
//! The policy judges addresses, never names: `outbound.rs` resolves each name once, keeps the
//! permitted addresses, and connects to those, so a name that resolves elsewhere the second time
//! (DNS rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context;
use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allow_loopback: bool,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// `allow_loopback`: development; `allowed`: CIDRs such as `10.20.0.0/16`.
    pub fn new(allow_loopback: bool, allowed: &[String]) -> anyhow::Result<Self> {
        let allowed = allowed
            .iter()
            .map(|cidr| {
                cidr.trim()
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .with_context(|| {
                        format!("dispatch.allow_networks: {cidr:?} is not a CIDR like 10.20.0.0/16")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            allow_loopback,
            allowed,
        })
    }

    /// Whether plain http to a loopback host is allowed (development only).
    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if self.allow_loopback && ip.is_loopback() {
            return true;
        }
        is_global(ip)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the IPv4 address it carries: the socket
/// reaches that host.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// IANA IPv4 special-purpose registry, plus multicast and the reserved 240/4.
fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0                                  // 0/8 "this network", unspecified
        || a == 10                                        // RFC 1918
        || a == 127                                       // loopback
        || (a == 100 && (64..128).contains(&b))           // 100.64/10 carrier-grade NAT
        || (a == 169 && b == 254)                         // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b))            // RFC 1918
        || (a == 192 && b == 0 && c == 0)                 // 192.0.0/24 IETF assignments
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // RFC 1918
        || (a == 198 && (b == 18 || b == 19))             // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !special
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // NAT64 (RFC 6052 well-known prefix 64:ff9b::/96): the IPv4 address it translates to.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_global_v4(Ipv4Addr::new(a, b, c, d));
    }
    let special = s[0..6] == [0, 0, 0, 0, 0, 0]           // ::/96: ::, ::1, IPv4-compatible
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)  // 64:ff9b:1::/48 local NAT64
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])        // 100::/64 discard
        || (s[0] == 0x2001 && s[1] < 0x200)               // 2001::/23 IETF (Teredo, ORCHID…)
        || (s[0] == 0x2001 && s[1] == 0xdb8)              // documentation
        || s[0] == 0x2002                                 // 6to4: embeds any IPv4 address
        || (s[0] & 0xfff0) == 0x3ff0                      // 3fff::/20 documentation
        || (s[0] & 0xfe00) == 0xfc00                      // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80                      // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0                      // fec0::/10 old site-local
        || (s[0] & 0xff00) == 0xff00; // ff00::/8 multicast
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn production() -> AddressPolicy {
        AddressPolicy::new(false, &[]).unwrap()
    }

    const REFUSED_IN_PRODUCTION: &[&str] = &[
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::ffff:192.168.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b:1::1",
        "100::1",
        "2001::1",
        "2001:db8::1",
        "2002:a00:1::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
    ];

    const PUBLIC: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.0.1.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "203.0.114.1",
        "223.255.255.255",
        "14.225.0.1",
        "2404:6800:4005::200e",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2001:200::1",
    ];

    #[test]
    fn production_refuses_every_special_range() {
        let policy = production();
        for a in REFUSED_IN_PRODUCTION {
            assert!(!policy.permits(ip(a)), "{a} must be refused");
        }
    }

    #[test]
    fn production_allows_public_addresses() {
        let policy = production();
        for a in PUBLIC {
            assert!(policy.permits(ip(a)), "{a} must be allowed");
        }
    }

    #[test]
    fn development_allows_loopback_only() {
        let policy = AddressPolicy::new(true, &[]).unwrap();
        for a in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(policy.permits(ip(a)), "{a}");
        }
        for a in [
            "10.0.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "fd00::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(!policy.permits(ip(a)), "{a} is not loopback");
        }
        assert!(policy.allows_loopback());
        assert!(!production().allows_loopback());
    }

    #[test]
    fn allowed_networks_open_exactly_their_range() {
        let policy =
            AddressPolicy::new(false, &["10.20.0.0/16".into(), "fd00:abcd::/32".into()]).unwrap();
        assert!(policy.permits(ip("10.20.0.1")));
        assert!(policy.permits(ip("10.20.255.254")));
        assert!(policy.permits(ip("::ffff:10.20.3.4")), "mapped form too");
        assert!(policy.permits(ip("fd00:abcd::5")));
        assert!(!policy.permits(ip("10.21.0.1")));
        assert!(!policy.permits(ip("10.19.255.255")));
        assert!(!policy.permits(ip("fd00:abce::5")));
        assert!(!policy.permits(ip("127.0.0.1")), "loopback stays closed");
        assert!(policy.permits(ip("8.8.8.8")));
        // A host address with a prefix is its network.
        let host_bits = AddressPolicy::new(false, &["10.20.1.7/16".into()]).unwrap();
        assert!(host_bits.permits(ip("10.20.200.1")));
    }

    #[test]
    fn malformed_networks_stop_the_start() {
        for bad in [
            "10.20.0.0",
            "10.20.0.0/33",
            "intranet",
            "",
            "10.20.0.0/16/8",
        ] {
            assert!(AddressPolicy::new(false, &[bad.into()]).is_err(), "{bad:?}");
        }
    }
}
