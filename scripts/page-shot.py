#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""page-shot.py PAGE PNG: the README's picture of a page of `mmscope trace --html`.

Headless chromium draws PAGE (with its JSON trace beside it, PAGE with .jsonl) and
saves the window as PNG, with the step selected where the program's malloc(128 KiB)
got a mapping of its own (the first anonymous mmap of 128 KiB or more; `#step=N` in
the page's address). A script error on the page fails it.
"""
import json
import pathlib
import subprocess
import sys


def fail(msg):
    print(f"page-shot: {msg}", file=sys.stderr)
    sys.exit(1)


def step_to_show(trace):
    steps = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "syscall":
            steps.append(event)
    if not steps:
        fail(f"{trace} has no calls")
    for s in steps:
        if s["syscall"] == "mmap" and "MAP_ANONYMOUS" in s["call"] and s["args"][1] >= 128 * 1024:
            return s["step"]
    return steps[len(steps) // 2]["step"]


def main():
    if len(sys.argv) != 3:
        print("usage: page-shot.py PAGE PNG", file=sys.stderr)
        sys.exit(2)
    page, png = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2])
    trace = page.with_suffix(".jsonl")
    for f in (page, trace):
        if not f.is_file():
            fail(f"{f} is missing: make docs writes it in the guest")
    step = step_to_show(trace)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1400,1000", "--virtual-time-budget=5000", "--enable-logging=stderr",
           "--v=0", f"--screenshot={png.resolve()}", f"file://{page}#step={step}"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        fail("chromium is not installed: run scripts/install-deps.sh")
    except subprocess.TimeoutExpired:
        fail("chromium did not finish the screenshot within 120 s")
    errors = [l for l in run.stderr.splitlines() if "CONSOLE" in l and "Uncaught" in l]
    if errors:
        fail(f"the page has script errors:\n" + "\n".join(errors))
    if not png.is_file() or png.stat().st_size == 0:
        fail(f"chromium wrote no screenshot (exit {run.returncode}):\n{run.stderr[-2000:]}")
    print(f"page-shot: {png} (step {step} of {page.name})", file=sys.stderr)


main()
