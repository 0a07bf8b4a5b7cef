#!/usr/bin/env python3
"""The server library's import order: no folder imports one above it.

    main -> app -> api, control -> netmap -> state -> store -> domain, keys

`derp`, `policy`, `front` and `control::ts2021` (the transport inside `control`) are leaves
beside them; `config`, `secrets`, `telemetry` sit at the bottom with `domain` and `keys`. The
load generator (`loadgen`) drives the whole server and sits on top, next to `main`.

Why: the layers are how the code stays understandable and testable (ARCHITECTURE.md, "Import
order"); the compiler allows any module to reach any other, so this script is what keeps them.

What counts:

* Every path into the crate, not only `use` lines: `crate::x::…` anywhere in a file, and
  `super::…` resolved against the file's own module path.
* Grouped imports are expanded: `use crate::{a::b, c::{d, e}};` counts as `crate::a::b`,
  `crate::c::d` and `crate::c::e`, however the group is spread over lines.
* Comments, string and character literals are not code: a path in them counts for nothing, and
  a brace in them does not end a block.
* The shipped code is what counts, so a file's unit tests may reach anything: the body of a
  `#[cfg(test)] mod name { … }` block is skipped (and only that body: what follows the block
  is checked), and so are test files (`tests.rs`, `*_tests.rs`), which such a
  `#[cfg(test)] mod name;` pulls in.

A module may reach only modules of a strictly lower rank; modules of one rank (`api` and
`control`, the leaves) do not reach each other. A few modules are open only to some importers
(`ONLY_FROM`): the ts2021 transport is used by `control` and what sits above it, never by the
planes below.

Run with no arguments from anywhere; exits 1 listing each offending line. `--self-test` plants
violations in small fake source trees and checks that each is caught (and that the clean
version of each passes).
"""

import bisect
import contextlib
import io
import pathlib
import re
import sys
import tempfile

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


# ---------------------------------------------------------------------------------------------
# Modules and layers


def module_path(file: pathlib.Path, src: pathlib.Path = SRC) -> list[str]:
    """`src/state/store/nodes.rs` -> ["state", "store", "nodes"]."""
    parts = list(file.relative_to(src).with_suffix("").parts)
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


def forbidden(own: str, other: str | None) -> bool:
    """Whether layer `own` may not reach layer `other`."""
    if other is None or other == own or other not in RANKS:
        return False
    if own not in ONLY_FROM.get(other, {own}):
        return True
    return RANKS[other] >= RANKS[own]


def is_test_file(file: pathlib.Path) -> bool:
    """A file of unit tests (`#[cfg(test)] mod tests;` or `#[path = "x_tests.rs"] mod tests;`)."""
    return file.name.endswith("_tests.rs") or file.name == "tests.rs"


# ---------------------------------------------------------------------------------------------
# From source text to code: comments, literals and test modules blanked out
#
# Every step replaces what it removes by spaces and keeps the newlines, so an offset into the
# result is the same offset into the file, and line numbers stay right.


def blank(text: str) -> str:
    """`text` with every character but newlines turned into a space."""
    return re.sub(r"[^\n]", " ", text)


LITERAL_START = re.compile(r"//|/\*|(?<!\w)[bc]?r#*\"|\"|'")
CHAR_LITERAL = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]*\}|.)|[^\\'\n])'")


def end_of_block_comment(text: str, start: int) -> int:
    """The end of the (nestable) `/* … */` comment that opens at `start`."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def end_of_string(text: str, start: int) -> int:
    """The end of the `"…"` literal whose opening quote is at `start` (escapes honoured)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)


def end_of_literal(text: str, match: re.Match) -> int:
    """Where the comment or literal that `LITERAL_START` found ends; for a `'` that opens a
    lifetime or a label rather than a character, right after the quote."""
    start, token = match.start(), match.group()
    if token == "//":
        newline = text.find("\n", start)
        return len(text) if newline < 0 else newline
    if token == "/*":
        return end_of_block_comment(text, start)
    if token == "'":
        char = CHAR_LITERAL.match(text, start)
        return char.end() if char else start + 1
    if token.endswith('"') and "r" in token:
        closing = '"' + "#" * token.count("#")
        end = text.find(closing, match.end())
        return len(text) if end < 0 else end + len(closing)
    return end_of_string(text, match.end() - 1)


def strip_literals(text: str) -> str:
    """The code of a file: comments (doc comments too), string and character literals blanked."""
    out, i = [], 0
    while (match := LITERAL_START.search(text, i)) is not None:
        end = end_of_literal(text, match)
        out.append(text[i : match.start()])
        is_lifetime = match.group() == "'" and end == match.start() + 1
        out.append(text[match.start() : end] if is_lifetime else blank(text[match.start() : end]))
        i = end
    out.append(text[i:])
    return "".join(out)


VISIBILITY_IN = re.compile(r"pub\s*\(\s*in\s+[\w:\s]+\)")


def strip_visibility(code: str) -> str:
    """No `pub(in crate::…)`, which names who may see an item rather than anything it uses."""
    return VISIBILITY_IN.sub(lambda m: "pub" + blank(m.group()[3:]), code)


TEST_MODULE = re.compile(
    r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]"  # #[cfg(test)]
    r"(?:\s*#\s*\[[^\]]*\])*"  # more attributes: #[allow(…)], #[path = "…"]
    r"\s*(?:pub\s*(?:\([^)]*\))?\s*)?"  # a visibility
    r"mod\s+\w+\s*\{"  # mod name {   (a `mod name;` has no body here to skip)
)


def matching_brace(code: str, open_at: int) -> int:
    """The offset just past the `}` that closes the `{` at `open_at` (in literal-free code)."""
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(code)


def strip_test_modules(code: str) -> str:
    """`code` with the bodies of its `#[cfg(test)] mod name { … }` blocks blanked."""
    out, i = [], 0
    while (match := TEST_MODULE.search(code, i)) is not None:
        open_at = match.end() - 1
        end = matching_brace(code, open_at)
        out.append(code[i : open_at + 1])
        out.append(blank(code[open_at + 1 : end]))
        i = end
    out.append(code[i:])
    return "".join(out)


def shipped_code(text: str) -> str:
    """What of a file's text counts: its code, without comments, literals and unit tests."""
    return strip_test_modules(strip_visibility(strip_literals(text)))


# ---------------------------------------------------------------------------------------------
# Paths into the crate, use trees expanded

ROOT = re.compile(r"\b(?:crate|super)\b")
SEPARATOR = re.compile(r"\s*::\s*")
IDENT = re.compile(r"\s*(\w+)")
RENAME = re.compile(r"\s+as\s+\w+")
PUNCT = re.compile(r"\s*([{},*])")
# A path as parsed: its segments, each with its offset, so that a group spread over lines is
# reported at the line that names the module it reaches.
Segments = list[tuple[str, int]]


def parse_tail(code: str, pos: int, prefix: Segments, out: list[Segments]) -> int:
    """Parse `(::segment)*` at `pos`, where a segment is a name, `*` or a `{…}` group, after the
    path `prefix`; append each path it ends in to `out`; return where it stops."""
    segments = list(prefix)
    while (sep := SEPARATOR.match(code, pos)) is not None:
        after = sep.end()
        if (name := IDENT.match(code, after)) is not None:
            segments.append((name.group(1), name.start(1)))
            pos = name.end()
        elif (punct := PUNCT.match(code, after)) is not None and punct.group(1) == "*":
            pos = punct.end()
            break
        elif punct is not None and punct.group(1) == "{":
            return parse_group(code, punct.end(), segments, out)
        else:  # `::<T>` and the like: the path ends before the `::`
            break
    out.append(segments)
    return pos


def parse_group(code: str, pos: int, prefix: Segments, out: list[Segments]) -> int:
    """Parse the items of a `{…}` group whose `{` is just before `pos`, each a path after
    `prefix`; return the offset past its `}`."""
    while True:
        punct = PUNCT.match(code, pos)
        item = punct.group(1) if punct is not None else None
        if item == "}":
            return punct.end()
        if item in (",", "*"):  # a `*` item names the group's own path, like `self`
            if item == "*":
                out.append(list(prefix))
            pos = punct.end()
            continue
        if item == "{":
            pos = parse_group(code, punct.end(), prefix, out)
            continue
        name = IDENT.match(code, pos)
        if name is None:  # not a use tree after all: stop at what cannot be one
            return pos
        pos = parse_tail(code, name.end(), prefix + [(name.group(1), name.start(1))], out)
        if (rename := RENAME.match(code, pos)) is not None:
            pos = rename.end()


def crate_paths(code: str):
    """(offset, root, segments) for every path into the crate in `code`: `crate::a::b` gives
    ("crate", ["a", "b"]), `super::{x, y::z}` gives ["x"] and ["y", "z"]; `self` in a group
    names the group's own path. The offset is that of the path's first module name (its
    first segment past the `super`s), or of its root when it has none."""
    pos = 0
    while (root := ROOT.search(code, pos)) is not None:
        if SEPARATOR.match(code, root.end()) is None:  # `pub(crate)`, `pub(super)`
            pos = root.end()
            continue
        found: list[Segments] = []
        pos = parse_tail(code, root.end(), [], found)
        for path in found:
            names = [name for name, _ in path]
            if names and names[-1] == "self":
                names = names[:-1]
            offsets = [at for name, at in path if name != "super"]
            yield (offsets[0] if offsets else root.start()), root.group(), names


def resolve(here: list[str], root: str, segments: list[str]) -> list[str]:
    """The module path a `crate::…` or `super::…` path names, seen from module `here`."""
    if root == "crate":
        return segments
    # `super` in a `foo/mod.rs` or `foo.rs` names foo's parent.
    base = here[:-1]
    while segments and segments[0] == "super":
        base, segments = base[:-1], segments[1:]
    return base + segments


def targets(file: pathlib.Path, text: str, src: pathlib.Path = SRC):
    """(line number, line, target module path) for every path into the crate that counts."""
    here = module_path(file, src)
    lines = text.splitlines()
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    for offset, root, segments in crate_paths(shipped_code(text)):
        number = bisect.bisect_left(newlines, offset) + 1
        yield number, lines[number - 1], resolve(here, root, segments)


# ---------------------------------------------------------------------------------------------
# The check


def violations(src: pathlib.Path = SRC):
    """One message per line and layer it reaches that it may not."""
    for file in sorted(src.rglob("*.rs")):
        if is_test_file(file):
            continue
        own = layer(module_path(file, src))
        if own not in RANKS:
            continue
        seen = set()
        for number, line, target in targets(file, file.read_text(), src):
            other = layer(target)
            if forbidden(own, other) and (number, other) not in seen:
                seen.add((number, other))
                yield f"{file.relative_to(src.parent)}:{number}: {own} reaches {other}: {line.strip()}"


def check(src: pathlib.Path = SRC) -> int:
    """Print each violation under `src`; 1 if there is one, else 0."""
    found = list(violations(src))
    for v in found:
        print(v)
    if found:
        print(f"import order broken in {len(found)} place(s); see tests/import_order.py", file=sys.stderr)
        return 1
    print("import order holds")
    return 0


# ---------------------------------------------------------------------------------------------
# Self-checks: the checker must see what it is meant to forbid, or it would pass on anything


def self_check():
    """Quick checks of path resolution and of the rules, run before every check."""
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
    # Groups: expanded into their paths, `self` naming the group's own path, sublayers found.
    text = "use crate::{a::b, c::{self, d as e, f::*}, control::{ts2021::h2server, routes}};\n"
    seen = ["::".join(t) for _, _, t in targets(noise, text)]
    assert seen == ["a::b", "c", "c::d", "c::f", "control::ts2021::h2server", "control::routes"], seen
    text = "use super::{noise_stream::NoiseStream, super::service::X};\nuse super::super::{routes, http::Y};\n"
    seen = [layer(t) for _, _, t in targets(noise, text)]
    assert seen == ["control::ts2021", "control", "control", "control"], seen
    # Not code: comments, literals, visibility; a lifetime is not a character literal.
    text = (
        "// crate::netmap::A\n/* crate::netmap::B /* nested */ crate::netmap::C */\n"
        "let s = \"crate::netmap::D\"; let r = r#\"crate::netmap::E\"#; let c = '\"';\n"
        "pub(in crate::netmap) fn f<'a>(x: &'a str) -> &'a str { pub(crate) x }\n"
        "let y = crate::keys::K::<u8>::new();\n"
    )
    seen = [(n, t) for n, _, t in targets(noise, text)]
    assert seen == [(5, ["keys", "K"])], seen


def plant(src: pathlib.Path, files: dict[str, str]):
    """Write a fake source tree under `src`: {path relative to src: text}."""
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_on(files: dict[str, str]) -> tuple[int, str]:
    """The checker's exit status and output on a fake tree made of `files`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "src"
        plant(src, files)
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(io.StringIO()):
            status = check(src)
        return status, output.getvalue()


# (a) An import after a test module: the checker must read on past the module's end. The test
# module, and the test file a `#[cfg(test)] #[path] mod` pulls in, may import anything; braces
# in its literals and comments must not end it early.
NOISE = """\
use super::noise_stream::NoiseStream;

pub(crate) struct Noise<'a> {{ key: &'a [u8] }}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {{
    use super::*;
    use crate::netmap::framing::Frame;
    const OPEN: char = '{{';
    fn braces() -> &'static str {{
        // }} }}
        /* }} */
        "}} }}"
    }}
    #[test]
    fn t() {{ let _ = crate::control::service::X; }}
}}

{planted}

#[cfg(test)]
#[path = "noise_tests.rs"]
mod file_tests;
"""

CASES = {
    "(a) ts2021 importing netmap after a #[cfg(test)] module": (
        "control/ts2021/noise.rs",
        NOISE.format(planted="use crate::netmap::Something;"),
        NOISE.format(planted="use crate::keys::Something;"),
        "src/control/ts2021/noise.rs:20: control::ts2021 reaches netmap: use crate::netmap::Something;",
    ),
    "(b) policy importing state in a group": (
        "policy/mod.rs",
        "//! The policy.\n\nuse crate::{domain::Tag, state::Writer};\n",
        "//! The policy.\n\nuse crate::{domain::Tag, keys::NodePublic};\n",
        "src/policy/mod.rs:3: policy reaches state: use crate::{domain::Tag, state::Writer};",
    ),
    "(c) derp importing netmap in a nested group across lines": (
        "derp/mod.rs",
        "use crate::{\n    keys::X,\n    netmap::{a, b},\n};\n",
        "use crate::{\n    keys::X,\n    domain::{a, b},\n};\n",
        "src/derp/mod.rs:3: derp reaches netmap: netmap::{a, b},",
    ),
}

# Test files may import anything: this one sits beside (a)'s noise.rs in every tree.
TEST_FILE = {"control/ts2021/noise_tests.rs": "use crate::netmap::Frame;\nuse crate::app::AppState;\n"}


def self_test() -> int:
    """Each planted violation fails the check, naming its line; each clean version passes."""
    self_check()
    for name, (path, planted, clean, expected) in CASES.items():
        status, output = run_on({path: planted, **TEST_FILE})
        assert status == 1 and output.splitlines() == [expected], f"{name}: not caught as expected:\n{output}"
        status, output = run_on({path: clean, **TEST_FILE})
        assert status == 0, f"{name}: the clean version fails:\n{output}"
        print(f"caught {name}; its clean version passes")
    print("self-test passed")
    return 0


def main(args: list[str]) -> int:
    if args == ["--self-test"]:
        return self_test()
    if args:
        print("usage: tests/import_order.py [--self-test]", file=sys.stderr)
        return 2
    self_check()
    return check()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
