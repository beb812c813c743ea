//! `keyrot check`: validates the configuration like `nginx -t`. Problems
//! print as `file:line:column: message` and the exit code is non-zero;
//! nothing is written.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

/// Runs the check.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("keyrot: configuration {} is invalid", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    let secret_problems = config::check_secrets(&cfg);
    if !secret_problems.is_empty() {
        for d in &secret_problems {
            eprintln!("{d}");
        }
        eprintln!("keyrot: configuration {} is invalid", path.display());
        return Ok(ExitCode::from(1));
    }
    print!("{}", config::summary(&cfg, jiff::Timestamp::now()));
    println!("configuration {} is valid", path.display());
    Ok(ExitCode::SUCCESS)
}
