#!/usr/bin/env python3
# Put the example output that `make docs` brought back from the guest into the
# README, between the markers
#   <!-- generated:NAME (by `make docs`, do not edit) -->  ...  <!-- /generated:NAME -->
# and copy the plots next to it into docs/.
#   scripts/update-readme.py DIR
import pathlib
import re
import shutil
import sys

TOP = pathlib.Path(__file__).resolve().parent.parent
README = TOP / "README.md"

# NAME -> (file in DIR, the command that made it, as the README shows it)
BLOCKS = {
    "maps": ("maps.txt", "mmscope maps"),
    "trace": ("trace.txt", "mmscope trace --svg trace.svg -- malloc-touch"),
    "trace-stdout": ("trace-stdout.txt", None),
    "lazy": ("lazy.txt", "mmscope lazy 256K --rows 8"),
    "lazy-random": ("lazy-random.txt", "mmscope lazy 256K --rows 4 --pattern random"),
}
PLOTS = {"trace.svg": "docs/trace-malloc-touch.svg"}


def fail(msg):
    print(f"update-readme: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        print("usage: update-readme.py DIR", file=sys.stderr)
        sys.exit(2)
    src = pathlib.Path(sys.argv[1])
    text = README.read_text()
    for name, (file, command) in BLOCKS.items():
        path = src / file
        if not path.is_file():
            fail(f"{path} is missing: the guest run did not produce it (see build/guest-docs.log)")
        body = path.read_text().rstrip("\n")
        shown = f"$ {command}\n{body}" if command else body
        block = f"```text\n{shown}\n```"
        pattern = re.compile(
            rf"(<!-- generated:{re.escape(name)} [^>]*-->\n)(?:.*?\n)?(<!-- /generated:{re.escape(name)} -->)",
            re.S,
        )
        if not pattern.search(text):
            fail(f"README.md has no generated:{name} section")
        text = pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text)
    README.write_text(text)
    for file, dest in PLOTS.items():
        (TOP / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / file, TOP / dest)
    print(f"update-readme: README.md and {', '.join(PLOTS.values())} updated from {src}", file=sys.stderr)


main()
