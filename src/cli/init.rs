//! `keyrot init`: creates the store's master key file safely (mode 0600,
//! created exclusively, never overwriting an existing key).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use keyrot_config as config;
use keyrot_core::crypto::MasterKey;

/// Creates the master key file named by `--master-key-file`, or by
/// `store.master_key_file` in the config.
pub fn run(config_path: &Path, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let target = match file {
        Some(f) => f.to_path_buf(),
        None => config::load(config_path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context(
                "reading store.master_key_file from the configuration (or pass --master-key-file)",
            )?
            .store
            .master_key_file,
    };
    MasterKey::write_new(&target)?;
    super::output::outln(&format!(
        "created master key {} (mode 0600). Back it up apart from the store: without it the store's secrets cannot be read.",
        target.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
