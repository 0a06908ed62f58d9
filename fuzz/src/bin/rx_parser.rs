//! AFL++ target: [`pvnet_fuzz::rx_parser`] on each input.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        pvnet_fuzz::rx_parser(data);
    });
}
