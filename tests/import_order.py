#!/usr/bin/env python3
"""The server library's import order: no folder imports one above it.

    main -> app -> api, control -> netmap -> state -> store -> domain, keys

`derp`, `policy`, `front` and `control::ts2021` (the transport inside `control`) are leaves
beside them; `config`, `secrets`, `telemetry` sit at the bottom with `domain` and `keys`. The load generator (`loadgen`) drives the whole server
and sits on top, next to `main`.

Every path into the crate counts, not only `use` lines: `crate::x::…` anywhere in a file, and
`super::…` resolved against the file's own module path. A module may reach only modules of a
strictly lower rank; modules of one rank (`api` and `control`, the leaves) do not reach each
other. A few modules are open only to some importers (`ONLY_FROM`): the ts2021 transport is
used by `control` and what sits above it, never by the planes below. Run with no arguments from anywhere; exits 1 listing each offending line.
"""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

RANKS = {
    "keys": 0,
    "telemetry": 0,
    "domain": 1,
    "config": 1,
    "secrets": 1,
    "derp": 2,
    "policy": 2,
    "front": 2,
    "control::ts2021": 2,
    "store": 3,
    "state": 4,
    "netmap": 5,
    "api": 6,
    "control": 6,
    "app": 7,
    "loadgen": 8,
    "bin": 9,
}

# Who alone may import a layer, when its rank says too little: `api` ranks above the
# transport but has no business with it.
ONLY_FROM = {
    "control::ts2021": {"control", "app", "loadgen", "bin"},
}

PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")


def module_path(file: pathlib.Path) -> list[str]:
    """`src/state/store/nodes.rs` -> ["state", "store", "nodes"]."""
    parts = list(file.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod" or parts == ["lib"]:
        parts = parts[:-1]
    return parts


def layer(path: list[str]) -> str | None:
    """The layer a module path belongs to: `store` is the folder inside `state`, `control::ts2021`
    the one inside `control`."""
    if not path:
        return None
    if path[0] == "main" or path[0] == "bin":
        return "bin"
    if path[:2] == ["state", "store"]:
        return "store"
    if path[:2] == ["control", "ts2021"]:
        return "control::ts2021"
    return path[0]


def strip_comments(line: str) -> str:
    """The code of a line: no comment, and no `pub(in crate::…)`, which names who may see an
    item rather than anything the item uses."""
    return re.sub(r"pub\(in [\w:]+\)", "pub", line.split("//", 1)[0])


def targets(file: pathlib.Path, text: str):
    """(line number, line, target module path) for every path into the crate."""
    here = module_path(file)
    in_tests = False
    for number, line in enumerate(text.splitlines(), 1):
        # A file's unit tests may reach anything: what counts is the shipped code.
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            in_tests = True
        if in_tests:
            continue
        for root, rest in PATH.findall(strip_comments(line)):
            segments = rest.split("::")[1:]
            if root == "crate":
                yield number, line, segments
                continue
            base = list(here)
            # `super` in a `foo/mod.rs` or `foo.rs` names foo's parent.
            base = base[:-1]
            while segments and segments[0] == "super":
                base = base[:-1]
                segments = segments[1:]
            yield number, line, base + segments


def forbidden(own: str, other: str | None) -> bool:
    """Whether layer `own` may not reach layer `other`."""
    if other is None or other == own or other not in RANKS:
        return False
    if own not in ONLY_FROM.get(other, {own}):
        return True
    return RANKS[other] >= RANKS[own]


def violations():
    for file in sorted(SRC.rglob("*.rs")):
        if file.name.endswith("_tests.rs") or file.name == "tests.rs":
            continue
        own = layer(module_path(file))
        if own not in RANKS:
            continue
        for number, line, target in targets(file, file.read_text()):
            other = layer(target)
            if forbidden(own, other):
                yield f"{file.relative_to(SRC.parent)}:{number}: {own} reaches {other}: {line.strip()}"


def self_check():
    """The checker must see what it is meant to forbid, or it would pass on anything."""
    api = SRC / "api" / "headscale" / "nodes.rs"
    seen = [t for _, _, t in targets(api, "use crate::app::AppState;\nlet x = super::super::super::app::f();\n")]
    assert [layer(t) for t in seen] == ["app", "app"], seen
    store = SRC / "state" / "store" / "nodes.rs"
    seen = [layer(t) for _, _, t in targets(store, "use crate::state::events::Event;\nuse super::Node;\n")]
    assert seen == ["state", "store"], seen
    noise = SRC / "control" / "ts2021" / "noise.rs"
    text = "use super::noise_stream::NoiseStream;\nuse super::super::service::X;\nuse crate::netmap::framing::Y;\n"
    seen = [layer(t) for _, _, t in targets(noise, text)]
    assert seen == ["control::ts2021", "control", "netmap"], seen
    assert [forbidden("control::ts2021", other) for other in seen] == [False, True, True]
    # Above it by rank is not enough: only `control` and the layers over it may use the transport.
    assert [forbidden(own, "control::ts2021") for own in ("control", "app", "api", "netmap", "derp")] == [
        False,
        False,
        True,
        True,
        True,
    ]


def main() -> int:
    self_check()
    found = list(violations())
    for v in found:
        print(v)
    if found:
        print(f"import order broken in {len(found)} place(s); see tests/import_order.py", file=sys.stderr)
        return 1
    print("import order holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
