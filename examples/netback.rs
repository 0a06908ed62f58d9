//! A netback process: listens on a Unix socket for netfront processes and carries their frames
//! through an uplink (a learning switch joining them all, an echo, or a sink), printing each
//! vif's counters.
//!
//! ```text
//! cargo run --release --example netback -- --uplink switch --stats-secs 1
//! cargo run --release --example netfront -- --mode verify
//!
//! Without `--socket`, both use `pvnet::process::default_socket_path()`: a directory private to
//! this user (`$XDG_RUNTIME_DIR/pvnet`, or `/tmp/pvnet-<uid>`), never a fixed name others could
//! take first.
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use common::{BackendSetup, UplinkKind, run_backend};
use pvnet::back::TxMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TxModeArg {
    Copy,
    Map,
}

#[derive(Parser, Debug)]
#[command(about = "A netback serving netfront processes over shared memory")]
struct Args {
    /// The control socket to listen on (default: a directory private to this user).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Where frames go.
    #[arg(long, value_enum, default_value_t = UplinkKind::Switch)]
    uplink: UplinkKind,
    /// Use the TAP of this name as the uplink instead (made if needed; needs
    /// CAP_NET_ADMIN): the host and the frontends on one L2 segment, offloads included.
    #[arg(long)]
    tap: Option<String>,
    /// The TAP's queues (a multi-queue TAP when more than 1).
    #[arg(long, default_value_t = 1)]
    tap_queues: usize,
    /// How guest transmit bytes are read.
    #[arg(long, value_enum, default_value_t = TxModeArg::Copy)]
    tx_mode: TxModeArg,
    /// Microseconds to poll the rings before sleeping.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Transmit rate limit per vif, in Mbit/s.
    #[arg(long)]
    rate_mbit: Option<u64>,
    /// Print every vif's counters this often.
    #[arg(long)]
    stats_secs: Option<u64>,
    /// Exit once this many frontends have come and gone.
    #[arg(long)]
    exit_after: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let setup = BackendSetup {
        socket: match args
            .socket
            .map_or_else(pvnet::process::default_socket_path, Ok)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("netback: no socket path: {e}");
                return ExitCode::FAILURE;
            }
        },
        uplink: args.uplink,
        tap: args.tap,
        tap_queues: args.tap_queues,
        tx_mode: match args.tx_mode {
            TxModeArg::Copy => TxMode::Copy,
            TxModeArg::Map => TxMode::Map,
        },
        spin: Duration::from_micros(args.spin_us),
        rate_mbit: args.rate_mbit,
        stats_every: args.stats_secs.map(Duration::from_secs),
        exit_after: args.exit_after,
        verbose: true,
    };
    eprintln!(
        "netback: listening on {} ({:?} uplink)",
        setup.socket.display(),
        setup.uplink
    );
    match run_backend(&setup, &Arc::new(AtomicBool::new(false))) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netback: {e}");
            ExitCode::FAILURE
        }
    }
}
