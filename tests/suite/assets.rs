//! `keyrot generate-assets DIR` with the real binary: it writes the man
//! pages (one for keyrot, one per visible subcommand) and the bash, zsh and
//! fish completions the Debian package installs; the pages name the main
//! subcommands and the files keyrot uses; the command itself stays out of
//! `--help`, the pages and the completions.

use std::fs;
use std::path::Path;
use std::process::Command;

/// The binary under test.
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keyrot")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn generate_assets_writes_man_pages_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("assets");
    let out = Command::new(bin())
        .args(["generate-assets"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate-assets failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();

    // The top page: generated sections, the subcommands, the hand-written ones.
    let man = read(&dir.join("man/keyrot.1"));
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{man}");
    assert!(man.contains(".TH keyrot 1"), "{man}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "FILES",
        "ENVIRONMENT",
        "VERSION",
    ] {
        assert!(
            man.contains(&format!(".SH {section}")),
            "no {section} section:\n{man}"
        );
    }
    for sub in [
        "run", "check", "init", "status", "keys", "rotate", "history", "plan", "rotation", "sink",
        "store",
    ] {
        assert!(
            man.contains(&format!("keyrot\\-{sub}(1)")),
            "keyrot.1 does not name `{sub}`:\n{man}"
        );
    }
    assert!(man.contains("/etc/keyrot/keyrot.toml"), "{man}");
    assert!(man.contains(env!("CARGO_PKG_VERSION")), "{man}");

    // One page per visible subcommand, nested ones included.
    for page in [
        "keyrot-run.1",
        "keyrot-check.1",
        "keyrot-rotate.1",
        "keyrot-rotation.1",
        "keyrot-rotation-resume.1",
        "keyrot-store-backup.1",
    ] {
        let p = dir.join("man").join(page);
        assert!(p.is_file(), "{page} missing; wrote:\n{listed}");
        assert!(
            listed.contains(&p.display().to_string()),
            "{page} not listed:\n{listed}"
        );
    }
    let run = read(&dir.join("man/keyrot-run.1"));
    assert!(run.contains("\\-\\-log\\-format"), "{run}");

    // The hidden command and clap's help subcommand get no page.
    let pages: Vec<String> = fs::read_dir(dir.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("generate") || p.contains("help")),
        "{pages:?}"
    );

    // Completions for the three shells, under their installed names.
    let bash = read(&dir.join("completions/keyrot.bash"));
    assert!(bash.contains("complete -F _keyrot"), "{bash}");
    let zsh = read(&dir.join("completions/_keyrot"));
    assert!(zsh.starts_with("#compdef keyrot"), "{zsh}");
    let fish = read(&dir.join("completions/keyrot.fish"));
    assert!(fish.contains("complete -c keyrot"), "{fish}");
    for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
        assert!(text.contains("rotate"), "{shell} completion lacks `rotate`");
        assert!(
            text.contains("log-format"),
            "{shell} completion lacks --log-format"
        );
        assert!(
            !text.contains("generate-assets"),
            "{shell} completion offers the hidden command"
        );
    }

    // The command is hidden from --help.
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("rotate"), "{help}");
    assert!(!help.contains("generate-assets"), "{help}");
}
