"""Write pfmigrate's bash completion, generated from its argparse parser.

    python packaging/completion.py > packaging/completion/pfmigrate.bash   (make completion)

Every command and subcommand, its options, an option's choices, and file names where an
option or argument takes a path (``type=Path``) come from ``pfmigrate.cli.build_parser()``,
so the completion says what the command line says. tests/test_packaging.py checks that
the committed file is what this writes now.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pfmigrate.cli import build_parser

FILE, DIRECTORY, ANY = "@file", "@dir", "@any"  # what a value is, when it is not one of a few words


def _value_kind(action: argparse.Action) -> str:
    """What follows an option (or fills a positional): its choices, files, or anything."""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " ".join(str(choice) for choice in action.choices)
    if action.type is Path or (isinstance(action.type, type) and issubclass(action.type, Path)):
        return FILE
    return ANY


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


@dataclass
class Level:
    """One command (``""`` for pfmigrate itself, ``"pfkey decode"`` ...): its subcommands,
    its options, what each option that takes a value takes, and its first positional."""

    commands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    positional: str = ""


def _walk(parser: argparse.ArgumentParser, path: str, out: dict[str, Level]) -> None:
    level = out[path] = Level()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                level.commands.append(name)
                _walk(sub, f"{path} {name}".strip(), out)
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            level.options += action.option_strings
            if _takes_value(action):
                for option in action.option_strings:
                    level.values[option] = _value_kind(action)
        elif not level.positional:
            level.positional = _value_kind(action)


def generate() -> str:
    levels: dict[str, Level] = {}
    _walk(build_parser(), "", levels)
    commands, options, values, positionals = [], [], [], []
    for path, level in sorted(levels.items()):
        key = f'"{path}"'
        if level.commands:
            commands.append(f'        {key}) echo "{" ".join(level.commands)}" ;;')
        options.append(f'        {key}) echo "{" ".join(level.options)}" ;;')
        values += [f'        "{path}|{option}") echo "{kind}" ;;' for option, kind in sorted(level.values.items())]
        if level.positional:
            positionals.append(f'        {key}) echo "{level.positional}" ;;')
    return TEMPLATE.format(
        commands="\n".join(commands),
        options="\n".join(options),
        values="\n".join(values),
        positionals="\n".join(positionals),
        file=FILE,
        directory=DIRECTORY,
        any=ANY,
    )


TEMPLATE = """\
# bash completion for pfmigrate. Generated from its argparse parser by packaging/completion.py
# (make completion); do not edit. Install: copy to /usr/share/bash-completion/completions/pfmigrate
# (or source it from ~/.bashrc).

_pfmigrate_commands() {{
    case "$1" in
{commands}
    esac
}}

_pfmigrate_options() {{
    case "$1" in
{options}
    esac
}}

# What follows an option: its choices, {file} (a file name) or {any} (anything).
_pfmigrate_value() {{
    case "$1|$2" in
{values}
    esac
}}

_pfmigrate_positional() {{
    case "$1" in
{positionals}
    esac
}}

_pfmigrate_words() {{
    local kind="$1" cur="$2"
    case "$kind" in
        "") ;;
        {file}) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
        {directory}) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
        {any}) ;;
        *) COMPREPLY=($(compgen -W "$kind" -- "$cur")) ;;
    esac
}}

_pfmigrate() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" word skip="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ -n "$skip" ]]; then skip=""; continue; fi
        if [[ "$word" == -* ]]; then
            [[ "$word" != *=* && -n "$(_pfmigrate_value "$path" "$word")" ]] && skip=1
            continue
        fi
        if [[ " $(_pfmigrate_commands "$path") " == *" $word "* ]]; then
            path="${{path:+$path }}$word"
        fi
    done
    if [[ -n "$skip" ]]; then
        _pfmigrate_words "$(_pfmigrate_value "$path" "${{COMP_WORDS[COMP_CWORD-1]}}")" "$cur"
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_pfmigrate_options "$path")" -- "$cur"))
        return 0
    fi
    local commands
    commands="$(_pfmigrate_commands "$path")"
    if [[ -n "$commands" ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    else
        _pfmigrate_words "$(_pfmigrate_positional "$path")" "$cur"
    fi
    return 0
}}

complete -F _pfmigrate pfmigrate
"""


if __name__ == "__main__":
    sys.stdout.write(generate())
