"""The command-line reference, written from the argparse parsers themselves (the docs site's "Command line" page):
a flag added or renamed in code shows there at the next `mkdocs build`, so the reference cannot go stale."""

from __future__ import annotations

import argparse


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _section(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    children = _subcommands(parser)
    lines = [f"{'#' * depth} `{name}`", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    if not children:
        parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
        lines += ["```text", parser.format_help().rstrip(), "```", ""]
    for child, sub in children.items():
        lines += _section(f"{name} {child}", sub, min(depth + 1, 4))
    return lines


def markdown() -> str:
    """Every command and sub-command with its usage and flags, as Markdown."""
    from medcore.cli import build_parser

    parser = build_parser()
    lines = []
    for name, sub in _subcommands(parser).items():
        lines += _section(f"medcore {name}", sub, 2)
    return "\n".join(lines)
