#!/usr/bin/env bash
# Check and gather your own files for the guest (`make trace CMD=...`, `make
# shell FILES=...`), before anything is built or booted: a program that is
# missing, a directory, a script for an interpreter the guest does not have, a
# 32-bit or foreign-architecture binary each stop here with one sentence.
#   scripts/stage-files.sh DIR CMD FILES
# DIR is emptied and receives the files as the guest will see them from its
# root: a relative path keeps its place under /files (the working directory in
# the guest), an absolute one keeps its path (a program found on PATH, such as
# /usr/bin/ls, stays /usr/bin/ls), except in the places the guest uses itself
# (/tmp, /bin, ...) and files right under /: those go to /files by their name.
# CMD (may be empty: nothing to run) and FILES are split into words as a shell
# would split them (quotes and backslashes), with no expansion of variables,
# globs or ~. The command's program is looked up on PATH like a shell does; a
# word of the command that names one of your files becomes its path in the
# guest; the command is written to DIR/.cmd as one line of single-quoted words.
# scripts/disk.sh adds every library the programs need.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || { echo "usage: $0 DIR CMD FILES" >&2; exit 2; }
dir=$1 cmd=$2 files_text=$3
STEP="check your files"

# fail SENTENCE: one sentence for the person who typed the command.
fail() {
	printf 'mmscope: %s\n' "$*" >&2
	exit 1
}

# The guest's own directories: a file of yours cannot take one of these places.
RESERVED='^/(bin|sbin|dev|etc|proc|sys|tmp|out|mmscope|disk|init)(/|$)'

# split WHAT TEXT: the words of TEXT, one per line, split as a shell would;
# one sentence naming WHAT if its quotes do not close or a word holds a newline.
split() {
	python3 -c '
import shlex, sys
try:
    words = shlex.split(sys.argv[1], comments=False, posix=True)
except ValueError as e:
    sys.exit(f"mmscope: cannot split {sys.argv[2]} into words ({e}): check its quotes")
if any("\n" in w for w in words):
    sys.exit(f"mmscope: a word of {sys.argv[2]} holds a newline, which the guest cannot pass on")
print("\n".join(words))
' "$2" "$1"
}

# guest_path PATH: where PATH is in the guest.
guest_path() {
	local p=$1
	case "$p" in
	/*)
		p=$(realpath -s -- "$p")
		# Debian's /bin and /lib are links into /usr: use the path they lead to.
		[[ "$p" =~ $RESERVED ]] && p=$(realpath -- "$p")
		# A place the guest uses itself (/tmp above all), or a file right under
		# / (the guest mounts directories there): under /files instead.
		if [[ "$p" =~ $RESERVED ]] || [ "$(dirname -- "$p")" = / ]; then
			p=/files/$(basename -- "$p")
		fi
		printf '%s\n' "$p"
		;;
	*)
		p=$(realpath -s -m --relative-to=. -- "$p")
		case "$p" in
		..|../*) fail "$1 is outside this directory; give it by its absolute path, or copy it here" ;;
		esac
		printf '/files/%s\n' "$p"
		;;
	esac
}

# check_program PATH: PATH must be something the guest can run.
check_program() {
	local p=$1 magic
	[ -e "$p" ] || fail "$p: no such file; the command's first word must be a program on this host (a path, or a name on your PATH)"
	[ -d "$p" ] && fail "$p is a directory, not a program; give the program inside it"
	[ -r "$p" ] || fail "$p is not readable for you; check its permissions"
	[ -x "$p" ] || fail "$p is not executable; make it so with \`chmod +x $p\`"
	magic=$(head -c 20 -- "$p" | od -An -v -tu1 | tr -s ' \n' ' ')
	read -r -a b <<<"$magic"
	if [ "${b[0]:-}" = 35 ] && [ "${b[1]:-}" = 33 ]; then
		# "#!": a script; the guest's only interpreter is busybox's sh.
		local interp
		interp=$(head -n1 -- "$p" | sed 's/^#![[:space:]]*//' | awk '{ print $1 }')
		case "$interp" in
		/bin/sh | /bin/ash) return 0 ;;
		*) fail "$p is a script for ${interp:-an interpreter it does not name}, which the guest does not have (its only shell is busybox's /bin/sh); trace a compiled program, or make it a /bin/sh script" ;;
		esac
	fi
	[ "${b[0]:-}" = 127 ] && [ "${b[1]:-}" = 69 ] && [ "${b[2]:-}" = 76 ] && [ "${b[3]:-}" = 70 ] ||
		fail "$p is neither a program (ELF) nor a script (#!); give an executable"
	# e_ident[EI_CLASS], e_ident[EI_DATA], e_machine (little-endian).
	local class=${b[4]:-0} data=${b[5]:-0} machine=$(( ${b[18]:-0} + 256 * ${b[19]:-0} ))
	if [ "$data" = 1 ] && [ "$machine" = 3 ]; then
		fail "$p is a 32-bit x86 program; mmscope traces 64-bit x86-64 programs: build it without -m32"
	fi
	if [ "$class" != 2 ] || [ "$data" != 1 ] || [ "$machine" != 62 ]; then
		local arch="ELF machine $machine"
		case "$machine" in
		40) arch=32-bit ARM ;; 183) arch=AArch64 ;; 243) arch=RISC-V ;; 21) arch=PowerPC64 ;;
		22) arch=s390 ;; 8) arch=MIPS ;; 258) arch=LoongArch ;;
		esac
		[ "$class" = 1 ] && arch="32-bit $arch"
		fail "$p is a program for another architecture ($arch); the guest runs x86-64 programs: build it for x86-64"
	fi
	if ldd -- "$p" 2>/dev/null | grep 'not found' >/dev/null; then
		fail "$p needs libraries this host does not have ($(ldd -- "$p" | awk '/not found/ { print $1 }' | tr '\n' ' ')); install them, or link it statically"
	fi
}

rm -rf "$dir"
mkdir -p "$dir"
: >"$dir/.cmd"

# stage SRC GUEST: copy SRC to the guest path GUEST.
stage() {
	local src=$1 dst=$dir$2
	[ -e "$dst" ] && fail "two of your files would both be $2 in the guest; rename one"
	mkdir -p "$(dirname "$dst")"
	cp -a -L -- "$src" "$dst" || fail "cannot copy $src"
}

# Your files first, remembered by their real path on this host.
out=$(split FILES "$files_text") || exit 1
mapfile -t files < <([ -n "$out" ] && printf '%s\n' "$out")
declare -A moved=()
for f in "${files[@]}"; do
	[ -e "$f" ] || fail "$f: no such file; FILES lists files of this host to copy into the guest"
	[ -r "$f" ] || fail "$f is not readable for you; check its permissions"
	g=$(guest_path "$f")
	stage "$f" "$g"
	moved[$(realpath -- "$f")]=$g
done

if [ -n "$cmd" ]; then
	out=$(split "the command \`$cmd\`" "$cmd") || exit 1
	mapfile -t words < <([ -n "$out" ] && printf '%s\n' "$out")
	[ ${#words[@]} -gt 0 ] || fail "the command is empty; give a program, as in CMD='path/to/prog args'"
	program=${words[0]}
	if [[ "$program" != */* ]]; then
		found=$(type -P -- "$program" || true)
		[ -n "$found" ] || fail "$program: no such program on your PATH; give its path (for example ./$program)"
		program=$found
	fi
	check_program "$program"
	real=$(realpath -- "$program")
	if [ -n "${moved[$real]:-}" ]; then
		words[0]=${moved[$real]}
	else
		words[0]=$(guest_path "$program")
		stage "$program" "${words[0]}"
	fi
	for ((i = 1; i < ${#words[@]}; i++)); do
		[ -e "${words[i]}" ] || continue
		real=$(realpath -- "${words[i]}")
		[ -n "${moved[$real]:-}" ] && words[i]=${moved[$real]}
	done
	for w in "${words[@]}"; do
		printf "'%s' " "${w//\'/\'\\\'\'}"
	done >"$dir/.cmd"
	echo >>"$dir/.cmd"
fi
exit 0
