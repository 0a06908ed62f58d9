//! The control messages and their strict binary encoding: one message per datagram.

use std::collections::BTreeMap;

/// A device state (`XenbusState*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum State {
    /// Unknown.
    Unknown = 0,
    /// Setting up.
    Initialising = 1,
    /// Backend: features advertised, waiting for the frontend.
    InitWait = 2,
    /// Frontend: its keys are written.
    Initialised = 3,
    /// Connected: the data path runs.
    Connected = 4,
    /// Tearing down.
    Closing = 5,
    /// Closed.
    Closed = 6,
    /// Reconfiguring.
    Reconfiguring = 7,
    /// Reconfigured.
    Reconfigured = 8,
}

impl TryFrom<u8> for State {
    type Error = DecodeError;

    fn try_from(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => State::Unknown,
            1 => State::Initialising,
            2 => State::InitWait,
            3 => State::Initialised,
            4 => State::Connected,
            5 => State::Closing,
            6 => State::Closed,
            7 => State::Reconfiguring,
            8 => State::Reconfigured,
            _ => return Err(DecodeError::BadState(v)),
        })
    }
}

/// Keys and values, as a side writes them into its XenStore directory.
pub type Keys = BTreeMap<String, String>;

/// Most keys in one message.
pub const MAX_KEYS: usize = 256;
/// Longest key.
pub const MAX_KEY_LEN: usize = 64;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 256;
/// Largest encoded message.
pub const MAX_MESSAGE: usize = 4 + MAX_KEYS * (4 + MAX_KEY_LEN + MAX_VALUE_LEN);

/// One control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The backend's state and keys (its features, then its acknowledgements).
    Backend {
        /// The backend's state.
        state: State,
        /// Its keys.
        keys: Keys,
    },
    /// The frontend's state and keys (its choices, ring refs, fd roles).
    Frontend {
        /// The frontend's state.
        state: State,
        /// Its keys.
        keys: Keys,
    },
    /// The backend refuses or ends the connection, with a reason.
    Refused(String),
}

/// Why bytes are not a valid message (the peer's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than its header or its fields say.
    #[error("message truncated")]
    Truncated,
    /// Bytes left after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Larger than any valid message.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// Unknown message kind.
    #[error("unknown message kind {0}")]
    BadKind(u8),
    /// Unknown state.
    #[error("unknown state {0}")]
    BadState(u8),
    /// Too many keys.
    #[error("{0} keys, more than allowed")]
    TooManyKeys(usize),
    /// A key that is empty, too long, or not printable ASCII without spaces.
    #[error("bad key")]
    BadKey,
    /// A value too long or not UTF-8.
    #[error("bad value for key {0}")]
    BadValue(String),
    /// The same key twice.
    #[error("duplicate key {0}")]
    DuplicateKey(String),
}

const KIND_BACKEND: u8 = 1;
const KIND_FRONTEND: u8 = 2;
const KIND_REFUSED: u8 = 3;

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
}

impl Message {
    /// Encodes the message. Keys and values that break the limits are a local bug: they are
    /// refused here so that a peer never sees them.
    ///
    /// # Errors
    /// The [`DecodeError`] the peer's decoder would report.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        match self {
            Message::Backend { state, keys } | Message::Frontend { state, keys } => {
                let kind = if matches!(self, Message::Backend { .. }) {
                    KIND_BACKEND
                } else {
                    KIND_FRONTEND
                };
                if keys.len() > MAX_KEYS {
                    return Err(DecodeError::TooManyKeys(keys.len()));
                }
                out.push(kind);
                out.push(*state as u8);
                out.extend_from_slice(&u16::try_from(keys.len()).unwrap_or(u16::MAX).to_le_bytes());
                for (k, v) in keys {
                    if !valid_key(k) {
                        return Err(DecodeError::BadKey);
                    }
                    if v.len() > MAX_VALUE_LEN {
                        return Err(DecodeError::BadValue(k.clone()));
                    }
                    for field in [k.as_bytes(), v.as_bytes()] {
                        out.extend_from_slice(
                            &u16::try_from(field.len()).unwrap_or(u16::MAX).to_le_bytes(),
                        );
                        out.extend_from_slice(field);
                    }
                }
            }
            Message::Refused(reason) => {
                out.push(KIND_REFUSED);
                // A long reason is cut, on a character boundary, so what arrives is a prefix of
                // what was said (a cut inside a character would arrive garbled, or refused).
                let mut end = reason.len().min(MAX_VALUE_LEN);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let reason = &reason.as_bytes()[..end];
                out.extend_from_slice(&u16::try_from(reason.len()).unwrap_or(0).to_le_bytes());
                out.extend_from_slice(reason);
            }
        }
        Ok(out)
    }

    /// Decodes one message, checking every length against the bytes present and every limit.
    ///
    /// # Errors
    /// A [`DecodeError`]: the peer sent something malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let mut r = Reader { bytes, at: 0 };
        let msg = match r.u8()? {
            KIND_REFUSED => {
                let reason = r.field()?;
                if reason.len() > MAX_VALUE_LEN {
                    return Err(DecodeError::BadValue("reason".into()));
                }
                let reason = std::str::from_utf8(reason)
                    .map_err(|_| DecodeError::BadValue("reason".into()))?;
                Message::Refused(reason.to_owned())
            }
            kind @ (KIND_BACKEND | KIND_FRONTEND) => {
                let state = State::try_from(r.u8()?)?;
                let n = usize::from(r.u16()?);
                if n > MAX_KEYS {
                    return Err(DecodeError::TooManyKeys(n));
                }
                let mut keys = Keys::new();
                for _ in 0..n {
                    let k = std::str::from_utf8(r.field()?).map_err(|_| DecodeError::BadKey)?;
                    if !valid_key(k) {
                        return Err(DecodeError::BadKey);
                    }
                    let v = r.field()?;
                    let v = std::str::from_utf8(v)
                        .ok()
                        .filter(|v| v.len() <= MAX_VALUE_LEN)
                        .ok_or_else(|| DecodeError::BadValue(k.to_owned()))?;
                    if keys.insert(k.to_owned(), v.to_owned()).is_some() {
                        return Err(DecodeError::DuplicateKey(k.to_owned()));
                    }
                }
                if kind == KIND_BACKEND {
                    Message::Backend { state, keys }
                } else {
                    Message::Frontend { state, keys }
                }
            }
            other => return Err(DecodeError::BadKind(other)),
        };
        match bytes.len() - r.at {
            0 => Ok(msg),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated)?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn field(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}
