#!/usr/bin/env bash
# Install the kiln binary for this runner, in order:
#   1. the runner's tool cache ($RUNNER_TOOL_CACHE/kiln/<version>/<arch>), filled by an earlier job;
#   2. the release asset for this OS/arch, refused unless it matches its published .sha256;
#   3. `cargo install` from the action's own checkout (or the repository by git tag) when there
#      is no asset for this platform or version. A checksum mismatch never falls back: it means
#      the download was tampered with or corrupted, and building something else would hide that.
# Inputs (environment): KILN_INSTALL_VERSION (latest | X.Y.Z | source), KILN_DOWNLOAD_URL (base
# of the releases; default the GitHub releases of the action's repository).
# Outputs ($GITHUB_OUTPUT): path (the binary), version. Adds the binary's directory to $GITHUB_PATH.
set -euo pipefail

say() { echo "kiln install: $*" >&2; }
fail() {
  echo "::error title=Kiln install::$*"
  exit 1
}

version="${KILN_INSTALL_VERSION:-latest}"
version="${version#v}"
[ -n "$version" ] || version=latest
valid_version() { [[ "$1" =~ ^[0-9A-Za-z][0-9A-Za-z._+-]*$ ]]; }
valid_version "$version" || fail "version '$version' is not latest, source or a release number such as 0.3.1"
action_dir="${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")" && pwd)}"
server="${GITHUB_SERVER_URL:-https://github.com}"

# --- platform -------------------------------------------------------------------------------
os="${RUNNER_OS:-$(uname -s)}"
arch="${RUNNER_ARCH:-$(uname -m)}"
case "$os" in
  Linux | linux) os_part=unknown-linux-gnu ;;
  macOS | Darwin) os_part=apple-darwin ;;
  *) fail "no kiln build for runner OS '$os' (Linux and macOS are supported)" ;;
esac
case "$arch" in
  X64 | x86_64 | amd64) cpu=x86_64 tool_arch=x64 ;;
  ARM64 | aarch64 | arm64) cpu=aarch64 tool_arch=arm64 ;;
  *) fail "no kiln build for runner architecture '$arch' (x86_64 and aarch64 are supported)" ;;
esac
target="$cpu-$os_part"
asset="kiln-$target.tar.gz"

# --- where releases live --------------------------------------------------------------------
repo="${KILN_ACTION_REPOSITORY:-}"
if [ -z "$repo" ]; then
  # Remote actions are unpacked to .../_actions/<owner>/<repo>/<ref>/<path>.
  case "$action_dir" in
    */_actions/*/*/*)
      rest="${action_dir#*/_actions/}"
      owner="${rest%%/*}"
      rest="${rest#*/}"
      repo="$owner/${rest%%/*}"
      ;;
    *) repo="${GITHUB_REPOSITORY:-}" ;;
  esac
fi
base="${KILN_DOWNLOAD_URL:-}"
if [ -z "$base" ] && [ -n "$repo" ]; then
  base="$server/$repo/releases"
fi
base="${base%/}"

tool_root="${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/tools}/kiln"
tmp="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/kiln-install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

fetch() { # url dest
  curl --fail --silent --show-error --location --retry 3 --retry-delay 1 \
    --connect-timeout 20 -o "$2" "$1"
}

# `latest` → the tag GitHub's /releases/latest redirects to, so the tool cache can hit.
if [ "$version" = latest ] && [ -n "$base" ]; then
  effective="$(curl --silent --location --head --connect-timeout 20 -o /dev/null \
    -w '%{url_effective}' "$base/latest" 2>/dev/null || true)"
  case "$effective" in
    */tag/*)
      tag="${effective##*/tag/}"
      tag="${tag#v}"
      if valid_version "$tag"; then
        version="$tag"
        say "latest release is $version"
      fi
      ;;
  esac
fi

finish() { # binary-path
  local bin="$1" v
  v="$("$bin" --version 2>/dev/null | awk '{print $NF}')"
  [ -n "$v" ] || fail "the installed kiln at $bin does not run on this runner"
  say "kiln $v at $bin"
  {
    echo "path=$bin"
    echo "version=$v"
  } >>"${GITHUB_OUTPUT:-/dev/null}"
  if [ -n "${GITHUB_PATH:-}" ]; then dirname "$bin" >>"$GITHUB_PATH"; fi
  exit 0
}

cache_put() { # version binary → sets $cached_bin
  local dir="$tool_root/$1/$tool_arch"
  mkdir -p "$dir"
  cp "$2" "$dir/kiln.tmp"
  chmod 755 "$dir/kiln.tmp"
  mv "$dir/kiln.tmp" "$dir/kiln"
  touch "$tool_root/$1/$tool_arch.complete"
  cached_bin="$dir/kiln"
}

build_from_source() { # reason → sets $built_bin
  command -v cargo >/dev/null ||
    fail "$1, and cargo is not installed to build it from source (add dtolnay/rust-toolchain or pick a released version)"
  # Outside $tmp (removed on exit): the binary must outlive this step, and a second build in
  # the same job reuses the first one's target directory.
  local src="" root="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/kiln-source"
  if [ -f "$action_dir/../Cargo.toml" ] && grep -q '^name = "kiln"' "$action_dir/../Cargo.toml"; then
    src="$(cd "$action_dir/.." && pwd)"
  fi
  if [ -n "$src" ]; then
    say "$1: building kiln from $src with cargo"
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" \
      cargo install --locked --quiet --path "$src" --root "$root" --bin kiln ||
      fail "cargo install --path $src failed (see the log above)"
  else
    [ -n "$repo" ] || fail "$1, and the action's repository is unknown (set download-url)"
    local ref=()
    [ "$version" = latest ] || [ "$version" = source ] || ref=(--tag "v$version")
    say "$1: building kiln from $server/$repo ${ref[*]:-} with cargo"
    cargo install --locked --quiet --git "$server/$repo" "${ref[@]}" --root "$root" --bin kiln kiln ||
      fail "cargo install --git $server/$repo failed (see the log above)"
  fi
  built_bin="$root/bin/kiln"
}

# --- 0. build from source on request ----------------------------------------------------------
if [ "$version" = source ]; then
  build_from_source "version: source"
  finish "$built_bin"
fi

# --- 1. tool cache --------------------------------------------------------------------------
if [ "$version" != latest ] && [ -f "$tool_root/$version/$tool_arch.complete" ] &&
  [ -x "$tool_root/$version/$tool_arch/kiln" ]; then
  say "using kiln $version from the tool cache"
  finish "$tool_root/$version/$tool_arch/kiln"
fi

# --- 2. release asset, verified ---------------------------------------------------------------
if [ -z "$base" ]; then
  build_from_source "no release location is known"
  finish "$built_bin"
fi
if [ "$version" = latest ]; then
  url="$base/latest/download/$asset"
else
  url="$base/download/v$version/$asset"
fi
say "downloading $url"
if ! fetch "$url" "$tmp/$asset"; then
  build_from_source "no release asset $asset for kiln $version"
  finish "$built_bin"
fi
fetch "$url.sha256" "$tmp/$asset.sha256" ||
  fail "$url.sha256 is missing: refusing to run a kiln binary that cannot be verified"
want="$(awk 'NR==1 {print $1}' "$tmp/$asset.sha256" | tr 'A-F' 'a-f')"
got="$(sha256_of "$tmp/$asset")"
if ! printf '%s' "$want" | grep -Eq '^[0-9a-f]{64}$'; then
  fail "$url.sha256 does not hold a sha256 checksum: refusing to install"
fi
if [ "$want" != "$got" ]; then
  fail "checksum mismatch for $asset: expected $want, got $got. The download is corrupt or was tampered with; not installing it."
fi
say "sha256 verified ($got)"
mkdir -p "$tmp/x"
tar -xzf "$tmp/$asset" -C "$tmp/x"
bin="$(find "$tmp/x" -type f -name kiln | head -n 1)"
[ -n "$bin" ] || fail "$asset holds no kiln binary"
chmod 755 "$bin"
real="$("$bin" --version 2>/dev/null | awk '{print $NF}')"
[ -n "$real" ] || fail "the kiln binary in $asset does not run on $target"
cache_put "$real" "$bin"
finish "$cached_bin"
