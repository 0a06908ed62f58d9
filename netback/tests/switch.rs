//! The switch against guests that lie about who they are: a vif may send only from the MAC
//! address it negotiated, so one spoofed frame cannot teach the switch to send another
//! guest's unicast traffic to the attacker (before, it did); a learning switch keeps a
//! vif's own address its own and learns a bounded number of others. Three netfronts on the
//! in-process host, stepped on one thread.

mod common;

use common::frame;
use netfront::NetfrontConfig;
use pvnet_netback::testing::{LocalBackendHost, LocalNetfront, connect, local_backend};
use pvnet_netback::{MAX_LEARNT, Netback, NetbackConfig, Switch, VifId};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn nic(backend: &mut Netback<Switch, LocalBackendHost>, n: u8) -> (VifId, LocalNetfront) {
    let mut cfg = NetfrontConfig::default();
    cfg.choice = FrontendChoice::default();
    cfg.choice.rx_mode = RxMode::Copy;
    cfg.choice.mac = mac(n);
    connect(backend, &BackendFeatures::default(), cfg).unwrap()
}

/// Sends `f` from `from`, steps the backend, and returns what each of `to` received.
fn send(
    backend: &mut Netback<Switch, LocalBackendHost>,
    from: &mut LocalNetfront,
    f: &[u8],
    to: &mut [&mut LocalNetfront],
) -> Vec<Vec<Vec<u8>>> {
    from.send(f, netif::Offload::default()).unwrap();
    for _ in 0..4 {
        backend.poll().unwrap();
        from.poll().unwrap();
    }
    to.iter_mut()
        .map(|n| {
            let mut got = Vec::new();
            n.receive(64, |rx| got.push(rx.data.to_vec())).unwrap();
            got
        })
        .collect()
}

#[test]
fn a_spoofed_source_cannot_steal_another_guests_traffic() {
    let mut backend = local_backend(NetbackConfig::default(), Switch::default()).unwrap();
    let (_, mut a) = nic(&mut backend, 1);
    let (vb, mut b) = nic(&mut backend, 2);
    let (_, mut c) = nic(&mut backend, 3);
    // Each vif's own address is known from the start: no flooding needed.
    assert_eq!(backend.uplink().lookup(mac(2)), Some(vb));
    // The attacker c claims to be b.
    let spoof = frame(2, 0xff, 1, 60);
    let got = send(&mut backend, &mut c, &spoof, &mut [&mut a, &mut b]);
    assert!(
        got.iter().all(Vec::is_empty),
        "a spoofed frame went out: {got:?}"
    );
    assert_eq!(backend.uplink().spoofed, 1);
    assert_eq!(backend.uplink().lookup(mac(2)), Some(vb));
    // a's unicast to b reaches b, and not the attacker.
    let to_b = frame(1, 2, 2, 60);
    let got = send(&mut backend, &mut a, &to_b, &mut [&mut b, &mut c]);
    assert_eq!(got[0], [to_b]);
    assert!(got[1].is_empty(), "the attacker got b's traffic");
    // c's honest frames still go.
    let honest = frame(3, 1, 3, 60);
    let got = send(&mut backend, &mut c, &honest, &mut [&mut a]);
    assert_eq!(got[0], [honest]);
    // A newcomer that negotiates b's address owns nothing: it cannot send as b.
    let (_, mut d) = nic(&mut backend, 2);
    let got = send(&mut backend, &mut d, &frame(2, 1, 4, 60), &mut [&mut a]);
    assert!(got[0].is_empty());
    assert_eq!(backend.uplink().lookup(mac(2)), Some(vb));
    assert_eq!(backend.uplink().spoofed, 2);
}

#[test]
fn a_learning_switch_learns_a_bounded_number_and_never_a_vifs_own() {
    let mut backend = local_backend(NetbackConfig::default(), Switch::learning()).unwrap();
    let (va, mut a) = nic(&mut backend, 1);
    let (vb, mut b) = nic(&mut backend, 2);
    // An address behind a is learnt; b's own cannot be taken.
    let behind = 0x77;
    let got = send(
        &mut backend,
        &mut a,
        &frame(behind, 0xff, 1, 60),
        &mut [&mut b],
    );
    assert_eq!(got[0].len(), 1);
    assert_eq!(backend.uplink().lookup(mac(behind)), Some(va));
    let got = send(&mut backend, &mut a, &frame(2, 0xff, 2, 60), &mut [&mut b]);
    assert!(got[0].is_empty());
    assert_eq!(backend.uplink().lookup(mac(2)), Some(vb));
    assert_eq!(backend.uplink().spoofed, 1);
    // Many more sources than the table holds: it stops learning at the cap (the frames still
    // flood), and the vifs' own addresses stay.
    let many = u32::try_from(MAX_LEARNT).unwrap() + 100;
    let src = |i: u32| {
        let [_, hi, mid, lo] = i.to_be_bytes();
        [0x06, 0, hi, mid, lo, 9]
    };
    for i in 0..many {
        let mut f = frame(0, 0xff, i, 60);
        f[6..12].copy_from_slice(&src(i));
        a.send(&f, netif::Offload::default()).unwrap();
        backend.poll().unwrap();
        a.poll().unwrap();
        b.receive(64, |_| {}).unwrap();
    }
    let learnt = (0..many)
        .filter(|i| backend.uplink().lookup(src(*i)).is_some())
        .count();
    assert!(learnt <= MAX_LEARNT, "{learnt} learnt");
    assert_eq!(backend.uplink().lookup(mac(1)), Some(va));
    assert_eq!(backend.uplink().lookup(mac(2)), Some(vb));
}
