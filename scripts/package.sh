#!/usr/bin/env bash
# Builds keyrot's Debian package and prints the path of the .deb:
#   1. the release binary (`cargo build --release --locked`);
#   2. man pages and bash/zsh/fish completions from the CLI definition
#      (`keyrot generate-assets target/assets`);
#   3. the .deb with cargo-deb (`cargo deb --no-build`), from the
#      [package.metadata.deb] table of Cargo.toml.
# cargo-deb is installed once, pinned, into a cache directory outside the
# repository: $KEYROT_TOOLS_DIR, or ${XDG_CACHE_HOME:-~/.cache}/keyrot/tools
# (idempotent, like scripts/peers.sh); `--tools-only` installs it and
# stops there. Progress goes to stderr; stdout is only the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${KEYROT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyrot/tools}"
cargo_deb_pin="3.8.0"
stamp="$cache/cargo-deb.installed"

if [[ ! -x "$cache/bin/cargo-deb" || ! -f "$stamp" || "$(cat "$stamp")" != "$cargo_deb_pin" ]]; then
  mkdir -p "$cache"
  # Serialise concurrent installs (two CI jobs on one machine).
  exec 9>"$cache/.lock"
  flock 9
  if [[ ! -x "$cache/bin/cargo-deb" || ! -f "$stamp" || "$(cat "$stamp")" != "$cargo_deb_pin" ]]; then
    echo "package.sh: installing cargo-deb $cargo_deb_pin into $cache" >&2
    cargo install "cargo-deb@$cargo_deb_pin" --locked --root "$cache" >&2
    echo "$cargo_deb_pin" > "$stamp"
  fi
  exec 9>&-
fi
if [[ "${1:-}" == "--tools-only" ]]; then exit 0; fi

echo "package.sh: building the release binary" >&2
cargo build --release --locked >&2

# Fresh each time: a removed subcommand must not leave its page behind.
# The path is fixed (not $CARGO_TARGET_DIR): Cargo.toml's assets name it.
rm -rf target/assets
cargo run --release --locked --quiet -- generate-assets target/assets >/dev/null

echo "package.sh: building the .deb" >&2
out="$(PATH="$cache/bin:$PATH" cargo deb --no-build)"
deb="$(printf '%s\n' "$out" | tail -n 1)"
if [[ ! -f "$deb" ]]; then
  echo "package.sh: cargo deb did not name a .deb: $out" >&2
  exit 1
fi
echo "$deb"
