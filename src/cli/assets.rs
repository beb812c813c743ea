//! `keyrot generate-assets DIR` (hidden): writes the man pages and shell
//! completions generated from the clap definition of the CLI, for packaging
//! (`scripts/package.sh`). Owns only the file layout under DIR and the
//! hand-written man page sections clap knows nothing about (FILES,
//! ENVIRONMENT, SEE ALSO); the texts of commands and options come from
//! [`super::Cli`], so the pages cannot drift from `--help`.
//!
//! Layout: `DIR/man/keyrot.1` and one page per visible subcommand
//! (`keyrot-run.1`, `keyrot-rotation-show.1`, ...), and
//! `DIR/completions/{keyrot.bash,_keyrot,keyrot.fish}`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::{Generator, Shell};

/// What the top page says beyond the options: where keyrot keeps its files
/// and what the environment changes. Roff, rendered after the generated
/// sections.
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/keyrot/keyrot.toml\fR
The configuration (\fBkeyrot check\fR validates it). Reference: /usr/share/doc/keyrot/configuration.md.
.TP
\fI/etc/keyrot/conf.d/*.toml\fR
Drop-ins read after the main file, in file-name order.
.TP
\fI/etc/keyrot/master.key\fR
The store's master key, handed to the daemon as the systemd credential \fBmaster-key\fR (create it with \fBkeyrot init \-\-master\-key\-file /etc/keyrot/master.key\fR). Back it up apart from the store.
.TP
\fI/var/lib/keyrot/state.redb\fR
The store: inventory, rotations, sealed pending secrets, outbox and audit log.
.TP
\fI/run/keyrot/control.sock\fR
The control socket the other commands talk to.
.TP
\fI/usr/lib/systemd/system/keyrot.service\fR
The unit; change it with \fBsystemctl edit keyrot\fR.
.SH ENVIRONMENT
.TP
\fBKEYROT_CONFIG\fR
The configuration file, like \fB\-\-config\fR.
.TP
\fBKEYROT_SOCKET\fR
The control socket, like \fB\-\-socket\fR.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd: where \fB{ credential = "NAME" }\fR references and the master key are read from.
.TP
\fBRUST_LOG\fR
Log filter of \fBkeyrot run\fR (default \fBinfo\fR).
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd-creds\fR(1), \fBsystemd.exec\fR(5)
"#;

/// Writes every asset into `dir` and prints what it wrote.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    for path in generate(dir)? {
        super::output::outln(&path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the man pages and completions into `dir` (created if missing)
/// and returns the files written.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = man_pages(&dir.join("man"))?;
    written.extend(completions(&dir.join("completions"))?);
    Ok(written)
}

/// The command as the pages describe it: built, without the `help`
/// subcommand (clap_mangen would otherwise give it a page of its own).
fn command() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The page of `cmd`, footed `keyrot VERSION` and `keyrot manual` (a
/// subcommand has no version of its own: clap_mangen would put only its
/// name there).
fn page_of(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone())
        .source(format!("keyrot {}", env!("CARGO_PKG_VERSION")))
        .manual("keyrot manual")
}

/// `keyrot.1` with the extra sections, then one page per visible
/// subcommand, recursively.
fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = command();
    let mut written = Vec::new();
    let man = page_of(&cmd);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut page)?;
    write(&path, &page)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, dir, &mut written)?;
    }
    Ok(written)
}

/// The page of `cmd` (a subcommand) and of its own subcommands.
fn sub_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        sub_pages(sub, dir, written)?;
    }
    let man = page_of(cmd);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    write(&path, &page)?;
    written.push(path);
    Ok(())
}

/// Completions for bash, zsh and fish, under the names each shell's
/// completion directory expects once installed (`keyrot`, `_keyrot`,
/// `keyrot.fish`); bash's keeps a `.bash` suffix here to tell them apart.
fn completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let cmd = completion_command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut buf = Vec::new();
        shell
            .try_generate(&cmd, &mut buf)
            .with_context(|| format!("generating {shell} completions"))?;
        let path = dir.join(shell.file_name("keyrot"));
        write(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

/// The CLI as completions offer it: clap_complete lists hidden
/// subcommands too, so this is a copy of [`super::Cli`] with the visible
/// arguments and subcommands only (global arguments propagate on build).
fn completion_command() -> clap::Command {
    let full = super::Cli::command();
    let mut cmd = clap::Command::new("keyrot")
        .bin_name("keyrot")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .args(full.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    cmd.build();
    cmd
}

/// Writes `bytes` to `path`, replacing it.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.flush())
        .with_context(|| format!("writing {}", path.display()))
}
