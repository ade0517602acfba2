"""The ``rag`` command: index folders, search them, show the index, open the UI."""

from __future__ import annotations

import argparse
import sys

from .common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    add_settings_flags,
    load_settings,
    setup_logging,
)
from .eval import add_eval_parser, cmd_eval
from .finetune import add_finetune_parser, cmd_finetune
from .migrate import add_migrate_parser, cmd_migrate
from .search import add_search_parsers, cmd_index, cmd_search, cmd_status, parse_filter
from .serve import add_serve_parsers, cmd_mcp, cmd_serve, cmd_ui, run_child

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "build_parser", "load_settings", "main",
           "parse_filter", "run_child"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_search_parsers(sub)
    add_finetune_parser(sub, add_settings_flags)
    add_eval_parser(sub, add_settings_flags)
    add_migrate_parser(sub, add_settings_flags)
    add_serve_parsers(sub)
    return parser


COMMANDS = {"index": cmd_index, "serve": cmd_serve, "mcp": cmd_mcp, "search": cmd_search, "status": cmd_status,
            "ui": cmd_ui, "finetune": cmd_finetune, "eval": cmd_eval, "migrate": cmd_migrate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from ..service import ServiceError, friendly_errors

    try:
        with friendly_errors():        # the one mapping of library errors to messages, as on the page
            settings = load_settings(args)
            return COMMANDS[args.command](args, settings)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
