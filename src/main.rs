//! The `keyrot` binary: parse arguments, run, map the result to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match keyrot::cli::main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("keyrot: {err:#}");
            ExitCode::FAILURE
        }
    }
}
