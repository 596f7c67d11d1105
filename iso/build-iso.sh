#!/usr/bin/env bash
# build-iso.sh [-o OUT.iso] [--print-dir]
#
# Builds the p2v capture ISO: a hybrid BIOS/UEFI image (CD and USB stick)
# holding the Debian kernel and a busybox initramfs with the p2v binary,
# kernel modules for server disks and NICs, ssh, whiptail and the live
# scripts of this folder.  Everything comes from the Debian packages
# installed on this host (see .ci/install-deps); nothing is downloaded.
#
# The result is cached outside the repo, keyed by a hash of every input
# (this folder, the p2v binary, the kernel, the versions of the Debian
# packages copied in, P2V_ISO_EXTRA): a second run with the same inputs
# copies the cached ISO (about a second).  Cache layout:
#   ${P2V_ISO_CACHE:-/var/cache/p2v-iso}/HASH/p2v-capture.iso
#                                         HASH/vmlinuz, HASH/initrd.img
#                                         HASH/contents.txt, HASH/build.log
# An entry is built as .HASH.partial.PID and renamed when complete.
#
#   -o OUT         also copy the ISO to OUT (written as OUT.partial, renamed)
#   --print-dir    print the cache directory instead of the ISO path
# Environment:
#   P2V_BIN        the p2v binary to ship (default: ../p2v)
#   P2V_ISO_KVER   kernel version (default: the newest in /boot with modules)
#   P2V_ISO_EXTRA  a directory copied to /p2v/ on the ISO (ssh keys,
#                  known_hosts: p2v.ssh_key=/p2v/id_ed25519 on the cmdline)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
OUT=""
PRINT=iso
while [[ $# -gt 0 ]]; do
    case $1 in
        -o) OUT=${2:?-o needs a file}; shift 2 ;;
        --print-dir) PRINT=dir; shift ;;
        *) echo "usage: $0 [-o OUT.iso] [--print-dir]" >&2; exit 2 ;;
    esac
done

log() { printf '[build-iso %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

P2V=${P2V_BIN:-$TOP/p2v}
[[ -x $P2V ]] || die "cannot find the p2v binary '$P2V': run make first"
CACHE=${P2V_ISO_CACHE:-/var/cache/p2v-iso}
EXTRA=${P2V_ISO_EXTRA:-}
[[ -z $EXTRA || -d $EXTRA ]] || die "P2V_ISO_EXTRA '$EXTRA' is not a directory"

if [[ -n ${P2V_ISO_KVER:-} ]]; then
    KVER=$P2V_ISO_KVER
else
    KVER=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|.*/vmlinuz-||' | sort -V |
        while read -r v; do [[ -d /lib/modules/$v ]] && echo "$v"; done | tail -1)
fi
[[ -n $KVER && -f /boot/vmlinuz-$KVER && -d /lib/modules/$KVER ]] ||
    die "no Debian kernel with modules found (install linux-image-amd64)"

for t in grub-mkrescue xorriso mformat cpio zstd depmod modprobe ldd busybox; do
    command -v "$t" >/dev/null || die "missing tool '$t' (run .ci/install-deps)"
done
BUSYBOX=$(command -v busybox)
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
    die "'$BUSYBOX' is not static: install busybox-static"
[[ -d /usr/lib/grub/i386-pc && -d /usr/lib/grub/x86_64-efi ]] ||
    die "grub-pc-bin and grub-efi-amd64-bin are needed for a BIOS+UEFI image"

# Debian packages whose files go into the image: their versions key the cache.
DEB_PKGS="busybox-static kmod util-linux e2fsprogs openssh-client whiptail
  libnewt0.52 libslang2 ncurses-base libc6 grub-pc-bin grub-efi-amd64-bin
  grub-common xorriso firmware-linux-free"
HASH=$({
    cd "$HERE" && cat build-iso.sh init p2v-live udhcpc.script grub.cfg
    sha256sum "$P2V" "/boot/vmlinuz-$KVER" | cut -d' ' -f1
    # shellcheck disable=SC2086
    dpkg-query -W -f='${Package} ${Version}\n' $DEB_PKGS 2>/dev/null || true
    ldd "$P2V" | awk '$3 ~ /^\// {print $3}' | xargs -r sha256sum
    if [[ -n $EXTRA ]]; then (cd "$EXTRA" && find . -type f -print0 | sort -z | xargs -0r sha256sum); fi
} | sha256sum | cut -c1-12)

ENTRY=$CACHE/$HASH
emit() {
    if [[ -n $OUT ]]; then
        cp --reflink=auto "$ENTRY/p2v-capture.iso" "$OUT.partial"
        mv -f "$OUT.partial" "$OUT"
        log "wrote $OUT ($(du -m "$OUT" | cut -f1) MiB)"
    fi
    if [[ $PRINT == dir ]]; then echo "$ENTRY"; else echo "$ENTRY/p2v-capture.iso"; fi
}
if [[ -f $ENTRY/p2v-capture.iso ]]; then
    emit
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [[ -f $ENTRY/p2v-capture.iso ]]; then   # built while we waited
    emit
    exit 0
fi

START=$(date +%s)
WORK=$CACHE/.$HASH.partial.$$
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
ISO=$WORK/iso
BUILD_LOG=$WORK/build.log
log "building the capture ISO $HASH (kernel $KVER) in $WORK"

# ---------------------------------------------------------------------------
# The initramfs root: merged /usr like Debian 12.
mkdir -p "$ROOT"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64,share} \
    "$ROOT"/{dev,proc,sys,run,tmp,mnt,media,root,etc,var}
ln -s usr/bin "$ROOT/bin"
ln -s usr/sbin "$ROOT/sbin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"
ln -s ../run "$ROOT/var/run"
chmod 1777 "$ROOT/tmp"
chmod 700 "$ROOT/root"

# Place a host file at the same path in the image (/lib/x -> /usr/lib/x).
image_path() {
    case $1 in
        /usr/*) echo "$ROOT$1" ;;
        /bin/* | /sbin/* | /lib/* | /lib64/*) echo "$ROOT/usr$1" ;;
        *) echo "$ROOT$1" ;;
    esac
}
copy_file() {
    local src=$1 dst
    dst=$(image_path "${2:-$1}")
    mkdir -p "$(dirname "$dst")"
    rm -f "$dst"
    cp -L --preserve=mode "$src" "$dst"
}
# A dynamically linked program and the shared libraries ldd names.
copy_program() {
    local src=$1 lib
    copy_file "$src" "${2:-$1}"
    for lib in $(ldd "$src" 2>/dev/null | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        [[ -e $(image_path "$lib") ]] || copy_file "$lib"
    done
}

# busybox first (every applet a symlink), real programs replace applets.
cp "$BUSYBOX" "$ROOT/usr/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
    case $applet in
        bin/* | sbin/*) dst=$ROOT/usr/$applet ;;
        *) dst=$ROOT/$applet ;;
    esac
    [[ -e $dst || -L $dst ]] || ln -s /usr/bin/busybox "$dst"
done

for prog in /usr/bin/kmod /usr/sbin/blkid /usr/sbin/mke2fs /usr/bin/ssh \
    /usr/bin/whiptail /usr/sbin/sfdisk /usr/sbin/wipefs; do
    [[ -x $prog ]] || die "missing program '$prog' (run .ci/install-deps)"
    copy_program "$prog"
done
for name in modprobe insmod rmmod lsmod depmod modinfo; do
    ln -sf /usr/bin/kmod "$ROOT/usr/sbin/$name"
done
ln -sf mke2fs "$ROOT/usr/sbin/mkfs.ext4"
copy_program "$P2V" /usr/bin/p2v
copy_file /etc/mke2fs.conf

# terminfo for whiptail (slang) on VGA and on serial terminals
for ti in l/linux v/vt100 v/vt102 v/vt220 x/xterm x/xterm-256color d/dumb s/screen a/ansi; do
    for dir in /lib/terminfo /usr/share/terminfo; do
        if [[ -f $dir/$ti ]]; then copy_file "$dir/$ti" "/usr/share/terminfo/$ti"; break; fi
    done
done
[[ -f $ROOT/usr/share/terminfo/l/linux && -f $ROOT/usr/share/terminfo/v/vt102 ]] ||
    die "terminfo for 'linux' and 'vt102' not found (ncurses-base)"

# ---------------------------------------------------------------------------
# Kernel modules: server storage, NICs, the file systems a target may hold,
# USB keyboards and sticks; modprobe's own dependency lists pull the rest.
MODULES="
  ahci ata_piix sd_mod sr_mod nvme megaraid_sas mpt3sas mptsas mptspi hpsa
  smartpqi aacraid isci vmw_pvscsi virtio_blk virtio_scsi virtio_pci
  usb_storage uas xhci_pci ehci_pci ohci_pci uhci_hcd usbhid hid_generic
  md_mod raid0 raid1 raid10 raid456 dm_mod dm_mirror
  e1000 e1000e igb igbvf ixgbe ixgbevf i40e ice tg3 bnx2 bnx2x bnxt_en
  virtio_net r8169 vmxnet3 be2net
  ext4 vfat exfat isofs nls_utf8 nls_cp437 nls_iso8859_1 efivarfs loop
  virtio_console virtio_rng
"
MODDIR=/lib/modules/$KVER
dest_mod=$ROOT/usr/lib/modules/$KVER
mkdir -p "$dest_mod"
for m in $MODULES; do
    deps=$(modprobe -S "$KVER" --show-depends "$m" 2>/dev/null) ||
        die "kernel $KVER has no module '$m'"
    echo "$deps" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
        [[ -e $ROOT/usr$ko || -e $ROOT$ko ]] || copy_file "$ko"
    done
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [[ -f $MODDIR/$f ]] && cp "$MODDIR/$f" "$dest_mod/"
done
depmod -b "$ROOT" "$KVER" || die "depmod failed for the image"

# Firmware the chosen modules ask for, where the host has it.  Debian ships
# most NIC/RAID firmware in non-free-firmware; without that apt component
# only firmware-linux-free's files are available.
fw_have=0 fw_missing=0
for ko in $(find "$dest_mod" -name '*.ko*'); do
    for fw in $(modinfo -F firmware "$ko" 2>/dev/null); do
        if [[ -f /lib/firmware/$fw ]]; then
            [[ -f $ROOT/usr/lib/firmware/$fw ]] || copy_file "/lib/firmware/$fw"
            fw_have=$((fw_have + 1))
        else
            fw_missing=$((fw_missing + 1))
        fi
    done
done
log "firmware: $fw_have files copied, $fw_missing named by modules but not installed on this host"

# ---------------------------------------------------------------------------
# The live system itself.
install -m 755 "$HERE/init" "$ROOT/init"
install -m 755 "$HERE/p2v-live" "$ROOT/usr/sbin/p2v-live"
install -D -m 755 "$HERE/udhcpc.script" "$ROOT/usr/share/udhcpc/default.script"
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n127.0.1.1 p2v-capture\n::1 localhost\n' >"$ROOT/etc/hosts"
echo p2v-capture >"$ROOT/etc/hostname"
printf 'PS1='"'"'p2v-capture:\\w# '"'"'\nexport TERMINFO=/usr/share/terminfo\n' >"$ROOT/etc/profile"
touch "$ROOT/etc/fstab"
P2V_VERSION=$("$P2V" --version 2>/dev/null | head -1 || echo "p2v")
printf 'hash=%s\nkernel=%s\np2v=%s\nbuilt=%s\n' "$HASH" "$KVER" "$P2V_VERSION" \
    "$(date -u +%FT%TZ)" >"$ROOT/etc/p2v-live-release"

# Sanity: the shipped programs find all their libraries inside the image.
for prog in /usr/bin/p2v /usr/bin/ssh /usr/bin/whiptail /usr/bin/kmod /usr/sbin/mke2fs /usr/sbin/blkid; do
    chroot "$ROOT" /usr/bin/ldd "$prog" 2>/dev/null | grep -q 'not found' &&
        die "'$prog' lacks libraries in the image"
done
missing=$(chroot "$ROOT" /usr/lib64/ld-linux-x86-64.so.2 --list /usr/bin/p2v 2>&1 | grep 'not found' || true)
[[ -z $missing ]] || die "p2v lacks libraries in the image: $missing"

(cd "$ROOT" && find . | LC_ALL=C sort) >"$WORK/contents.txt"
log "initramfs: $(du -sm "$ROOT" | cut -f1) MiB uncompressed, $(wc -l <"$WORK/contents.txt") entries"

mkdir -p "$ISO/boot/grub"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet) | zstd -q -T0 -12 >"$ISO/boot/initrd.img"
cp "/boot/vmlinuz-$KVER" "$ISO/boot/vmlinuz"
cp "$HERE/grub.cfg" "$ISO/boot/grub/grub.cfg"
echo "$HASH" >"$ISO/p2v-capture.id"
cp "$WORK/root/etc/p2v-live-release" "$ISO/p2v-live-release"
if [[ -n $EXTRA ]]; then
    mkdir -p "$ISO/p2v"
    cp -r "$EXTRA/." "$ISO/p2v/"
fi

# grub-mkrescue: El Torito for BIOS (i386-pc) and UEFI (an ESP image),
# plus an MBR/GPT hybrid so the same file boots when dd'ed to a USB stick.
grub-mkrescue -o "$WORK/p2v-capture.iso" \
    --modules="part_msdos part_gpt iso9660 serial terminal" \
    "$ISO" -- -volid P2V_CAPTURE >>"$BUILD_LOG" 2>&1 ||
    { tail -20 "$BUILD_LOG" >&2; die "grub-mkrescue failed"; }

cp "$ISO/boot/vmlinuz" "$ISO/boot/initrd.img" "$WORK/"
rm -rf "$ROOT" "$ISO"
SECS=$(($(date +%s) - START))
log "built in ${SECS}s: $(du -m "$WORK/p2v-capture.iso" | cut -f1) MiB"
echo "build_seconds=$SECS" >>"$BUILD_LOG"
mv "$WORK" "$ENTRY"
trap - EXIT
emit
