//! `in_cidr`: whether an IP address is inside a CIDR range.

use std::net::{IpAddr, Ipv4Addr};

use liquid_core::{Result, Value, ValueView};

use super::{Kind, fail, input_text, kind, type_label};

/// A network: its address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// `10.0.0.0/8`, `2001:db8::/32`, `10.0.0.0/255.0.0.0` (as Ruby's `IPAddr`
/// accepts), or a bare address (a single host).
fn parse_net(text: &str) -> Option<Net> {
    let text = text.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a.trim(), Some(p.trim())),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) => n,
            Err(_) => match (addr, p.parse::<Ipv4Addr>()) {
                (IpAddr::V4(_), Ok(mask)) => mask_prefix(mask)?,
                _ => return None,
            },
        },
    };
    (prefix <= max).then_some(Net { addr, prefix })
}

/// `255.255.0.0` → 16; a mask with holes is not a prefix.
fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn contains(net: Net, ip: IpAddr) -> bool {
    match (canonical(net.addr), canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let prefix = if net.addr.is_ipv6() {
                // an IPv4-mapped network: its prefix counts the 96 mapping bits
                net.prefix.saturating_sub(96)
            } else {
                net.prefix
            };
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if net.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(net.prefix))
            };
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}

/// `in_cidr: range`: `true` when the input address is inside the range (or
/// one of the ranges, given a list). Input that is not an IP address (a
/// hostname, nil, empty) is simply not inside; a range that does not parse is
/// an error, since it is the story's own mistake.
pub(super) fn in_cidr(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    const NAME: &str = "in_cidr";
    let ranges: Vec<String> = match args.first().map(|a| (a, kind(a))) {
        None | Some((_, Kind::Nil)) => return Err(fail(NAME, "the CIDR range is nil")),
        Some((_, Kind::Scalar(s))) => vec![s.into_cow_str().into_owned()],
        Some((_, Kind::Array(a))) => a
            .values()
            .map(|v| match kind(v) {
                Kind::Scalar(s) => Ok(s.into_cow_str().into_owned()),
                _ => Err(fail(NAME, format!("each range must be text, got {}", type_label(v)))),
            })
            .collect::<Result<Vec<_>>>()?,
        Some((a, Kind::Object(_))) => {
            return Err(fail(
                NAME,
                format!("the range must be text or a list, got {}", type_label(a)),
            ));
        }
    };
    let nets = ranges
        .iter()
        .map(|r| parse_net(r).ok_or_else(|| fail(NAME, format!("`{r}` is not a CIDR range"))))
        .collect::<Result<Vec<_>>>()?;
    let ip = input_text(NAME, input)?.and_then(|t| t.trim().parse::<IpAddr>().ok());
    let inside = ip.is_some_and(|ip| nets.iter().any(|net| contains(*net, ip)));
    Ok(Value::scalar(inside))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, table};
    use super::*;

    #[test]
    fn ipv4_and_ipv6() {
        table(
            json!({"ip": "10.1.2.3", "ranges": ["192.168.0.0/16", "10.0.0.0/8"], "none": [], "n": null}),
            &[
                ("{{ ip | in_cidr: '10.0.0.0/8' }}", "true"),
                ("{{ '11.0.0.1' | in_cidr: '10.0.0.0/8' }}", "false"),
                ("{{ '192.168.1.255' | in_cidr: '192.168.1.0/24' }}", "true"),
                ("{{ '192.168.2.0' | in_cidr: '192.168.1.0/24' }}", "false"),
                ("{{ '10.0.0.5' | in_cidr: '10.0.0.5' }}", "true"),
                ("{{ '10.0.0.5' | in_cidr: '10.0.0.5/32' }}", "true"),
                ("{{ '10.0.0.6' | in_cidr: '10.0.0.5/32' }}", "false"),
                ("{{ '8.8.8.8' | in_cidr: '0.0.0.0/0' }}", "true"),
                // the network's host bits do not matter
                ("{{ '10.9.9.9' | in_cidr: '10.1.2.3/8' }}", "true"),
                ("{{ '172.16.5.4' | in_cidr: '172.16.0.0/255.240.0.0' }}", "true"),
                ("{{ '2001:db8::1' | in_cidr: '2001:db8::/32' }}", "true"),
                ("{{ '2001:db9::1' | in_cidr: '2001:db8::/32' }}", "false"),
                ("{{ '::1' | in_cidr: '::/0' }}", "true"),
                ("{{ '::ffff:10.0.0.1' | in_cidr: '10.0.0.0/8' }}", "true"),
                ("{{ '10.0.0.1' | in_cidr: '::ffff:10.0.0.0/104' }}", "true"),
                ("{{ '10.0.0.1' | in_cidr: '2001:db8::/32' }}", "false"),
                ("{{ ' 10.0.0.1 ' | in_cidr: '10.0.0.0/8' }}", "true"),
                ("{{ ip | in_cidr: ranges }}", "true"),
                ("{{ ip | in_cidr: none }}", "false"),
                ("{{ 'example.com' | in_cidr: '10.0.0.0/8' }}", "false"),
                ("{{ '' | in_cidr: '10.0.0.0/8' }}", "false"),
                ("{{ n | in_cidr: '10.0.0.0/8' }}", "false"),
                (
                    "{% assign inside = ip | in_cidr: '10.0.0.0/8' %}{% if inside %}yes{% endif %}",
                    "yes",
                ),
                (
                    "{% assign inside = '1.1.1.1' | in_cidr: '10.0.0.0/8' %}{% if inside %}yes{% else %}no{% endif %}",
                    "no",
                ),
            ],
        );
    }

    #[test]
    fn bad_ranges_are_errors() {
        let data = json!({"n": null, "o": {}});
        fails(
            "{{ '10.0.0.1' | in_cidr: '10.0.0.0/33' }}",
            data.clone(),
            "in_cidr: `10.0.0.0/33` is not a CIDR range",
        );
        fails(
            "{{ '10.0.0.1' | in_cidr: '10.0.0.0/255.0.255.0' }}",
            data.clone(),
            "is not a CIDR range",
        );
        fails(
            "{{ '10.0.0.1' | in_cidr: 'intranet' }}",
            data.clone(),
            "in_cidr: `intranet` is not a CIDR range",
        );
        fails(
            "{{ '10.0.0.1' | in_cidr: n }}",
            data.clone(),
            "in_cidr: the CIDR range is nil",
        );
        fails(
            "{{ '10.0.0.1' | in_cidr: o }}",
            data,
            "in_cidr: the range must be text or a list, got an object",
        );
    }

    #[test]
    fn masks() {
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
