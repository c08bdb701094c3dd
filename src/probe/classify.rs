//! Turning observations into RFC 4787 / RFC 5780 behaviour words. Pure functions.

use std::net::SocketAddr;

use serde::Serialize;

/// Mapping or filtering behaviour (RFC 4787 §4.1 / §5), in the words of RFC 5780.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Same for every destination.
    EndpointIndependent,
    /// Depends on the destination IP only.
    AddressDependent,
    /// Depends on the destination IP and port.
    AddressAndPortDependent,
}

impl Behaviour {
    /// The exact word used in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointIndependent => "endpoint-independent",
            Self::AddressDependent => "address-dependent",
            Self::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mapping verdict and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingVerdict {
    /// The behaviour reported.
    pub behaviour: Behaviour,
    /// False when it could not be measured and was assumed.
    pub measured: bool,
    /// What was inferred or assumed, for the `notes`.
    pub note: Option<String>,
}

/// One filtering test's observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterObservation {
    /// Answered from the address the CHANGE-REQUEST asked for.
    Answered,
    /// Answered, but from another address: the server ignored CHANGE-REQUEST.
    WrongSource,
    /// No answer within the timeout.
    Silent,
    /// Not run or refused (no RFC 5780 on the server).
    Unavailable,
}

/// Classifies the mapping from `(destination, mapped address)` pairs seen from ONE local
/// socket; the first pair is the server's primary address. `local` is the socket's own
/// address toward the server, to recognise "no NAT at all".
pub fn classify_mapping(
    local: Option<SocketAddr>,
    observations: &[(SocketAddr, SocketAddr)],
) -> MappingVerdict {
    let Some(&(_, first)) = observations.first() else {
        return assumed("no answer to compare");
    };
    let no_nat = local == Some(first);
    let mut port_only = None; // same IP, other port: did the mapping change?
    let mut ip_changed = None; // other IP: did the mapping change?
    for (i, &(dest_a, mapped_a)) in observations.iter().enumerate() {
        for &(dest_b, mapped_b) in &observations[i + 1..] {
            let differs = mapped_a != mapped_b;
            if dest_a.ip() == dest_b.ip() && dest_a.port() != dest_b.port() {
                port_only = Some(port_only.unwrap_or(false) || differs);
            } else if dest_a.ip() != dest_b.ip() {
                ip_changed = Some(ip_changed.unwrap_or(false) || differs);
            }
        }
    }
    decide_mapping(no_nat, port_only, ip_changed)
}

fn decide_mapping(
    no_nat: bool,
    port_only: Option<bool>,
    ip_changed: Option<bool>,
) -> MappingVerdict {
    use Behaviour::*;
    let verdict = |behaviour, note: Option<&str>| MappingVerdict {
        behaviour,
        measured: true,
        note: note.map(str::to_owned),
    };
    match (port_only, ip_changed) {
        (Some(true), _) => verdict(AddressAndPortDependent, None),
        (Some(false), Some(true)) => verdict(AddressDependent, None),
        (Some(false), Some(false)) | (None, Some(false)) => verdict(EndpointIndependent, None),
        (None, Some(true)) => verdict(
            AddressAndPortDependent,
            Some("the mapping changed for another server address; no second port on the same address answered, so address-dependent mapping could not be told apart"),
        ),
        (Some(false), None) => verdict(
            EndpointIndependent,
            Some("same public port for two server ports on one address; the server has no second address, so address-dependence was not tested"),
        ),
        (None, None) if no_nat => verdict(
            EndpointIndependent,
            Some("no NAT: the server sees this machine's own address, so every destination sees the same address"),
        ),
        (None, None) => assumed("the server answered on one address and port only, so the mapping could not be measured; assumed the worst case"),
    }
}

fn assumed(why: &str) -> MappingVerdict {
    MappingVerdict {
        behaviour: Behaviour::AddressAndPortDependent,
        measured: false,
        note: Some(why.to_owned()),
    }
}

/// Classifies filtering from the RFC 5780 §4.4 tests II (change IP and port) and III
/// (change port). `None` means unknown, with the reason.
pub fn classify_filtering(
    change_both: FilterObservation,
    change_port: FilterObservation,
) -> Result<Behaviour, String> {
    use FilterObservation::*;
    match (change_both, change_port) {
        (Answered, _) => Ok(Behaviour::EndpointIndependent),
        (WrongSource, _) | (_, WrongSource) => Err("the server answered CHANGE-REQUEST from the wrong address, so filtering could not be tested".to_owned()),
        (Silent, Answered) => Ok(Behaviour::AddressDependent),
        (Silent, Silent) => Ok(Behaviour::AddressAndPortDependent),
        (Unavailable, _) | (_, Unavailable) => Err("the server offers no RFC 5780 alternate address, so filtering could not be tested".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Behaviour::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const P1: &str = "192.0.2.10:3478";
    const P2: &str = "192.0.2.10:3479";
    const A1: &str = "192.0.2.11:3478";
    const A2: &str = "192.0.2.11:3479";

    fn mapping(pairs: &[(&str, &str)]) -> MappingVerdict {
        let pairs: Vec<_> = pairs.iter().map(|(d, m)| (addr(d), addr(m))).collect();
        classify_mapping(Some(addr("10.0.0.2:5000")), &pairs)
    }

    #[test]
    fn rfc5780_mapping_tests_classify_all_three_kinds() {
        let x = "203.0.113.2:5000";
        let eim = mapping(&[(P1, x), (A1, x), (A2, x), (P2, x)]);
        assert_eq!(
            (eim.behaviour, eim.measured, eim.note),
            (EndpointIndependent, true, None)
        );
        let adm = mapping(&[
            (P1, x),
            (A1, "203.0.113.2:6000"),
            (A2, "203.0.113.2:6000"),
            (P2, x),
        ]);
        assert_eq!(adm.behaviour, AddressDependent);
        let apdm = mapping(&[
            (P1, x),
            (A1, "203.0.113.2:6000"),
            (A2, "203.0.113.2:7000"),
            (P2, "203.0.113.2:8000"),
        ]);
        assert_eq!(apdm.behaviour, AddressAndPortDependent);
    }

    #[test]
    fn only_two_ports_on_one_address() {
        let same = mapping(&[(P1, "203.0.113.2:5000"), (P2, "203.0.113.2:5000")]);
        assert_eq!(same.behaviour, EndpointIndependent);
        assert!(same.note.unwrap().contains("not tested"));
        let changed = mapping(&[(P1, "203.0.113.2:5000"), (P2, "203.0.113.2:5001")]);
        assert_eq!(changed.behaviour, AddressAndPortDependent);
        assert!(changed.measured);
    }

    #[test]
    fn only_ip_and_port_changed_together_is_reported_as_the_worse_case() {
        let verdict = mapping(&[(P1, "203.0.113.2:5000"), (A2, "203.0.113.2:5001")]);
        assert_eq!(verdict.behaviour, AddressAndPortDependent);
        assert!(verdict.note.unwrap().contains("could not be told apart"));
    }

    #[test]
    fn one_answer_is_measured_only_without_nat() {
        let public = classify_mapping(
            Some(addr("198.51.100.7:4000")),
            &[(addr(P1), addr("198.51.100.7:4000"))],
        );
        assert_eq!(
            (public.behaviour, public.measured),
            (EndpointIndependent, true)
        );
        let natted = mapping(&[(P1, "203.0.113.2:5000")]);
        assert_eq!(
            (natted.behaviour, natted.measured),
            (AddressAndPortDependent, false)
        );
        assert!(natted.note.unwrap().contains("assumed"));
    }

    #[test]
    fn filtering_follows_rfc5780_section_4_4() {
        use FilterObservation::*;
        assert_eq!(
            classify_filtering(Answered, Silent),
            Ok(EndpointIndependent)
        );
        assert_eq!(classify_filtering(Silent, Answered), Ok(AddressDependent));
        assert_eq!(
            classify_filtering(Silent, Silent),
            Ok(AddressAndPortDependent)
        );
        assert!(classify_filtering(Unavailable, Unavailable)
            .unwrap_err()
            .contains("RFC 5780"));
        assert!(classify_filtering(WrongSource, Silent)
            .unwrap_err()
            .contains("wrong address"));
        assert!(classify_filtering(Silent, WrongSource).is_err());
    }

    #[test]
    fn words_are_exact() {
        assert_eq!(
            serde_json::to_string(&AddressAndPortDependent).unwrap(),
            "\"address-and-port-dependent\""
        );
        assert_eq!(EndpointIndependent.to_string(), "endpoint-independent");
        assert_eq!(AddressDependent.as_str(), "address-dependent");
    }
}
