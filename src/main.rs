use std::process::ExitCode;

fn main() -> ExitCode {
    // Everything pvecri creates is private unless a caller widens it: the CRI
    // socket must never exist, even for an instant, with a looser mode.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    pvecri::cli::main()
}
