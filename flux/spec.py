"""The specification shipped with the package (flux/SPEC.md), whole or one section: what error
messages point at, readable wherever the package is installed (`flux spec SECTION`)."""

from __future__ import annotations

import re
from importlib import resources

from flux.errors import InvalidOptionError

__all__ = ["spec_section", "spec_text"]

_HEADING = re.compile(r"^(#{1,6}) +(?:(\d+[a-z]?(?:\.\d+)*)\.? +)?(.+?)\s*$")


def spec_text() -> str:
    """SPEC.md as shipped with this version of the package."""
    return (resources.files("flux") / "SPEC.md").read_text(encoding="utf-8")


def spec_section(query: str) -> str:
    """The first section whose number is `query` (`4.2`) or whose title starts with it, any case
    (`replay` finds "4.2 Replay rules"), down to the next heading of its level or above.

    Raises:
        InvalidOptionError: when no heading matches; the message lists the sections.
    """
    lines = spec_text().splitlines()
    wanted = query.strip().rstrip(".").lower()
    headings = [(i, m) for i, line in enumerate(lines) if (m := _HEADING.match(line))]
    for index, (start, match) in enumerate(headings):
        number, title = match.group(2) or "", match.group(3).lower()
        if wanted and (number == wanted or title.startswith(wanted)):
            level = len(match.group(1))
            end = next((i for i, m in headings[index + 1 :] if len(m.group(1)) <= level), len(lines))
            return "\n".join(lines[start:end]).rstrip() + "\n"
    known = ", ".join(f"{m.group(2)} {m.group(3)}" for _, m in headings if m.group(2))
    raise InvalidOptionError(f"SPEC.md has no section {query!r}; its sections: {known}")
