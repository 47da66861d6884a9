# shellcheck shell=bash
# Shared setup for scripts/run, scripts/test, scripts/bench and .ci/run.
# Sourced, not run.  It installs what is missing and says what it does:
#   - Debian packages: QEMU, GRUB's BIOS platform + grub-mkrescue, xorriso,
#     mtools, Bochs with its BIOSes and its terminal GUI (the VT-x machine:
#     `scripts/run --vmx`, tests/tests/vmx.rs), and a C toolchain for host
#     build scripts if there is none;
#   - the Rust toolchain pinned by rust-toolchain.toml, with the
#     x86_64-unknown-none target and the rust-src, llvm-tools, rustfmt and
#     clippy components.
# The logic of running and testing lives in Rust (tests/); keep this thin.

OXEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export OXEN_ROOT
OXEN_SCRIPT="${OXEN_SCRIPT:-$(basename "$0")}"

# The Debian packages everything needs (used by .ci/run).
# shellcheck disable=SC2034
OXEN_DEBIAN_PACKAGES=(qemu-system-x86 qemu-utils grub-pc-bin grub-common xorriso mtools dosfstools fdisk curl acpica-tools bochs-term bochs bochsbios vgabios)
OXEN_BARE_TARGET=x86_64-unknown-none

oxen_say() { printf '%s: %s\n' "$OXEN_SCRIPT" "$*" >&2; }
oxen_die() {
    printf '%s: error: %s\n' "$OXEN_SCRIPT" "$*" >&2
    exit 1
}

# Prints the Debian packages whose tools are missing.
oxen_missing_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
    [ -d /usr/lib/grub/i386-pc ] || missing+=(grub-pc-bin)
    command -v grub-mkrescue >/dev/null 2>&1 || missing+=(grub-common)
    command -v xorriso >/dev/null 2>&1 || missing+=(xorriso)
    command -v mformat >/dev/null 2>&1 || missing+=(mtools)
    # Issue 5's tests make disk images (qemu-img), FAT file systems for
    # Dom0's image files (mkfs.fat), and fetch from guests' HTTP servers.
    command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
    command -v mkfs.fat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.fat ] || [ -x /sbin/mkfs.fat ] || missing+=(dosfstools)
    command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || missing+=(fdisk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # The HVM guests' ACPI tables are checked with iasl and acpiexec.
    command -v iasl >/dev/null 2>&1 || missing+=(acpica-tools)
    # Bochs, for Intel VT-x (QEMU's TCG has no VMX): the emulator, its BIOS,
    # the VGA BIOS it links to, and a display plugin.  Debian builds no
    # "nogui"; the term GUI draws on a pty of its own, so no display is
    # needed (tests/src/bochs.rs).  bochs-term on the same apt-get line (and
    # before bochs) keeps apt from choosing bochs-wx for bochs's GUI.
    compgen -G "/usr/lib/*/bochs/plugins/libbx_term_gui.so*" >/dev/null || missing+=(bochs-term)
    command -v bochs >/dev/null 2>&1 || missing+=(bochs)
    [ -f /usr/share/bochs/BIOS-bochs-latest ] || missing+=(bochsbios)
    [ -f /usr/share/vgabios/vgabios.bin ] || missing+=(vgabios)
    # Host build scripts and test binaries link with the system C compiler.
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    echo "${missing[@]}"
}

# `apt-get install -y PKGS...`, matching qemu-utils to qemu-system-x86:
# some machines come with a newer qemu-utils (a backport) whose package
# Breaks the qemu-system-common that Debian's qemu-system-x86 needs, and
# apt then refuses the whole install.  The two must come from one QEMU
# release, so qemu-utils is pinned to qemu-system-x86's candidate version
# (a downgrade where it has to be).
oxen_apt_install() {
    local pkgs=("$@") qver uver i
    qver="$(apt-cache policy qemu-system-x86 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
    uver="$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)"
    if [ -n "$qver" ] && [ "$qver" != "(none)" ] && [ -n "$uver" ] && [ "$uver" != "$qver" ]; then
        oxen_say "qemu-utils $uver is installed; Debian's qemu-system-x86 is $qver: installing qemu-utils $qver beside it"
        for i in "${!pkgs[@]}"; do
            [ "${pkgs[$i]}" = qemu-utils ] && unset 'pkgs[i]'
        done
        pkgs=("${pkgs[@]}" "qemu-utils=$qver")
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades "${pkgs[@]}"
}

oxen_install_packages() {
    local missing
    missing="$(oxen_missing_packages)"
    [ -z "$missing" ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        oxen_die "missing tools from the Debian packages: $missing (this is not a Debian system: install the equivalents by hand)"
    fi
    if [ "$(id -u)" -ne 0 ]; then
        oxen_die "missing Debian packages: $missing
    install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing"
    fi
    oxen_say "installing missing Debian packages: $missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -q || oxen_die "apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    oxen_apt_install $missing \
        || oxen_die "apt-get could not install: $missing"
    missing="$(oxen_missing_packages)"
    [ -z "$missing" ] || oxen_die "still missing after apt-get install: $missing"
}

# The toolchain channel from rust-toolchain.toml.
oxen_toolchain() {
    sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$OXEN_ROOT/rust-toolchain.toml" | head -n1
}

oxen_install_rust() {
    if ! command -v rustup >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v rustup >/dev/null 2>&1 || oxen_die "rustup is not installed (Debian 12 has no package for it): install it from https://rustup.rs, then run this again"
    local tc
    tc="$(oxen_toolchain)"
    [ -n "$tc" ] || oxen_die "no channel in $OXEN_ROOT/rust-toolchain.toml"
    # rust-toolchain.toml makes cargo pick this toolchain (and recent rustup
    # installs it on first use), but install it explicitly so a fresh machine
    # gets the target and components too, and says so.
    if ! rustup run "$tc" rustc --version >/dev/null 2>&1; then
        oxen_say "installing the Rust toolchain $tc (rust-toolchain.toml)"
        (cd "$OXEN_ROOT" && rustup toolchain install) \
            || rustup toolchain install "$tc" --profile minimal \
            || oxen_die "rustup could not install toolchain $tc"
    fi
    if ! rustup target list --installed --toolchain "$tc" 2>/dev/null | grep -qx "$OXEN_BARE_TARGET"; then
        oxen_say "adding the Rust target $OXEN_BARE_TARGET to $tc"
        rustup target add --toolchain "$tc" "$OXEN_BARE_TARGET" || oxen_die "rustup could not add $OXEN_BARE_TARGET"
    fi
    local installed want=() c
    installed="$(rustup component list --installed --toolchain "$tc" 2>/dev/null)"
    for c in rust-src llvm-tools rustfmt clippy; do
        # Installed components are listed as e.g. llvm-tools-x86_64-unknown-linux-gnu.
        grep -Eq "^$c(-preview)?(-[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?)?\$" <<<"$installed" || want+=("$c")
    done
    if [ ${#want[@]} -gt 0 ]; then
        oxen_say "adding Rust components to $tc: ${want[*]}"
        rustup component add --toolchain "$tc" "${want[@]}" || oxen_die "rustup could not add: ${want[*]}"
    fi
}

# cargo-fuzz, for scripts/fuzz (the fuzz/ targets), if it is missing.
oxen_install_cargo_fuzz() {
    if command -v cargo-fuzz >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
        return 0
    fi
    oxen_say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    (cd "$OXEN_ROOT" && cargo install cargo-fuzz --locked) || oxen_die "could not install cargo-fuzz"
}

# Everything, in order.
oxen_setup() {
    oxen_say "checking the Debian packages and the Rust toolchain"
    oxen_install_packages
    oxen_install_rust
    cd "$OXEN_ROOT" || oxen_die "cannot cd to $OXEN_ROOT"
}

# Builds one of the harness binaries (tests/src/bin) in release mode and
# prints its path.
oxen_build_tool() {
    local bin="$1"
    oxen_say "building $bin (cargo build --release -p oxen-tests --bin $bin)"
    (cd "$OXEN_ROOT" && cargo build --release -q -p oxen-tests --bin "$bin") >&2 \
        || oxen_die "could not build $bin"
    printf '%s\n' "$OXEN_ROOT/target/release/$bin"
}
