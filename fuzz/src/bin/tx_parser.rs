//! AFL++ target: [`pvnet_fuzz::tx_parser`] on each input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        pvnet_fuzz::tx_parser(data);
    });
}
