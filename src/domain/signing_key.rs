//! The names a stored signing key carries: its lifecycle state and its algorithm, each
//! read into an enum at the row boundary, with room for a value written by a newer
//! version of Portcullis during a rolling upgrade.

use std::fmt;

use super::jws::SigningAlg;

/// The lifecycle state of a stored key (`signing_keys.state`): `next` is published but does
/// not sign yet, `current` signs, `retired` is published until its `remove_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyState {
    Next,
    Current,
    Retired,
}

impl KeyState {
    pub const ALL: [Self; 3] = [Self::Next, Self::Current, Self::Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Retired => "retired",
        }
    }
}

/// A closed set of names stored as text.
pub trait StoredName: Copy + Sized + 'static {
    const ALL_NAMES: &'static [Self];
    fn as_str(self) -> &'static str;
    /// Exact, case-sensitive.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL_NAMES.iter().copied().find(|v| v.as_str() == s)
    }
}

impl StoredName for KeyState {
    const ALL_NAMES: &'static [Self] = &Self::ALL;
    fn as_str(self) -> &'static str {
        KeyState::as_str(self)
    }
}

impl StoredName for SigningAlg {
    const ALL_NAMES: &'static [Self] = &Self::ALL;
    fn as_str(self) -> &'static str {
        SigningAlg::as_str(self)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name read from a row. `Unknown` keeps the text of a value this version does not know
/// (a newer instance wrote it during a rolling upgrade): such a key is neither used nor
/// dropped, so the key ring skips it with a warning while `keys rotate-master-key` still
/// re-encrypts it and `keys list` still shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<T> {
    Known(T),
    Unknown(String),
}

impl<T: StoredName> Stored<T> {
    pub fn parse(s: &str) -> Self {
        T::parse(s).map_or_else(|| Self::Unknown(s.to_owned()), Self::Known)
    }

    pub fn known(&self) -> Option<T> {
        match self {
            Self::Known(v) => Some(*v),
            Self::Unknown(_) => None,
        }
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(v) => v.as_str(),
            Self::Unknown(s) => s,
        }
    }
}

impl<T> From<T> for Stored<T> {
    fn from(v: T) -> Self {
        Self::Known(v)
    }
}

impl<T: PartialEq> PartialEq<T> for Stored<T> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, Self::Known(v) if v == other)
    }
}

impl<T: StoredName> serde::Serialize for Stored<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<T: StoredName> fmt::Display for Stored<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip_and_unknown_ones_keep_their_text() {
        for state in KeyState::ALL {
            let stored = Stored::<KeyState>::parse(state.as_str());
            assert_eq!(stored, Stored::Known(state));
            assert_eq!(stored.as_str(), state.as_str());
            assert!(stored == state);
        }
        for alg in SigningAlg::ALL {
            assert_eq!(Stored::<SigningAlg>::parse(alg.as_str()).known(), Some(alg));
        }
        let newer = Stored::<SigningAlg>::parse("ES512");
        assert_eq!(newer, Stored::Unknown("ES512".to_owned()));
        assert_eq!(newer.known(), None);
        assert_eq!(newer.to_string(), "ES512");
        assert!(newer != SigningAlg::ES256);
        assert_eq!(Stored::<KeyState>::parse("Current").known(), None);
        assert_eq!(Stored::<KeyState>::parse("").known(), None);
    }
}
