#!/usr/bin/env python3
# Put the example output that `make docs` brought back from the guest into the
# README, between the markers
#   <!-- generated:NAME (by `make docs`, do not edit) -->  ...  <!-- /generated:NAME -->
# and copy the plots next to it into docs/.
#   scripts/update-readme.py DIR
# With --check, change nothing: fail unless the README's blocks NAME... already
# hold what DIR has (`make test` checks the claims table this way).
#   scripts/update-readme.py --check DIR NAME...
# With --only, update the blocks NAME... only (`make bench` keeps its table so).
#   scripts/update-readme.py --only DIR NAME...
# With --kernels, update the block "kernels" from the guest logs of the last
# test run of each flavour under OUT (build/): its kernel and its result.
#   scripts/update-readme.py --kernels OUT
import difflib
import pathlib
import re
import shutil
import sys

TOP = pathlib.Path(__file__).resolve().parent.parent
README = TOP / "README.md"

# NAME -> (file in DIR, the command that made it, as the README shows it;
# None: Markdown, shown as it is)
BLOCKS = {
    "claims": ("claims.md", None),
    "bench": ("bench.md", None),
    "heap-large": ("heap-large.txt", "mmscope trace --picture -- heap/glibc/large"),
    "sort": ("sort.txt", "mmscope trace -- sort -n -o sorted numbers    # RSS lines left out"),
    "maps": ("maps.txt", "mmscope maps"),
    "trace": ("trace.txt", "mmscope trace --svg trace.svg -- malloc-touch"),
    "trace-stdout": ("trace-stdout.txt", ""),
    "follow": (
        "follow.txt",
        "mmscope trace -f -- sh -c '/usr/bin/sort -n numbers | tail -n 1'    # the processes' starts, execs and ends only",
    ),
    "attach": ("attach.txt", "mmscope trace -p $(pidof ticker)    # Ctrl-C after a second; calls 3 on left out"),
    "stacks": (
        "stacks.txt",
        "mmscope trace --stacks -- stacks-dynamic    # the first call of each of its functions",
    ),
    "kernel": (
        "kernel.txt",
        "mmscope trace --kernel --kernel-depth 7 -- kernelpaths    # main's calls to its mprotect; RSS lines left out",
    ),
    "kernel-faults": (
        "kernel-faults.txt",
        "mmscope trace --kernel -- kernelpaths    # the faults before each madvise: anonymous pages, then the module's",
    ),
    "faults": (
        "faults.txt",
        "mmscope trace --faults -- firsttouch    # from grow_heap's first touch to the fork; VMA and RSS lines left out",
    ),
    "sort-faults": (
        "sort-faults.txt",
        "mmscope trace --faults --flame sort-resident -- sort -n -o sorted numbers    # the summary",
    ),
    "lazy": ("lazy.txt", "mmscope lazy 256K --rows 8"),
    "lazy-random": ("lazy-random.txt", "mmscope lazy 256K --rows 4 --pattern random"),
    "users": (
        "users.txt",
        "mmscope-selftests user_traces_own_program_after_insmod; mmscope-selftests one_user_cannot_starve_another",
    ),
    # On the host, without the module (`make docs`).
    "host-maps": ("maps.txt", "mmscope maps    # on this host: no module, procfs; the table and picture left out"),
    # From scripts/test-user-program.sh, which `make test` and `make docs` run.
    "user-trace": (
        "readme.txt",
        "make trace CMD=\"/tmp/x/yours '/tmp/x/in put.txt'\" FILES=\"'/tmp/x/in put.txt'\"    # loader steps left out",
    ),
}
PLOTS = {
    "trace.svg": "docs/trace-malloc-touch.svg",
    "heap-trim.svg": "docs/heap-trim.svg",
    "sort-resident-peak.svg": "docs/sort-resident-peak.svg",
}


def fail(msg):
    print(f"update-readme: {msg}", file=sys.stderr)
    sys.exit(1)


def pattern(name):
    return re.compile(
        rf"(<!-- generated:{re.escape(name)} [^>]*-->\n)(?:.*?\n)?(<!-- /generated:{re.escape(name)} -->)",
        re.S,
    )


def block(src, name):
    """The README text of block NAME, from the file in SRC."""
    file, command = BLOCKS[name]
    path = src / file
    if not path.is_file():
        fail(f"{path} is missing: the guest run did not produce it (see its log in build/)")
    body = path.read_text().rstrip("\n")
    if command is None:
        return body
    shown = f"$ {command}\n{body}" if command else body
    return f"```text\n{shown}\n```"


def check(src, names):
    text = README.read_text()
    stale = False
    for name in names:
        m = pattern(name).search(text)
        if not m:
            fail(f"README.md has no generated:{name} section")
        have = text[m.end(1):m.start(2)].rstrip("\n")
        want = block(src, name)
        if have != want:
            stale = True
            sys.stderr.writelines(
                difflib.unified_diff(
                    (have + "\n").splitlines(True),
                    (want + "\n").splitlines(True),
                    f"README.md ({name})",
                    f"{src / BLOCKS[name][0]} (this run)",
                )
            )
    if stale:
        fail("README.md is out of date with what this run measured (diff above): "
             "run `make docs` and commit the README")
    print(f"update-readme: README.md agrees with {src} ({', '.join(names)})", file=sys.stderr)


# The test runs `make test`, `make test-debug` and `make test-compat` leave, under
# the build directory: (log, what the README calls the run).
RUNS = [
    ("guest-test.log", "`make test`"),
    ("debug/guest-test.log", "`make test-debug` (KASAN, lockdep, kmemleak)"),
    ("compat/guest-test.log", "`make test-compat` (the oldest supported kernel)"),
]


def kernels(out):
    """The README block "kernels": the kernel and the result of each flavour's last run."""
    text = README.read_text()
    m = pattern("kernels").search(text)
    if not m:
        fail("README.md has no generated:kernels section")
    # A run whose log is not here keeps the row the README has for it.
    old = {}
    for line in text[m.end(1):m.start(2)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            old[cells[0]] = line
    rows = []
    for log, run in RUNS:
        path = out / log
        text_log = path.read_text(errors="replace") if path.is_file() else ""
        version = re.search(r"Linux version (\S+)", text_log)
        results = re.findall(r"^(\d+ passed, \d+ failed.*)$", text_log, re.M)
        if version and results:
            rows.append(f"| {run} | Linux {version.group(1)} | {results[-1].strip()} |")
        elif run in old:
            rows.append(old[run])
    if not rows:
        fail(f"no test run's log under {out}")
    body = "\n".join(["| run | kernel | selftests |", "|---|---|---|", *rows])
    README.write_text(pattern("kernels").sub(lambda m: m.group(1) + body + "\n" + m.group(2), text))
    print(f"update-readme: README.md (kernels) updated from the runs under {out}", file=sys.stderr)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--kernels":
        kernels(pathlib.Path(sys.argv[2]))
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        names = sys.argv[3:] or list(BLOCKS)
        unknown = [n for n in names if n not in BLOCKS]
        if unknown:
            fail(f"no README block named {', '.join(unknown)}")
        check(pathlib.Path(sys.argv[2]), names)
        return
    only = None
    if len(sys.argv) >= 4 and sys.argv[1] == "--only":
        only = sys.argv[3:]
        unknown = [n for n in only if n not in BLOCKS]
        if unknown:
            fail(f"no README block named {', '.join(unknown)}")
        sys.argv = [sys.argv[0], sys.argv[2]]
    if len(sys.argv) != 2:
        print("usage: update-readme.py DIR | update-readme.py --check|--only DIR [NAME...]", file=sys.stderr)
        sys.exit(2)
    src = pathlib.Path(sys.argv[1])
    text = README.read_text()
    for name in only or [n for n in BLOCKS if n not in ("bench", "user-trace", "host-maps")]:
        if not pattern(name).search(text):
            fail(f"README.md has no generated:{name} section")
        text = pattern(name).sub(lambda m: m.group(1) + block(src, name) + "\n" + m.group(2), text)
    README.write_text(text)
    if only:
        print(f"update-readme: README.md ({', '.join(only)}) updated from {src}", file=sys.stderr)
        return
    for file, dest in PLOTS.items():
        (TOP / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / file, TOP / dest)
    print(f"update-readme: README.md and {', '.join(PLOTS.values())} updated from {src}", file=sys.stderr)


main()
