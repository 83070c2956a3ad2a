"""What the README promises a new user, checked against the program."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_MESSAGES = {"not slow", "generator's"}  # quoted in the README, but not the program's words


def prose(path: Path) -> str:
    """A markdown file without its fenced code blocks."""
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)


def quoted_messages(text: str) -> list[str]:
    """Double-quoted passages of two words or more: what the README says the program says."""
    return [q for q in re.findall(r'"([^"\n]+)"', text) if " " in q.strip() and q not in NOT_MESSAGES]


def source_pattern(quote: str) -> re.Pattern:
    """The quote as it stands in pulse's source: each word or number may be an f-string placeholder there (after
    a literal prefix, as in x{scale})."""
    parts = re.split(r"([\w.]+)", quote)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else rf"(?:{re.escape(p)}|[A-Za-z]*\{{[^}}]*\}})"
                              for i, p in enumerate(parts)))


def test_quoted_messages_are_the_programs_own():
    source = "\n".join(p.read_text() for p in (ROOT / "pulse").rglob("*.py"))
    quotes = quoted_messages(prose(ROOT / "README.md"))
    missing = [q for q in quotes if not source_pattern(q).search(source)]
    assert not missing, f"README quotes messages the program does not print: {missing}"


@pytest.mark.parametrize("quote, found", [("enlarges x8 only", True), ("enlarges x8 at most", False),
                                          ("no srgan network for scale 4", True), ("no model for scale 4", False)])
def test_the_quote_check_knows_a_message_from_a_made_up_one(quote, found):
    source = ('raise PulseError(f"{path}: enlarges x{loaded.scale} only, not x{scale:g}")\n'
              'raise PulseError(f"no {method} network for scale {scale:g}; the registry has: {have}")')
    assert bool(source_pattern(quote).search(source)) is found
