//! The `keyrot` binary: parse arguments, run, map the result to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match keyrot::cli::main() {
        Ok(code) => code,
        // The reader went away (`keyrot history --json | head`): a normal end.
        Err(err) if keyrot::cli::output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // An error may quote a peer or a caller: no terminal sequences.
            let text = format!("keyrot: {err:#}");
            eprintln!("{}", keyrot_core::escape::controls_but_newlines(&text));
            ExitCode::FAILURE
        }
    }
}
