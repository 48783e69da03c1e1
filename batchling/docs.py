"""The README's CLI reference, generated from the click commands themselves.

`python -m batchling.docs` rewrites the section between the markers in README.md;
`python -m batchling.docs --check` fails when it is out of date (a test runs the same check).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
HELP_WIDTH = 90
README = Path(__file__).resolve().parent.parent / "README.md"


def command_help(command: click.Command, parent: click.Context | None, name: str) -> str:
    # The command's own context settings (e.g. `-h`), as when it is invoked.
    settings = {"terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH}
    ctx = click.Context(
        command, info_name=name, parent=parent, **{**command.context_settings, **settings}
    )
    return command.get_help(ctx)


def cli_reference(root: click.Group | None = None) -> str:
    """Markdown: the `--help` of `batchling` and of every subcommand (aliases noted, not repeated)."""
    if root is None:
        from batchling.cli import cli

        root = cli
    root_ctx = click.Context(
        root,
        info_name="batchling",
        **{**root.context_settings, "terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH},
    )
    sections = [_section("`batchling`", command_help(root, None, "batchling"))]
    names_of: dict[int, list[str]] = {}
    commands: list[tuple[str, click.Command]] = []
    for name in root.list_commands(root_ctx):
        command = root.get_command(root_ctx, name)
        if command is None:
            continue
        if id(command) not in names_of:
            names_of[id(command)] = []
            commands.append((name, command))
        names_of[id(command)].append(name)
    for name, command in sorted(commands, key=lambda pair: pair[1].name or pair[0]):
        canonical = command.name or name
        aliases = [n for n in names_of[id(command)] if n != canonical]
        title = f"`batchling {canonical}`"
        if aliases:
            title += " (alias: " + ", ".join(f"`batchling {a}`" for a in aliases) + ")"
        sections.append(_section(title, command_help(command, root_ctx, canonical)))
        if isinstance(command, click.Group):
            group_ctx = click.Context(command, info_name=canonical, parent=root_ctx)
            for sub_name in command.list_commands(group_ctx):
                sub = command.get_command(group_ctx, sub_name)
                if sub is not None:
                    sections.append(
                        _section(
                            f"`batchling {canonical} {sub_name}`",
                            command_help(sub, group_ctx, sub_name),
                        )
                    )
    notice = (
        "<!-- Generated from the click commands by `python -m batchling.docs`; do not edit. -->"
    )
    return "\n".join([START, notice, "", *sections, END])


def _section(heading: str, help_text: str) -> str:
    return f"### {heading}\n\n```text\n{help_text.rstrip()}\n```\n"


def with_reference(readme: str, reference: str) -> str:
    """The README with its CLI reference section replaced by `reference`."""
    start, end = readme.find(START), readme.find(END)
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"README has no '{START}' ... '{END}' section to fill in.")
    return readme[:start] + reference + readme[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    readme = Path(paths[0]) if paths else README
    current = readme.read_text(encoding="utf-8")
    updated = with_reference(current, cli_reference())
    if check:
        if updated != current:
            print(
                f"The CLI reference in {readme} is out of date: run 'python -m batchling.docs'.",
                file=sys.stderr,
            )
            return 1
        return 0
    if updated != current:
        readme.write_text(updated, encoding="utf-8")
        print(f"Updated the CLI reference in {readme}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
