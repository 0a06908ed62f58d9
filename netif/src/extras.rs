//! The extra slots of a packet (tx or rx): one of each type, a later one replacing an earlier
//! one, as netback and netfront keep them.

use crate::wire::{ExtraInfo, extra_type};

/// Extra types kept (`GSO` ..= `XDP`).
pub const EXTRA_KINDS: usize = extra_type::MAX as usize - 1;

/// A packet's extras, by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras([ExtraInfo; EXTRA_KINDS]);

impl Extras {
    /// Keeps `extra`; `false` (and nothing kept) if its type is unknown.
    pub(crate) fn insert(&mut self, extra: ExtraInfo) -> bool {
        match usize::from(extra.kind)
            .checked_sub(1)
            .and_then(|i| self.0.get_mut(i))
        {
            Some(slot) if extra.kind != extra_type::NONE => {
                *slot = extra;
                true
            }
            _ => false,
        }
    }

    /// The extra of a type (one of [`extra_type`]), if the packet carried one.
    #[inline]
    pub fn get(&self, kind: u8) -> Option<ExtraInfo> {
        let e = *self.0.get(usize::from(kind).checked_sub(1)?)?;
        (e.kind != extra_type::NONE).then_some(e)
    }

    /// The GSO extra as `(type, size)`.
    #[inline]
    pub fn gso(&self) -> Option<(u8, u16)> {
        self.get(extra_type::GSO)
            .map(|e| (e.gso_type(), e.gso_size()))
    }
}
