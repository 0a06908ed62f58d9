//! AFL++ target: [`pvnet_fuzz::ring`] on each input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        pvnet_fuzz::ring(data);
    });
}
