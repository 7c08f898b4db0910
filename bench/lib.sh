# Shared by the bench scripts (sourced, not run).
#
# Why the benches keep their scratch trees until they end: on ext4 without a journal (common on
# VMs and CI runners), an inode freed less than 60 s ago (300 s while its inode table block is
# unwritten) is skipped when a new one is allocated, so every file created after thousands were
# deleted scans past them in the kernel. Deleting a round's trees before the next round made the
# next round's file creation cost 3-10x more kernel time, landing on whichever tool ran first. A
# `kiln run` on a CI machine does not follow the deletion of gigabytes of files, so a round must
# not either.

# settle DIR: on journal-less ext4, write out what was deleted before the bench started (another
# bench's scratch) and let the 60 s window pass.
settle() {
  local src fstype
  read -r src fstype < <(findmnt -no SOURCE,FSTYPE -T "$1" 2>/dev/null) || return 0
  [ "$fstype" = ext4 ] || return 0
  ls -d /proc/fs/jbd2/"${src##*/}"-* >/dev/null 2>&1 && return 0
  echo "bench: ${src##*/} is ext4 without a journal: sync, then 60 s for recently freed inodes to age" >&2
  sync
  sleep 60
}

# put_aside ASIDE_DIR LABEL ROUNDS_LEFT PATH...: move PATHs under ASIDE_DIR/LABEL (deleted with
# the bench's scratch when it ends) while the disk has room for ROUNDS_LEFT more rounds of them
# (KILN_BENCH_KEEP_OUTPUTS=0: never); otherwise delete them now, with a note.
put_aside() {
  local aside="$1" label="$2" left="$3" need avail
  shift 3
  mkdir -p "$aside"
  need=$(( $(du -sbc "$@" 2>/dev/null | tail -1 | cut -f1) * left + (1 << 30) ))
  avail=$(df -B1 --output=avail "$aside" | tail -1)
  if [ "${KILN_BENCH_KEEP_OUTPUTS:-1}" != 0 ] && [ "$avail" -gt "$need" ]; then
    mkdir "$aside/$label" && mv "$@" "$aside/$label/"
  else
    echo "bench: $label: deleting the round's trees now (free $((avail >> 20)) MiB);" \
      "on ext4 without a journal the next round's file creation slows" >&2
    rm -rf "$@"
  fi
}

# Timing without a fork: `t=$(now)` and `$(since …)` each fork a subshell (~0.7 ms, a tenth of a
# small restore) on the clock, and a Python call between steps (~20 ms) would land inside any
# span that covers them. Read the clock in place, `t0=$EPOCHREALTIME; …; t1=$EPOCHREALTIME`, and
# compute after the clock stopped: `seconds "$t0" "$t1"`.
seconds() {
  python3 -c 'import sys; a, b = (float(x.replace(",", ".")) for x in sys.argv[1:3]); print(f"{b - a:.4f}")' "$1" "$2"
}
