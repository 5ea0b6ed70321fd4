"""Fenced code blocks of the Markdown docs, their markers, and output comparison (for tests/test_docs.py).

Every fenced block of the Markdown files at the top of the repository and in docs/ is preceded,
on the line right before its opening fence, by a marker that says what the block is::

    <!-- doc: python -->                   run it; it must exit 0
    <!-- doc: python; output in comments -->
                                           run it; each ``print(...)  # text`` line's comment is the
                                           line it prints, in order
    <!-- doc: shell -->                    run it with bash (``set -e -o pipefail``); it must exit 0
    <!-- doc: shell; output follows -->    a transcript: ``$ command`` lines, each followed by the
                                           output it prints
    <!-- doc: output -->                   what the block right above it (python or shell) prints
    <!-- doc: json -->                     a JSON document, or one JSON document a line
    <!-- doc: syntax: REASON -->           not run (it needs what one machine has not got), but
                                           compiled (a ``python`` fence) or checked with ``bash -n``;
                                           the reason is required
    <!-- doc: skip: REASON -->             not run (a sketch, a fragment, output of a long run, a
                                           command typed at a prompt); the reason is required

Options combine with ``;`` (``<!-- doc: shell; fixture; output follows -->``); ``fixture`` runs the
block after its doc's fixture (tests/test_docs.py) instead of on an empty server; ``fixture NAME``
after the fixture of that name; ``after previous`` (shell) runs the doc's previous runnable block first;
``until killed`` runs a listening example in the background while the fixture is made, and compares
what it printed with the ``output`` block after it (tests/test_docs.py).

A fenced block without a marker, or with one the parser does not know, is an error, so a new
example has to be classified before the suite passes again.

Comparison (``normalize``, ``lines_match``): both sides are normalised line by line, then compared
in order.  Normalising replaces what differs from run to run:

* a revision or change-log entry ID (``1795787133251-0``) by ``<REV>``;
* a commit id (``5f0c2a9e81d4-3``, a record's ``StateStore.Commit``) by ``<COMMIT>``;
* a 64-hex record ID, and a 12-hex short ID, by ``<ID>``;
* an RFC 3339 time (``2026-12-04T16:01:02.123456789Z``) by ``<TIME>``;
* a Unix time in milliseconds (13 digits) by ``<MS>``;
* a human duration (``0.0s``, ``3.46 ms``, ``2 seconds ago``, ``About a minute``) by ``<DUR>``;
* every run of spaces by one space, and trailing space removed (tables align to their widths).

In the expected text, ``…`` (or ``...`` standing alone as a word) matches any text within a line,
and a line that is only ``…`` or ``...`` matches any number of lines.  Counts are compared as they
are: an example that shows a count must produce that count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: every Markdown file at the top of the repository and in docs/
DOCS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")])

KINDS = ("python", "shell", "output", "json", "syntax", "skip")
OPTIONS = {"python": {"output in comments", "fixture", "until killed"},
           "shell": {"output follows", "fixture", "after previous", "until killed"}}

_FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")
_MARKER = re.compile(r"^\s*<!--\s*doc:\s*(.*?)\s*-->\s*$")


class DocFormatError(ValueError):
    """A fenced block without a valid marker, or an unterminated fence."""


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    kind: str
    options: set[str] = field(default_factory=set)
    reason: str = ""
    text: str = ""
    info: str = ""  # the fence's info string: "python", "json", "sh" or ""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def parse_marker(spec: str) -> tuple[str, set[str], str]:
    """``"shell; output follows"`` -> ``("shell", {"output follows"}, "")``; raises DocFormatError."""
    kind, _, rest = spec.partition(":") if spec.startswith(("skip", "syntax")) else (spec, "", "")
    parts = [p.strip() for p in kind.split(";")]
    kind, options = parts[0], {p for p in parts[1:] if p}
    if kind in ("skip", "syntax"):
        reason = rest.strip()
        if not reason:
            raise DocFormatError(f"a {kind} marker needs a reason: <!-- doc: {kind}: why it is not run -->")
        return kind, set(), reason
    if kind not in KINDS:
        raise DocFormatError(f"unknown block kind {kind!r} (one of {', '.join(KINDS)})")
    unknown = {o for o in options - OPTIONS.get(kind, set())
               if not (o.startswith("fixture ") and "fixture" in OPTIONS.get(kind, set()))}
    if unknown:
        raise DocFormatError(f"unknown option(s) {sorted(unknown)} for {kind!r}")
    return kind, options, ""


def parse(text: str, doc: str = "<text>") -> list[Block]:
    """Every fenced block of a Markdown text with its marker; raises DocFormatError on the first
    block that has none (or a bad one)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if close and close.group(2).startswith(fence) and not close.group(3).strip():
                break
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        else:
            raise DocFormatError(f"{doc}:{start + 1}: fence never closed")
        i += 1
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None:
            raise DocFormatError(
                f"{doc}:{start + 1}: fenced block without a marker on the line before it "
                "(<!-- doc: python|shell|output|json|syntax: why|skip: why -->; see tests/doc_blocks.py)")
        try:
            kind, options, reason = parse_marker(marker.group(1))
        except DocFormatError as exc:
            raise DocFormatError(f"{doc}:{start + 1}: {exc}") from None
        blocks.append(Block(doc, start + 1, kind, options, reason, "\n".join(body) + "\n", m.group(3).strip()))
    return blocks


def parse_doc(doc: str) -> list[Block]:
    return parse((ROOT / doc).read_text(encoding="utf-8"), doc)


# --- transcripts and expected output ------------------------------------------------------------
def transcript(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines of a transcript, each with the output lines after it.  A command line
    ending in ``\\`` continues on the next line."""
    out: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd + "\n" + lines[i]
            out.append((cmd, []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise DocFormatError(f"transcript text before the first '$ ' line: {line!r}")
        i += 1
    return out


_COMMENT = re.compile(r"\)\s+#\s?(.*)$")


def printed_comments(source: str) -> list[str]:
    """The expected lines of a ``python; output in comments`` block: the comment after each
    ``print(...)`` call (on its last line when the call spans several)."""
    out: list[str] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("print("):
            depth = 0
            while True:
                code = lines[i].split("  #", 1)[0]
                depth += code.count("(") - code.count(")")
                if depth <= 0 or i + 1 == len(lines):
                    break
                i += 1
            if m := _COMMENT.search(lines[i]):
                out.append(m.group(1).rstrip())
        i += 1
    return out


# --- normalisation ------------------------------------------------------------------------------
_SUBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<TIME>"),
    (re.compile(r"\b\d{13}-\d+\b"), "<REV>"),
    (re.compile(r"\b[0-9a-f]{12}-[0-9a-f]+\b"), "<COMMIT>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<ID>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12}\b"), "<ID>"),
    (re.compile(r"\b\d{13}\b"), "<MS>"),
    (re.compile(r"\b(?:About an? \w+|Less than a second|\d+(?:\.\d+)? ?(?:ms|s|seconds?|minutes?|hours?|days?))\b"),
     "<DUR>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalize(line: str) -> str:
    for pattern, repl in _SUBS:
        line = pattern.sub(repl, line)
    return line.strip()


def _line_regex(expected: str) -> re.Pattern[str]:
    parts = re.split(r"…|(?<!\S)\.\.\.(?!\S)", expected)
    return re.compile(".*".join(re.escape(p) for p in parts) + r"\Z", re.DOTALL)


def _is_gap(expected: str) -> bool:
    return expected in ("…", "...")


def lines_match(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` matches ``expected`` after normalising both (see the module doc)."""
    exp = [normalize(x) for x in _trim(expected)]
    act = [normalize(x) for x in _trim(actual)]
    pats = [None if _is_gap(e) else _line_regex(e) for e in exp]

    # small backtracking matcher: a gap line matches zero or more actual lines
    def match(i: int, j: int) -> bool:
        if i == len(pats):
            return j == len(act)
        pat = pats[i]
        if pat is None:
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and pat.match(act[j]) is not None and match(i + 1, j + 1)

    return match(0, 0)


def _trim(lines: list[str]) -> list[str]:
    out = [x.rstrip() for x in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def diff_message(expected: list[str], actual: list[str]) -> str:
    exp = "\n".join(f"  {normalize(x)}" for x in _trim(expected))
    act = "\n".join(f"  {normalize(x)}" for x in _trim(actual))
    return f"expected (normalised):\n{exp}\nactual (normalised):\n{act}"
