"""`manas360 --help` and every subcommand's: each option says what it does and its default, and
each page says that configuration comes from the environment."""

from __future__ import annotations

import argparse
import subprocess
import sys

from manas360 import __version__
from manas360.cli import _parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_has_a_description_with_its_default_and_every_page_names_the_environment():
    pages = list(_parsers(_parser()))
    assert len(pages) > 20
    for path, parser in pages:
        assert "Configuration comes from the environment" in parser.format_help(), path
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            assert action.help and "default" in action.help, (path, action.option_strings)


def test_version():
    result = subprocess.run([sys.executable, "-m", "manas360.cli", "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, f"manas360 {__version__}")
