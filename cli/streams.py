"""The command's two output streams: rich when it changes what is printed, else plain writes.

A script that runs `flux exec` reads its output through a pipe, where rich prints the text of a
line without its markup; importing rich for that costs more than the rest of a one-task run. A
line of plain text, or with one colour tag around part of it, is written directly when the
stream is no terminal; anything else (a table, an escaped bracket, a possible emoji code, a
terminal, an environment variable rich reads) goes to a rich Console made on first use, so what
is printed is the same byte for byte.
"""

from __future__ import annotations

import os
import re
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Stream", "plain_text"]

# How rich finds a markup tag (rich.markup.RE_TAGS): a `[` then a letter, #, / or @; any other
# bracket is text.
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")
# The colours the command's lines use, each around one part of a line.
_COLOURS = frozenset({"red", "green", "yellow", "magenta", "white", "cyan", "bold", "dim"})
# rich replaces `:name:` by an emoji when `name` (lowered) is one of its codes, whose characters
# are letters, digits and `!#&()*+-._’`: text with no such pair of colons keeps every character.
_EMOJI_CODE = re.compile(r":[\w!#&()*+.’-]*:")
# Control characters: rich drops some and expands tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What rich reads from the environment that can make a pipe a terminal.
_RICH_ENVIRONMENT = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def plain_text(markup: str) -> str | None:
    """The text rich prints for `markup` on a stream that is no terminal, when that is sure
    without rich: no tag, or one colour tag opened and closed; None otherwise."""
    if _CONTROL.search(markup) or _EMOJI_CODE.search(markup) or "\\[" in markup:  # rich unescapes `\[`
        return None
    tags = list(_TAG.finditer(markup))
    if not tags:
        return markup
    if len(tags) != 2 or tags[0][1] or tags[1][1]:
        return None
    opened, closed = tags[0][2], tags[1][2]
    if opened not in _COLOURS or closed != "/" + opened:
        return None
    return markup[: tags[0].start()] + markup[tags[0].end() : tags[1].start()] + markup[tags[1].end() :]


class Stream:
    """Standard output or standard error of the command, with the `print` and `is_terminal`
    of a rich Console (`highlight=False, soft_wrap=True`)."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def file(self) -> IO[str]:
        """The stream as it is now (a test may have replaced sys.stdout)."""
        return sys.stderr if self._stderr else sys.stdout

    @property
    def console(self) -> Console:
        """The rich Console of this stream, made (and rich imported) on first use."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    @property
    def is_terminal(self) -> bool:
        """Whether rich would print escape sequences here (`Console.is_terminal`)."""
        if self._console is not None or any(name in os.environ for name in _RICH_ENVIRONMENT):
            return self.console.is_terminal
        isatty = getattr(self.file, "isatty", None)
        try:
            return False if isatty is None else bool(isatty())
        except ValueError:  # a closed stream, as rich says
            return False

    def print(self, *objects: Any, **options: Any) -> None:
        """`Console.print`: one line of markup written as its text when that is the same."""
        text = self._plain(objects, options)
        if text is None:
            self.console.print(*objects, **options)
            return
        file = self.file
        file.write(text + "\n")
        file.flush()  # as rich does after each print: the order with the other stream is kept

    def print_parts(self, *parts: str | tuple[str, str]) -> None:
        """Print `rich.text.Text.assemble(*parts)`: text, and (text, style) pairs, taken as they
        are (no markup, no emoji codes); written directly when that is the same."""
        texts = [part if isinstance(part, str) else part[0] for part in parts]
        if self.is_terminal or any(_CONTROL.search(text) for text in texts) or not self._utf8():
            from rich.text import Text

            self.console.print(Text.assemble(*parts))
            return
        file = self.file
        file.write("".join(texts) + "\n")
        file.flush()

    def _utf8(self) -> bool:
        return (getattr(self.file, "encoding", None) or "").lower() in ("utf-8", "utf8")

    def _plain(self, objects: tuple[Any, ...], options: dict[str, Any]) -> str | None:
        if options or len(objects) != 1 or not isinstance(objects[0], str):
            return None
        if self.is_terminal or not self._utf8():
            return None
        return plain_text(objects[0])
