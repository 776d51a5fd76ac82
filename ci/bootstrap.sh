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
  busybox-static cpio xz-utils zstd kmod
  debian-archive-keyring gpgv ca-certificates
  chromium fonts-dejavu-core   # the HTML report test renders report.html headless
  gcc make bc flex bison libelf-dev libssl-dev patch   # the 6.12-iommufd kernel is compiled from source (patch: its patched test tree)
  uuid-dev libcap-dev   # the kernel's VFIO (libuuid) and iommufd (libcap) selftests, linked static
)
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
