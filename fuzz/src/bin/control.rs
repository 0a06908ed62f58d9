//! AFL++ target: [`pvnet_fuzz::control`] on each input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        pvnet_fuzz::control(data);
    });
}
