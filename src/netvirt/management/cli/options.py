"""The one convention of every ``netvirt`` command for options and exit codes.

- Exit codes: 0 ok, 1 runtime failure (unreachable, not converged, interrupted, a busy port),
  2 bad input (an invalid spec, a missing file, a bad or impossible option); nothing else:
  ``run`` turns any other code into 1.
- Bad options are refused by the option parser, before anything runs, with click's usage message
  and exit 2: ranges as ``typer.Option(min=..., max=...)``; values with a format (URLs, store URLs,
  output files) by a ``callback`` from here; options that exclude each other by ``conflicts``; a
  single-value option given twice by ``StrictGroup`` (a repeatable one is a ``list`` option).
- An output format not given follows the suffix of ``-o FILE`` (``-o drop.png`` is png), and a
  given one that another suffix contradicts is refused (``format_of``).
- Messages of the commands themselves read ``netvirt COMMAND: what is wrong ...`` on stderr.
"""

import inspect
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import typer
from typer.core import TyperGroup

OK, FAILURE, BAD_INPUT = 0, 1, 2


class StrictGroup(TyperGroup):
    """A command group whose commands refuse a single-value option given twice (click would keep
    the last silently), and whose help texts flow: a docstring's line breaks inside a paragraph are
    not kept (Rich kept them, breaking lines mid-sentence); a paragraph opening with ``\\b`` is kept as written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in [self, *self.commands.values()]:
            command.help = _flowed(command.help)
            command.short_help = _flowed(command.short_help)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not hasattr(command, "commands"):  # a command, not a group
            _refuse_repeats(command, rest)
        return name, command, rest


def _flowed(text: str | None) -> str | None:
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _refuse_repeats(command: Any, args: list[str]) -> None:
    single = {
        opt: param
        for param in command.params
        if param.param_type_name == "option" and not param.multiple and not param.count
        for opt in param.opts + param.secondary_opts
    }
    seen: dict[Any, str] = {}
    for arg in args:
        if arg == "--":
            break
        opt = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2] if arg.startswith("-") else None
        param = single.get(opt) if opt else None
        if param is None:
            continue
        if param in seen:
            raise typer.BadParameter(f"given twice ({seen[param]} before): give it once", param_hint=f"'{opt}'")
        seen[param] = opt


def conflicts(*given: tuple[str, bool]) -> None:
    """Exit 2 (click's "Invalid value" message) when more than one of the options named
    (``("--dport", dport is not None)``) is given."""
    named = [name for name, present in given if present]
    if len(named) > 1:
        raise typer.BadParameter(f"cannot be used with {' and '.join(named[:-1])}", param_hint=f"'{named[-1]}'")


SUFFIX_ALIASES = {"md": "markdown", "mmd": "mermaid", "gv": "dot", "yml": "yaml"}


def format_of(given: Any, output: Path | None, choices: Any, default: Any) -> Any:
    """The output format (a member of the Enum ``choices``): ``given``, else the one ``output``'s
    suffix names, else ``default``. A given format that the suffix contradicts (``-f png -o a.svg``)
    is refused with click's message and exit 2."""
    suffix = output.suffix.lstrip(".").lower() if output is not None else ""
    named = next((choice for choice in choices if choice.value == SUFFIX_ALIASES.get(suffix, suffix)), None)
    if given is not None and named is not None and named is not given:
        raise typer.BadParameter(f"{given.value}, but -o {output} is a .{suffix} file: leave -f out, or name the "
                                 f"file for {given.value}", param_hint="'--format' / '-f'")
    return given if given is not None else named if named is not None else default


def output_file(value: Path | None) -> Path | None:
    """Callback of an option or argument naming a file to write: its directory must exist."""
    if value is not None and not value.parent.is_dir():
        raise typer.BadParameter(f"{value}: no directory {value.parent} to write it in")
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a directory: give a file name")
    return value


def http_url(value: str) -> str:
    """Callback of a URL option (``--controller``): http(s)://HOST[:PORT][/PATH]."""
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise typer.BadParameter(f"{value!r} is not an http(s)://HOST[:PORT] URL (e.g. http://127.0.0.1:8470)")
    return value


def store_url(value: str | None) -> str | None:
    """Callback of ``--store``: sqlite://PATH or etcd://HOST:PORT."""
    if value is None:
        return value
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("sqlite", "etcd") or not rest:
        raise typer.BadParameter(f"{value!r}: use sqlite://PATH (embedded) or etcd://HOST:PORT")
    return value


def version(value: bool) -> None:
    """Callback of ``--version``: print netvirt's version and exit 0."""
    if value:
        typer.echo(f"netvirt {metadata.version('netvirt')}")
        raise typer.Exit(OK)


def run(app: typer.Typer) -> NoReturn:
    """Run the CLI; an exit code other than 0, 1 or 2 (from a library that exits itself) is 1."""
    try:
        app()
    except SystemExit as done:
        code = done.code
        if code is None or code in (OK, FAILURE, BAD_INPUT):
            raise
        if isinstance(code, str):
            print(code, file=sys.stderr)
        raise SystemExit(FAILURE) from None
    sys.exit(OK)
