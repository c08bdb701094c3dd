//! Account identifiers: E.164 phone numbers or usernames.

use std::fmt;

/// A normalised account id: `+14155550100` or `alice.smith`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

/// Why a string is not an account id. The message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("{0:?} is not a phone number: E.164 numbers are + and 8 to 15 digits, starting with the country code (e.g. +14155550100)")]
    BadNumber(String),
    #[error("{0:?} looks like a phone number without its country code: write it as +<country code><number>, e.g. +14155550100")]
    MissingPlus(String),
    #[error("{0:?} is not a valid username: use 1 to 64 of a-z, 0-9, '.', '_' and '-'")]
    BadUsername(String),
}

impl AccountId {
    /// Normalise a phone number (anything starting with `+`, with spaces,
    /// dashes, dots and parentheses allowed) or a username (lower-cased).
    pub fn parse(input: &str) -> Result<AccountId, IdError> {
        let s = input.trim();
        if let Some(rest) = s.strip_prefix('+') {
            return parse_number(input, rest);
        }
        if looks_like_number(s) {
            return Err(IdError::MissingPlus(input.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        let ok = (1..=64).contains(&lower.len())
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(AccountId(lower))
        } else {
            Err(IdError::BadUsername(input.to_owned()))
        }
    }

    /// The normalised id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for E.164 numbers.
    pub fn is_number(&self) -> bool {
        self.0.starts_with('+')
    }
}

fn parse_number(input: &str, rest: &str) -> Result<AccountId, IdError> {
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(IdError::BadNumber(input.to_owned())),
        }
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(IdError::BadNumber(input.to_owned()));
    }
    Ok(AccountId(format!("+{digits}")))
}

/// Only digits and phone punctuation, with at least 7 digits.
fn looks_like_number(s: &str) -> bool {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    digits >= 7
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b" -.()".contains(&b))
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_to_e164() {
        assert_eq!(
            AccountId::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
        assert_eq!(
            AccountId::parse(" +44 20 7946 0958 ").unwrap().as_str(),
            "+442079460958"
        );
        assert!(AccountId::parse("+14155550100").unwrap().is_number());
    }

    #[test]
    fn bad_numbers_are_explained() {
        assert!(matches!(
            AccountId::parse("+1234"),
            Err(IdError::BadNumber(_))
        ));
        assert!(matches!(
            AccountId::parse("+0123456789"),
            Err(IdError::BadNumber(_))
        ));
        assert!(matches!(
            AccountId::parse("+1415555010012345"),
            Err(IdError::BadNumber(_))
        ));
        assert!(matches!(
            AccountId::parse("+1415x5550100"),
            Err(IdError::BadNumber(_))
        ));
        assert!(matches!(
            AccountId::parse("(415) 555-0100"),
            Err(IdError::MissingPlus(_))
        ));
    }

    #[test]
    fn usernames() {
        assert_eq!(
            AccountId::parse("Alice.Smith").unwrap().as_str(),
            "alice.smith"
        );
        assert_eq!(AccountId::parse("bob_2-x").unwrap().as_str(), "bob_2-x");
        assert!(!AccountId::parse("bob").unwrap().is_number());
        for bad in ["", "a b", "ålice", "a@b", &"x".repeat(65), "a:b"] {
            assert!(
                matches!(AccountId::parse(bad), Err(IdError::BadUsername(_))),
                "{bad}"
            );
        }
    }
}
