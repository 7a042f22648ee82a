//! Who may connect from where, and whether over TLS: the `[[hba]]` rules of the configuration
//! file, in the spirit of PostgreSQL's `pg_hba.conf`.
//!
//! ```toml
//! [[hba]]
//! type = "hostssl"        # host (TLS or not), hostssl (TLS only), hostnossl (plaintext only)
//! user = "alice"          # a role name, or "all" (the default)
//! address = "10.0.0.0/8"  # an address, a CIDR range, or "all" (the default)
//! method = "reject"       # optional: refuse what the rule matches
//! ```
//!
//! The first rule whose type, user and address match the connection decides: it is let on to
//! authentication (the server's `auth` method), or refused when the rule says `reject`. When
//! rules exist and none matches, the connection is refused, as PostgreSQL refuses a connection
//! no `pg_hba.conf` line matches. Without rules, everyone may try to log in (and `tls.required`
//! alone decides about TLS).

use std::net::IpAddr;

use serde::Deserialize;

use crate::error::SemsqlError;

/// Which connections a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    Host,
    Hostssl,
    Hostnossl,
}

/// One `[[hba]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaRule {
    #[serde(rename = "type")]
    pub connection: ConnectionType,
    #[serde(default = "all")]
    pub user: String,
    #[serde(default = "all")]
    pub address: String,
    /// `"reject"` refuses the connections the rule matches; absent lets them authenticate.
    pub method: Option<String>,
}

fn all() -> String {
    "all".to_owned()
}

/// A checked address range.
#[derive(Debug, Clone, Copy)]
enum Range {
    All,
    Net { base: u128, prefix: u32, v4: bool },
}

/// The checked rules.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    rules: Vec<(HbaRule, Range, bool)>,
}

impl HostRules {
    /// Checks the file's rules (a bad address or method stops the server at start).
    pub fn new(rules: &[HbaRule]) -> Result<Self, SemsqlError> {
        let mut checked = Vec::new();
        for (at, rule) in rules.iter().enumerate() {
            let range = parse_range(&rule.address).ok_or_else(|| {
                SemsqlError::Config(format!(
                    "hba rule {}: address {:?} is not an IP address, a CIDR range or \"all\"",
                    at + 1,
                    rule.address
                ))
            })?;
            let reject = match rule.method.as_deref() {
                None => false,
                Some("reject") => true,
                Some(other) => {
                    return Err(SemsqlError::Config(format!(
                        "hba rule {}: method {other:?} is not known (only \"reject\"; \
                         leave it out to use the server's auth method)",
                        at + 1
                    )))
                }
            };
            checked.push((rule.clone(), range, reject));
        }
        Ok(HostRules { rules: checked })
    }

    /// Whether `user` may go on to authenticate from `address` (`tls`: over TLS); the FATAL
    /// message's text when not.
    pub fn admit(
        &self,
        user: &str,
        database: &str,
        address: IpAddr,
        tls: bool,
    ) -> Result<(), String> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let encryption = if tls {
            "SSL encryption"
        } else {
            "no encryption"
        };
        let matched = self.rules.iter().find(|(rule, range, _)| {
            let kind = match rule.connection {
                ConnectionType::Host => true,
                ConnectionType::Hostssl => tls,
                ConnectionType::Hostnossl => !tls,
            };
            kind && (rule.user == "all" || rule.user == user) && range_holds(*range, address)
        });
        match matched {
            Some((_, _, false)) => Ok(()),
            Some((_, _, true)) => Err(format!(
                "the [[hba]] rules reject connection for host \"{address}\", user \"{user}\", \
                 database \"{database}\", {encryption}"
            )),
            None => Err(format!(
                "no [[hba]] rule for host \"{address}\", user \"{user}\", database \
                 \"{database}\", {encryption}"
            )),
        }
    }
}

/// `"all"`, `"10.0.0.0/8"`, `"::1/128"` or a bare address (its own /32 or /128).
fn parse_range(text: &str) -> Option<Range> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Some(Range::All);
    }
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix.parse::<u32>().ok()?)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let (bits, v4) = match address {
        IpAddr::V4(_) => (32, true),
        IpAddr::V6(_) => (128, false),
    };
    let prefix = prefix.unwrap_or(bits);
    (prefix <= bits).then(|| Range::Net {
        base: as_bits(address),
        prefix,
        v4,
    })
}

/// An address's bits, IPv4 in the low 32 (IPv4-mapped IPv6 addresses count as IPv4).
fn as_bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u32::from(v4) as u128,
            None => u128::from(v6),
        },
    }
}

fn range_holds(range: Range, address: IpAddr) -> bool {
    match range {
        Range::All => true,
        Range::Net { base, prefix, v4 } => {
            let address_v4 = match address {
                IpAddr::V4(_) => true,
                IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
            };
            if address_v4 != v4 {
                return false;
            }
            let bits = if v4 { 32 } else { 128 };
            let shift = bits - prefix;
            let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
            (as_bits(address) & mask) == (base & mask)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> HostRules {
        #[derive(Deserialize)]
        struct File {
            hba: Vec<HbaRule>,
        }
        HostRules::new(&toml::from_str::<File>(text).unwrap().hba).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = rules(
            "[[hba]]\ntype = 'hostssl'\nuser = 'alice'\n\
             [[hba]]\ntype = 'host'\nuser = 'mallory'\nmethod = 'reject'\n\
             [[hba]]\ntype = 'host'\naddress = '127.0.0.0/8'\n",
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(rules.admit("alice", "d", local, true).is_ok());
        let plaintext = rules.admit("alice", "d", local, false);
        assert!(plaintext.is_ok(), "alice falls through to the host rule");
        let err = rules.admit("alice", "d", remote, false).unwrap_err();
        assert!(
            err.contains("no [[hba]] rule") && err.contains("no encryption"),
            "{err}"
        );
        assert!(rules.admit("alice", "d", remote, true).is_ok());
        let err = rules.admit("mallory", "d", local, true).unwrap_err();
        assert!(err.contains("reject"), "{err}");
        assert!(rules.admit("bob", "d", local, false).is_ok());
        assert!(rules
            .admit("bob", "d", "::ffff:127.0.0.9".parse().unwrap(), false)
            .is_ok());
        assert!(rules
            .admit("bob", "d", "::1".parse().unwrap(), false)
            .is_err());
    }

    #[test]
    fn bad_rules_stop_the_server() {
        for bad in ["10.0.0.0/33", "10.0.0", "somewhere"] {
            let rule = HbaRule {
                connection: ConnectionType::Host,
                user: all(),
                address: bad.to_owned(),
                method: None,
            };
            assert!(HostRules::new(&[rule]).is_err(), "{bad}");
        }
        let rule = HbaRule {
            connection: ConnectionType::Host,
            user: all(),
            address: all(),
            method: Some("md5".into()),
        };
        assert!(HostRules::new(&[rule]).is_err());
        assert!(rules("[[hba]]\ntype = 'hostnossl'\naddress = '::1'")
            .admit("x", "d", "::1".parse().unwrap(), false)
            .is_ok());
    }
}
