//! `pvecri-helper`: the processes the daemon starts per container and per
//! exec (`monitor`, `exec-helper`). A binary of its own holds only what
//! those need, so each of the hundreds a node runs maps and relocates a
//! fraction of the daemon's code (see `pvecri::cli::helper_main`).

use std::process::ExitCode;

fn main() -> ExitCode {
    // As the daemon: what the helpers create is private unless widened.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    pvecri::cli::helper_main()
}
