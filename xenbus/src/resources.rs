//! Which attached descriptor plays which role, and the ring references of each queue: the keys
//! a frontend writes next to its choices (`tx-ring-ref`, `event-channel`, ...).

use crate::message::Keys;
use crate::negotiate::NegotiationError;

/// An event channel's attached descriptor (an index into the message's fd list): the one
/// the backend notifies the frontend through. The backend makes the socket it waits on
/// itself and answers with its sending end (with `Connected`, one per channel in
/// [`Resources`] order), so neither side ever holds the other's receiving end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFds {
    /// Index of the descriptor the backend notifies on (the frontend waits on its peer).
    pub backend_notifies: usize,
}

/// One queue's rings and event channel(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueResources {
    /// Grant reference of the tx ring page.
    pub tx_ring_ref: u32,
    /// Grant reference of the rx ring page.
    pub rx_ring_ref: u32,
    /// The event channel for tx (or for both, when not split).
    pub tx_event: EventFds,
    /// The rx event channel, when split.
    pub rx_event: Option<EventFds>,
}

/// Everything a frontend hands over at connect, by descriptor index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Index of the frames memfd.
    pub frames: usize,
    /// Index of the grant table memfd.
    pub grant_table: usize,
    /// Index of the flip pool memfd (flip mode).
    pub flip_pool: Option<usize>,
    /// Per queue.
    pub queues: Vec<QueueResources>,
}

fn prefixed(queues: usize, q: usize, name: &str) -> String {
    if queues > 1 {
        format!("queue-{q}/{name}")
    } else {
        name.to_owned()
    }
}

fn channel(e: EventFds) -> String {
    e.backend_notifies.to_string()
}

impl Resources {
    /// The event channels, in the order the backend answers with its doorbells: queue 0's
    /// tx channel, its rx channel if split, then queue 1's, and so on.
    pub fn event_channels(&self) -> impl Iterator<Item = EventFds> + '_ {
        self.queues
            .iter()
            .flat_map(|q| std::iter::once(q.tx_event).chain(q.rx_event))
    }

    /// The keys describing these resources.
    pub fn to_keys(&self) -> Keys {
        let mut k = Keys::new();
        k.insert("frames-fd".into(), self.frames.to_string());
        k.insert("grant-table-fd".into(), self.grant_table.to_string());
        if let Some(p) = self.flip_pool {
            k.insert("flip-pool-fd".into(), p.to_string());
        }
        let n = self.queues.len();
        for (q, r) in self.queues.iter().enumerate() {
            k.insert(prefixed(n, q, "tx-ring-ref"), r.tx_ring_ref.to_string());
            k.insert(prefixed(n, q, "rx-ring-ref"), r.rx_ring_ref.to_string());
            match r.rx_event {
                None => {
                    k.insert(prefixed(n, q, "event-channel"), channel(r.tx_event));
                }
                Some(rx) => {
                    k.insert(prefixed(n, q, "event-channel-tx"), channel(r.tx_event));
                    k.insert(prefixed(n, q, "event-channel-rx"), channel(rx));
                }
            }
        }
        k
    }

    /// Reads the resource keys for `queues` queues and checks them against the `fds` descriptors
    /// that came with the message: every index in range, and every descriptor used exactly once.
    ///
    /// # Errors
    /// A missing or malformed key, or descriptors that do not match.
    pub fn from_keys(
        k: &Keys,
        queues: usize,
        split: bool,
        flip: bool,
        fds: usize,
    ) -> Result<Self, NegotiationError> {
        let mut used = vec![0u32; fds];
        let frames = fd_index(k, "frames-fd", &mut used)?;
        let grant_table = fd_index(k, "grant-table-fd", &mut used)?;
        let flip_pool = if flip {
            Some(fd_index(k, "flip-pool-fd", &mut used)?)
        } else {
            None
        };
        let mut qs = Vec::with_capacity(queues);
        for q in 0..queues {
            let key = |name: &str| prefixed(queues, q, name);
            let (tx_event, rx_event) = if split {
                let tx = event_fds(k, &key("event-channel-tx"), &mut used)?;
                (tx, Some(event_fds(k, &key("event-channel-rx"), &mut used)?))
            } else {
                (event_fds(k, &key("event-channel"), &mut used)?, None)
            };
            qs.push(QueueResources {
                tx_ring_ref: number(k, &key("tx-ring-ref"))?,
                rx_ring_ref: number(k, &key("rx-ring-ref"))?,
                tx_event,
                rx_event,
            });
        }
        if let Some(i) = used.iter().position(|&u| u != 1) {
            return Err(NegotiationError::BadValue {
                key: format!("descriptor {i}"),
                value: format!("used {} times", used[i]),
            });
        }
        Ok(Self {
            frames,
            grant_table,
            flip_pool,
            queues: qs,
        })
    }
}

fn bad(key: &str, value: &str) -> NegotiationError {
    NegotiationError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// A canonical decimal `u32` key.
fn number(k: &Keys, key: &str) -> Result<u32, NegotiationError> {
    let v = k.get(key).map_or("", String::as_str);
    v.parse::<u32>()
        .ok()
        .filter(|n| n.to_string() == v)
        .ok_or_else(|| bad(key, v))
}

/// A descriptor index below `used.len()`, counted as used.
fn index_of(v: &str, used: &mut [u32]) -> Option<usize> {
    let i = v
        .parse::<usize>()
        .ok()
        .filter(|i| *i < used.len() && i.to_string() == v)?;
    used[i] += 1;
    Some(i)
}

fn fd_index(k: &Keys, key: &str, used: &mut [u32]) -> Result<usize, NegotiationError> {
    let v = k.get(key).map_or("", String::as_str);
    index_of(v, used).ok_or_else(|| bad(key, v))
}

/// An event channel: the index of the descriptor the backend notifies on.
fn event_fds(k: &Keys, key: &str, used: &mut [u32]) -> Result<EventFds, NegotiationError> {
    Ok(EventFds {
        backend_notifies: fd_index(k, key, used)?,
    })
}
