//! `keyrot check`: validates the configuration like `nginx -t`. Problems
//! print as `file:line:column: message` and the exit code is non-zero;
//! nothing is written. Secret references are resolved and every sink is
//! built (no network call); `keyrot sink test NAME` proves access. A
//! config file others could change, or a secret file (master key
//! included) others could read, is refused as the daemon refuses it.

use keyrot_core::clock::{Clock as _, SystemClock};
use std::path::Path;
use std::process::ExitCode;

use keyrot_config as config;

/// Runs the check.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match config::load_checked(path) {
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
    // Build every sink as the daemon would (CA files, owners, credentials
    // read; no network call): what fails here would fail at start.
    let mut problems = 0;
    for sc in &cfg.sinks {
        if let Err(e) = keyrot_peers::sink::build(sc) {
            eprintln!("{}: {e}", path.display());
            problems += 1;
        }
    }
    if let Err(e) = keyrot_engine::notify::transport::preflight(
        &cfg.notify,
        keyrot_config::credentials_dir_from_env(),
    ) {
        eprintln!("{}: {}", path.display(), e.message);
        problems += 1;
    }
    // Template overrides render against the documented examples now, so
    // a broken one is found before a message needs it.
    if let Some(dir) = &cfg.notify.template_dir {
        for problem in
            keyrot_engine::notify::templates::check_dir(dir, keyrot_engine::notify::examples::vars)
        {
            eprintln!("{}: notify.template_dir: {problem}", path.display());
            problems += 1;
        }
    }
    if problems > 0 {
        eprintln!("keyrot: configuration {} is invalid", path.display());
        return Ok(ExitCode::from(1));
    }
    super::output::out(&config::summary(&cfg, SystemClock.now()))?;
    super::output::outln(&format!("configuration {} is valid", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
