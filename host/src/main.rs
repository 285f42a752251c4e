//! The `sluice` binary: parses the command line and runs it (see `sluice --help`).

fn main() -> std::process::ExitCode {
    sluice::main()
}
