#!/usr/bin/env bash
# tools/realkernel/run.sh: measure Linux's own highpte on a real i386 kernel under QEMU (issue 18).
#
#   tools/realkernel/run.sh setup                 # apt: i386 arch, gcc-multilib, qemu, cpio
#   tools/realkernel/run.sh boot MODE REGION_MB MAX [OUT]
#       MODE: highpte (the kernel as shipped) or nohigh (userpte=nohigh)
#   tools/realkernel/run.sh all                   # the runs whose JSON is checked in
#
# Not part of the default test run: a boot takes minutes to tens of minutes under QEMU TCG.
# Results: one JSON document per boot (tests/data/realkernel/*.json); `highpte calibrate`
# compares the simulator against them without booting.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${HP_RK_WORK:-$repo/target/realkernel}"
mem="${HP_RK_MEM:-8G}"
mkdir -p "$work"

setup() {
    dpkg --print-foreign-architectures | grep -qx i386 || dpkg --add-architecture i386
    apt-get update -q
    apt-get install -y --no-install-recommends gcc-multilib qemu-system-x86 cpio
}

# The newest linux-image-6.1.*-686-pae the archive has (the meta package's dependency),
# unpacked; prints the vmlinuz path.
kernel() {
    local pkg
    pkg="$(apt-cache depends linux-image-686-pae:i386 | awk '/Depends: linux-image-6/ {print $2; exit}')"
    pkg="${pkg%:i386}"
    if [ ! -d "$work/$pkg" ]; then
        (cd "$work" && apt-get download "$pkg:i386" >&2)
        dpkg-deb -x "$work/${pkg}"_*_i386.deb "$work/$pkg"
    fi
    echo "$(ls "$work/$pkg"/boot/vmlinuz-*)"
}

initramfs() {
    gcc -m32 -static -O2 -Wall -Wextra -o "$work/init" "$here/ptmeasure.c"
    local d="$work/rootfs"
    rm -rf "$d" && mkdir -p "$d" && cp "$work/init" "$d/init"
    (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"
}

# boot MODE REGION_MB MAX [OUT]
boot() {
    local mode="$1" region="$2" max="$3" out="${4:-$work/$1-$2M.json}"
    local vmlinuz extra=""
    vmlinuz="$(kernel)"
    initramfs
    [ "$mode" = nohigh ] && extra="userpte=nohigh"
    [ "$mode" = highpte ] || [ "$mode" = nohigh ] || { echo "MODE is highpte or nohigh" >&2; exit 2; }
    local log="$work/$mode-${region}M.serial"
    echo "booting $(basename "$vmlinuz") with $mem, mode $mode, region ${region} MB, up to $max children" >&2
    local t0=$SECONDS rc=0
    qemu-system-x86_64 -m "$mem" -smp 1 -cpu qemu64 -display none -monitor none -no-reboot \
        -serial "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
        -append "console=ttyS0 loglevel=1 panic=-1 $extra HP_REGION_MB=$region HP_MAX=$max HP_LABEL=$mode" \
        || rc=$?
    # isa-debug-exit: status (code << 1) | 1; the program writes 0 when it finished
    if [ "$rc" -ne 1 ]; then
        echo "QEMU ended with status $rc (expected 1: the program's clean exit); see $log" >&2
        exit 1
    fi
    python3 "$here/collect.py" "$log" "$mode" "$region" "$(basename "$vmlinuz")" \
        "$((SECONDS - t0))" "$mem" > "$out"
    echo "wrote $out ($((SECONDS - t0)) s)" >&2
}

case "${1:-}" in
    setup) setup ;;
    boot) shift; boot "$@" ;;
    all)
        dest="$repo/crates/highpte/tests/data/realkernel"
        mkdir -p "$dest"
        boot nohigh 256 64 "$dest/nohigh-256M.json"
        boot highpte 256 64 "$dest/highpte-256M.json"
        boot highpte 1024 64 "$dest/highpte-1024M.json"
        boot nohigh 1024 2000 "$dest/nohigh-1024M.json"
        ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
