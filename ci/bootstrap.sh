#!/usr/bin/env bash
# Installs, from the Debian archive configured on this machine, what isolab
# needs to build guest images and boot them (QEMU, libvirt, busybox, kmod,
# cpio, compressors), to compile the source-built catalog kernel (gcc, make,
# flex, bison, …), to check the HTML report (headless Chromium, a font),
# and creates the accounts libvirt and the tests expect.
# Idempotent: when everything is present it only runs dpkg-query and getent.
set -euo pipefail

PACKAGES=(
  qemu-system-x86 qemu-utils
  libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients pkg-config
  busybox-static cpio xz-utils zstd kmod binutils   # binutils: strip, for the agent in the initramfs
  debian-archive-keyring gpgv ca-certificates
  chromium fonts-dejavu-core   # the HTML report test renders report.html headless
  gcc make bc flex bison libelf-dev libssl-dev patch   # the 7.3-iommufd kernel is compiled from source (patch: its patched test tree)
  uuid-dev libcap-dev   # the kernel's VFIO (libuuid) and iommufd (libcap) selftests, linked static
  python3-venv          # ci/kcidb-validate: KCIDB's own validator (kcidb-io from PyPI) in a private virtualenv
  iproute2 util-linux procps   # ci/lab-hosts: network namespaces and veths (ip), setpriv/runuser, pkill/pgrep
)
# What this script can install: Debian's packages, by name, with apt. Ubuntu (e.g. GitHub's
# ubuntu-24.04 runners) uses the same names; its apt has no Debian kernels, so isolab needs a
# Debian mirror there (ISOLAB_DEBIAN_MIRROR / --debian-mirror). Elsewhere it says what to install.
os_name=unknown; os_id=; os_like=
if [[ -r /etc/os-release ]]; then
  os_name=$(. /etc/os-release; echo "${PRETTY_NAME:-$ID}"); os_id=$(. /etc/os-release; echo "${ID:-}")
  os_like=$(. /etc/os-release; echo "${ID_LIKE:-}")
fi
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  cat >&2 <<EOF
bootstrap: $os_name has no apt/dpkg; this script installs Debian packages only. Install the equivalents:
  - QEMU for x86_64 (qemu-system-x86_64, qemu-img) and libvirt with its QEMU driver, headers and pkg-config
  - busybox (static), cpio, xz, zstd, kmod
  - apt-get, gpgv and Debian's archive keyring at /usr/share/keyrings/debian-archive-keyring.gpg
    (isolab fetches Debian's kernels and QEMU 10 with a private apt configuration, verified by that keyring)
  - for the source-built kernel and selftests: gcc make bc flex bison, libelf and OpenSSL headers, patch,
    static libuuid and libcap; for the tests: python3 with venv, chromium and a font
  - accounts: a libvirt-qemu user and group, and an unprivileged user for the tests (isolab-test)
Then name a Debian mirror: export ISOLAB_DEBIAN_MIRROR=<URI of a Debian archive> (or --debian-mirror URI).
EOF
  exit 1
fi
if [[ "$os_id" != debian ]]; then
  echo "bootstrap: $os_name is not Debian: installing by Debian's package names${os_like:+ ($os_id is like $os_like)};" \
       "kernels and QEMU 10 need a Debian mirror (ISOLAB_DEBIAN_MIRROR or --debian-mirror URI)" >&2
  # Ubuntu's chromium is a snap stub that cannot run headless in CI; it is for the tests only.
  keep=(); for p in "${PACKAGES[@]}"; do [[ "$p" == chromium ]] || keep+=("$p"); done; PACKAGES=("${keep[@]}")
fi

# Unprivileged account used by the image tests (`runuser -u isolab-test`) and by the
# libvirt daemon test (a session-mode libvirtd with private directories runs as it).
TEST_USER=isolab-test

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done
need_qemu_user=0; getent group libvirt-qemu >/dev/null || need_qemu_user=1
getent passwd libvirt-qemu >/dev/null || need_qemu_user=1
need_test_user=0; getent passwd "$TEST_USER" >/dev/null || need_test_user=1

if (( ${#missing[@]} == 0 && need_qemu_user == 0 && need_test_user == 0 )); then
  echo "bootstrap: all present"
  exit 0
fi

if (( EUID != 0 )); then
  echo "bootstrap: must run as root to install: ${missing[*]:-}" \
       "$( ((need_qemu_user)) && echo 'libvirt-qemu user/group')" \
       "$( ((need_test_user)) && echo "$TEST_USER user")" >&2
  exit 1
fi

if (( ${#missing[@]} > 0 )); then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! getent group libvirt-qemu >/dev/null; then
  groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home \
          --shell /usr/sbin/nologin libvirt-qemu
fi
if ! getent passwd "$TEST_USER" >/dev/null; then
  useradd --create-home --shell /bin/bash "$TEST_USER"
fi
echo "bootstrap: done"
