//! The `sluice` binary: parses the command line and runs it (see `sluice --help`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    sluice::cli::run(sluice::cli::Cli::parse())
}
