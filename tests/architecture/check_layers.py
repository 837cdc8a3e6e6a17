#!/usr/bin/env python3
"""Fails when an #include under src/ crosses a dependency that must never exist.

A file belongs to the part whose folder holds it (layers.json "parts"); `#include "x/y.h"`
names the part of src/x/, a bare `#include "y.h"` the file's own part, and a qualified name
`x::Name` (the namespace of src/x/) the part of src/x/ too, since a header of an allowed part
may hand on the types of a forbidden one. Every include that goes
from a part to one of its "never" targets is printed as FILE:LINE with the rule's reason, and
the exit status is 1. A folder of src/ that belongs to no part is an error too, so a new folder
cannot slip past the table.

Usage: check_layers.py [--root REPO] [--layers layers.json]
"""

import argparse
import json
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
# A qualified name, `store::TranscriptEntry`: a type reached through another header
# (pipeline.h includes store.h) crosses the edge as surely as the include would.
QUALIFIED = re.compile(r"(?<![\w:])(?:drawbridge::)?([a-z_]+)::")
COMMENT_OR_STRING = re.compile(r'//.*$|"(?:\\.|[^"\\])*"')
SOURCES = {".h", ".hpp", ".cpp", ".cc", ".inl"}


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=here.parent.parent, help="the repository")
    ap.add_argument("--layers", type=Path, default=here / "layers.json")
    args = ap.parse_args()

    table = json.loads(args.layers.read_text())
    folder_part = {}  # "agents" -> "Agents"
    for part, spec in table["parts"].items():
        for folder in spec["is"]:
            folder_part[folder.strip("/").removeprefix("src/")] = part
    never = {(r["from"], r["to"]): r["why"] for r in table["never"]}

    src = args.root / "src"
    problems = []
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        if folder.name not in folder_part:
            problems.append(f"src/{folder.name}/: belongs to no part of {args.layers.name}")
    files = sorted(p for p in src.rglob("*") if p.suffix in SOURCES and p.is_file())
    for path in files:
        rel = path.relative_to(args.root)
        own = folder_part.get(path.relative_to(src).parts[0])
        if own is None:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m:
                target = m.group(1)
                first = target.split("/")[0] if "/" in target else None
                to = folder_part.get(first, own) if first else own
                why = never.get((own, to))
                if why:
                    problems.append(f"{rel}:{n}: {own} -> {to} (#include \"{target}\"): {why}")
                continue
            seen = set()
            for q in QUALIFIED.finditer(COMMENT_OR_STRING.sub("", line)):
                to = folder_part.get(q.group(1))
                why = never.get((own, to)) if to else None
                if why and to not in seen:
                    seen.add(to)
                    problems.append(f"{rel}:{n}: {own} -> {to} (uses {q.group(1)}::): {why}")

    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} include(s) cross a forbidden layer edge "
              f"(tests/architecture/layers.json)", file=sys.stderr)
        return 1
    print(f"layers ok: {len(files)} files, {len(never)} forbidden edges checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
