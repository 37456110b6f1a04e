#!/usr/bin/env bash
# toolchains/sysroot.sh DEBARCH: a Debian bookworm sysroot for arm64 or armhf with python3, python3-numpy and the
# Python headers, unpacked (not installed: no target code runs) into $ONNXSTREAM_CACHE/sysroots/DEBARCH.
# It gives the cross build its target Python headers and the QEMU tests their `qemu-* -L SYSROOT` root.
# Prints the sysroot path. Needs debootstrap and dpkg-deb, as root (debootstrap needs it), unless cached.
# Built in DEBARCH.tmp (stage 1 marked done by .stage1), checked, marked .complete, then renamed into place:
# only a sysroot with .complete is ever used, and an interrupted run is resumed or redone by the next one.
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"
arch=${1:?usage: sysroot.sh arm64|armhf}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/sysroots/$arch
case $arch in arm64) triplet=aarch64-linux-gnu ;; armhf) triplet=arm-linux-gnueabihf ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi
need_sysroot_tools "$arch"
check_prerequisites

mkdir -p "$cache/sysroots"
# Stage 1 of a foreign debootstrap downloads python3 & co. with all dependencies and unpacks the base system.
if [ ! -e "$root.tmp/.stage1" ]; then
  rm -rf "$root.tmp"
  debootstrap --foreign --variant=minbase --arch="$arch" --include=python3,python3-numpy,libpython3.11-dev \
    bookworm "$root.tmp" "$mirror" >&2
  touch "$root.tmp/.stage1"
fi
# Stage 2 would run target code; instead unpack every downloaded package (that is all QEMU needs).
debs=("$root.tmp"/var/cache/apt/archives/*.deb)
if [ ! -e "${debs[0]}" ]; then
  rm -rf "$root.tmp"
  echo "error: debootstrap downloaded no packages into $root.tmp; run again" >&2
  exit 1
fi
for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$root.tmp"; done
# update-alternatives never ran: make numpy's BLAS/LAPACK links by hand, relative so they work under -L.
lib=$root.tmp/usr/lib/$triplet
for name in blas/libblas.so.3 lapack/liblapack.so.3; do
  if [ -e "$lib/$name" ]; then ln -sf "$name" "$lib/$(basename "$name")"; fi
done
for need in usr/bin/python3.11 usr/include/python3.11/Python.h usr/include/$triplet/python3.11/pyconfig.h; do
  if [ ! -e "$root.tmp/$need" ]; then
    rm -rf "$root.tmp"
    echo "error: the $arch sysroot lacks $need after unpacking (mirror $mirror); run again" >&2
    exit 1
  fi
done
touch "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$root"
