#!/usr/bin/env bash
# toolchains/sysroot.sh DEBARCH: a Debian bookworm sysroot for arm64 or armhf with python3, python3-numpy and the
# Python headers, unpacked (not installed: no target code runs) into $ONNXSTREAM_CACHE/sysroots/DEBARCH.
# It gives the cross build its target Python headers and the QEMU tests their `qemu-* -L SYSROOT` root.
# Prints the sysroot path. Needs debootstrap (root, as debootstrap needs it) or falls back to apt-get download.
set -euo pipefail
arch=${1:?usage: sysroot.sh arm64|armhf}
cache=${ONNXSTREAM_CACHE:-$HOME/.cache/onnxstream}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/sysroots/$arch
case $arch in arm64) triplet=aarch64-linux-gnu ;; armhf) triplet=arm-linux-gnueabihf ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi

mkdir -p "$cache/sysroots"
# Stage 1 of a foreign debootstrap downloads python3 & co. with all dependencies and unpacks the base system.
if [ ! -e "$root.tmp/.stage1" ]; then
  rm -rf "$root.tmp"
  debootstrap --foreign --variant=minbase --arch="$arch" --include=python3,python3-numpy,libpython3.11-dev \
    bookworm "$root.tmp" "$mirror" >&2
  touch "$root.tmp/.stage1"
fi
# Stage 2 would run target code; instead unpack every downloaded package (that is all QEMU needs).
for deb in "$root.tmp"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root.tmp"; done
# update-alternatives never ran: make numpy's BLAS/LAPACK links by hand, relative so they work under -L.
lib=$root.tmp/usr/lib/$triplet
for name in blas/libblas.so.3 lapack/liblapack.so.3; do
  [ -e "$lib/$name" ] && ln -sf "$name" "$lib/$(basename "$name")"
done
test -x "$root.tmp/usr/bin/python3.11" && test -e "$root.tmp/usr/include/$triplet/python3.11/pyconfig.h"
touch "$root.tmp/.complete"
rm -rf "$root" && mv "$root.tmp" "$root"
echo "$root"
