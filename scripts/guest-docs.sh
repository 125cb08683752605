#!/bin/sh
# Run in the guest by `make docs`: the example output the README shows, from
# real runs of the mmscope command. Writes into the directory $1.
set -e
out=$1
mkdir -p "$out"
cd /tmp
mmscope maps self >"$out/maps.txt"
mmscope trace -o "$out/trace.txt" --svg "$out/trace.svg" -- malloc-touch >"$out/trace-stdout.txt"
mmscope lazy 256K --rows 8 >"$out/lazy.txt"
mmscope lazy 256K --rows 4 --pattern random >"$out/lazy-random.txt"
