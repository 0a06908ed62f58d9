//! Feature negotiation with XenStore's key names: what the backend offers, what the frontend
//! chooses, each validated against the other.

use crate::message::Keys;

/// Why a peer's keys are unacceptable (the peer's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// A key has a value outside its domain.
    #[error("bad value {value:?} for {key}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A required key is missing.
    #[error("missing key {0}")]
    Missing(&'static str),
    /// The frontend chose something the backend did not offer.
    #[error("{0} was not offered")]
    NotOffered(&'static str),
}

/// How the backend delivers received packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxMode {
    /// Grant copy into the frontend's posted buffers.
    Copy,
    /// Page flip: whole frames change owner.
    Flip,
}

/// What a backend offers (its keys at `InitWait`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendFeatures {
    /// `feature-rx-copy`.
    pub rx_copy: bool,
    /// `feature-rx-flip`.
    pub rx_flip: bool,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
    /// `feature-split-event-channels`.
    pub split_event_channels: bool,
    /// `multi-queue-max-queues`.
    pub max_queues: u32,
    /// `feature-ctrl-ring`.
    pub ctrl_ring: bool,
    /// `feature-multicast-control`.
    pub multicast_control: bool,
}

impl Default for BackendFeatures {
    fn default() -> Self {
        Self {
            rx_copy: true,
            rx_flip: true,
            sg: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            ipv6_csum_offload: true,
            split_event_channels: true,
            max_queues: 4,
            ctrl_ring: false,
            multicast_control: false,
        }
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// A boolean key: absent is `default`, else exactly "0" or "1".
fn get_flag(keys: &Keys, key: &str, default: bool) -> Result<bool, NegotiationError> {
    match keys.get(key).map(String::as_str) {
        None => Ok(default),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(NegotiationError::BadValue {
            key: key.to_owned(),
            value: v.to_owned(),
        }),
    }
}

/// A number key within `range`; absent is `default`.
fn get_num(
    keys: &Keys,
    key: &str,
    default: u32,
    range: core::ops::RangeInclusive<u32>,
) -> Result<u32, NegotiationError> {
    let Some(v) = keys.get(key) else {
        return Ok(default);
    };
    // Canonical decimal only: no sign, no leading zeros, no spaces.
    v.parse::<u32>()
        .ok()
        .filter(|n| range.contains(n) && n.to_string() == *v)
        .ok_or_else(|| NegotiationError::BadValue {
            key: key.to_owned(),
            value: v.clone(),
        })
}

impl BackendFeatures {
    /// The keys a backend writes.
    pub fn to_keys(&self) -> Keys {
        let mut k = Keys::new();
        k.insert("feature-rx-copy".into(), flag(self.rx_copy));
        k.insert("feature-rx-flip".into(), flag(self.rx_flip));
        k.insert("feature-sg".into(), flag(self.sg));
        k.insert("feature-gso-tcpv4".into(), flag(self.gso_tcpv4));
        k.insert("feature-gso-tcpv6".into(), flag(self.gso_tcpv6));
        k.insert(
            "feature-ipv6-csum-offload".into(),
            flag(self.ipv6_csum_offload),
        );
        k.insert(
            "feature-split-event-channels".into(),
            flag(self.split_event_channels),
        );
        k.insert("multi-queue-max-queues".into(), self.max_queues.to_string());
        k.insert("feature-ctrl-ring".into(), flag(self.ctrl_ring));
        k.insert(
            "feature-multicast-control".into(),
            flag(self.multicast_control),
        );
        k
    }

    /// Reads a backend's keys (absent features are off; one queue if unsaid).
    ///
    /// # Errors
    /// A malformed value.
    pub fn from_keys(k: &Keys) -> Result<Self, NegotiationError> {
        Ok(Self {
            rx_copy: get_flag(k, "feature-rx-copy", false)?,
            rx_flip: get_flag(k, "feature-rx-flip", false)?,
            sg: get_flag(k, "feature-sg", false)?,
            gso_tcpv4: get_flag(k, "feature-gso-tcpv4", false)?,
            gso_tcpv6: get_flag(k, "feature-gso-tcpv6", false)?,
            ipv6_csum_offload: get_flag(k, "feature-ipv6-csum-offload", false)?,
            split_event_channels: get_flag(k, "feature-split-event-channels", false)?,
            max_queues: get_num(k, "multi-queue-max-queues", 1, 1..=64)?,
            ctrl_ring: get_flag(k, "feature-ctrl-ring", false)?,
            multicast_control: get_flag(k, "feature-multicast-control", false)?,
        })
    }
}

/// What a frontend chooses (its keys when it connects).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrontendChoice {
    /// `request-rx-copy` (1: copy, 0: flip).
    pub rx_mode: RxMode,
    /// `feature-rx-notify`.
    pub rx_notify: bool,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// IPv4 checksum offload (on unless `feature-no-csum-offload` = 1).
    pub ipv4_csum_offload: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
    /// `multi-queue-num-queues`.
    pub queues: u32,
    /// Separate event channels for tx and rx (`event-channel-tx` / `-rx`).
    pub split_event_channels: bool,
    /// `mac`.
    pub mac: [u8; 6],
    /// `mtu`.
    pub mtu: u32,
}

impl Default for FrontendChoice {
    fn default() -> Self {
        Self {
            rx_mode: RxMode::Copy,
            rx_notify: true,
            sg: true,
            gso_tcpv4: false,
            gso_tcpv6: false,
            ipv4_csum_offload: true,
            ipv6_csum_offload: false,
            queues: 1,
            split_event_channels: false,
            mac: [0x00, 0x16, 0x3e, 0, 0, 1],
            mtu: 1500,
        }
    }
}

/// Smallest MTU accepted (IPv4's minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU without scatter-gather (one page holds a 1514-byte frame; anything above needs
/// several slots).
pub const MAX_MTU_WITHOUT_SG: u32 = 1500;
/// Largest MTU at all (a 65535-byte frame less its Ethernet header).
pub const MAX_MTU: u32 = 65535 - 14;

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(v: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = v.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return None;
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

impl FrontendChoice {
    /// The keys a frontend writes for its choices.
    pub fn to_keys(&self) -> Keys {
        let mut k = Keys::new();
        k.insert("request-rx-copy".into(), flag(self.rx_mode == RxMode::Copy));
        k.insert("feature-rx-notify".into(), flag(self.rx_notify));
        k.insert("feature-sg".into(), flag(self.sg));
        k.insert("feature-gso-tcpv4".into(), flag(self.gso_tcpv4));
        k.insert("feature-gso-tcpv6".into(), flag(self.gso_tcpv6));
        k.insert(
            "feature-no-csum-offload".into(),
            flag(!self.ipv4_csum_offload),
        );
        k.insert(
            "feature-ipv6-csum-offload".into(),
            flag(self.ipv6_csum_offload),
        );
        k.insert("multi-queue-num-queues".into(), self.queues.to_string());
        k.insert("mac".into(), format_mac(self.mac));
        k.insert("mtu".into(), self.mtu.to_string());
        if self.split_event_channels {
            k.insert("feature-split-event-channels".into(), "1".into());
        }
        k
    }

    /// Reads a frontend's keys and checks each choice against what the backend offered.
    ///
    /// As in Xen, `feature-sg`, `feature-gso-tcpv4`, `feature-gso-tcpv6` and
    /// `feature-ipv6-csum-offload` say, on each side, what that side can *receive*: the
    /// backend's keys bound what the frontend may transmit, the frontend's what the backend
    /// may deliver to it. A frontend's receive features are therefore never refused for the
    /// backend lacking the same (Linux netfront writes all four as 1 whatever the backend
    /// offers); what is checked is what one side asks of the other: the receive mode, split
    /// event channels, the queue count and, for an MTU above 1500, scatter-gather both
    /// ways. [`TxFeatures::new`] gives what the frontend may then send.
    ///
    /// # Errors
    /// A malformed value, a missing `mac`, or a choice that was not offered.
    pub fn from_keys(k: &Keys, offered: &BackendFeatures) -> Result<Self, NegotiationError> {
        let rx_mode = if get_flag(k, "request-rx-copy", false)? {
            RxMode::Copy
        } else {
            RxMode::Flip
        };
        let c = Self {
            rx_mode,
            rx_notify: get_flag(k, "feature-rx-notify", false)?,
            sg: get_flag(k, "feature-sg", false)?,
            gso_tcpv4: get_flag(k, "feature-gso-tcpv4", false)?,
            gso_tcpv6: get_flag(k, "feature-gso-tcpv6", false)?,
            ipv4_csum_offload: !get_flag(k, "feature-no-csum-offload", false)?,
            ipv6_csum_offload: get_flag(k, "feature-ipv6-csum-offload", false)?,
            queues: get_num(k, "multi-queue-num-queues", 1, 1..=64)?,
            split_event_channels: get_flag(k, "feature-split-event-channels", false)?,
            mac: {
                let v = k.get("mac").ok_or(NegotiationError::Missing("mac"))?;
                parse_mac(v).ok_or_else(|| NegotiationError::BadValue {
                    key: "mac".into(),
                    value: v.clone(),
                })?
            },
            mtu: get_num(k, "mtu", MAX_MTU_WITHOUT_SG, MIN_MTU..=MAX_MTU)?,
        };
        let offers = [
            (
                c.rx_mode == RxMode::Copy && !offered.rx_copy,
                "feature-rx-copy",
            ),
            (
                c.rx_mode == RxMode::Flip && !offered.rx_flip,
                "feature-rx-flip",
            ),
            (
                c.split_event_channels && !offered.split_event_channels,
                "feature-split-event-channels",
            ),
            (c.queues > offered.max_queues, "multi-queue-max-queues"),
            // Frames of the MTU go both ways: each side must take several slots.
            (
                c.mtu > MAX_MTU_WITHOUT_SG && !(c.sg && offered.sg),
                "feature-sg (for an MTU above 1500)",
            ),
            (
                (c.gso_tcpv4 || c.gso_tcpv6) && !c.sg,
                "feature-sg (for GSO)",
            ),
        ];
        if let Some((_, what)) = offers.into_iter().find(|(bad, _)| *bad) {
            return Err(NegotiationError::NotOffered(what));
        }
        Ok(c)
    }
}

/// What a frontend may transmit: the backend's receive features (its keys), as Linux
/// netfront reads them (`xennet_fix_features`). Several slots per packet only with
/// `feature-sg`, and TCP segmentation offload only together with it (a GSO packet spans
/// pages); IPv4 checksum offload always (netif has no key to refuse it), IPv6's with
/// `feature-ipv6-csum-offload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxFeatures {
    /// Packets of several slots.
    pub sg: bool,
    /// TCPv4 GSO packets.
    pub gso_tcpv4: bool,
    /// TCPv6 GSO packets.
    pub gso_tcpv6: bool,
    /// IPv6 packets with a partial checksum (`csum_blank`).
    pub ipv6_csum_offload: bool,
    /// The longest frame without GSO: the MTU and an Ethernet header, at most one page's
    /// 1514 bytes without scatter-gather.
    pub max_len: usize,
    /// The longest GSO packet (65535 bytes; `max_len` when GSO is off).
    pub max_len_gso: usize,
}

impl TxFeatures {
    /// What a frontend of MTU `mtu` may send to a backend that offered `offered`.
    pub fn new(offered: &BackendFeatures, mtu: u32) -> Self {
        let sg = offered.sg;
        let most = if sg {
            65535
        } else {
            MAX_MTU_WITHOUT_SG as usize + 14
        };
        let max_len = (mtu as usize + 14).min(most);
        let gso_tcpv4 = sg && offered.gso_tcpv4;
        let gso_tcpv6 = sg && offered.gso_tcpv6;
        Self {
            sg,
            gso_tcpv4,
            gso_tcpv6,
            ipv6_csum_offload: offered.ipv6_csum_offload,
            max_len,
            max_len_gso: if gso_tcpv4 || gso_tcpv6 {
                65535
            } else {
                max_len
            },
        }
    }
}
