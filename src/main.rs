//! The `devstack` binary: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = devstack::cli::Cli::parse();
    match devstack::run(cli) {
        Ok(code) => code,
        Err(err) => {
            devstack::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
