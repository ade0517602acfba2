"""What every ``rag`` command shares: the settings flags, exit codes, logging, and the facade it talks to."""

from __future__ import annotations

import argparse
import logging
import os

from indexer.modes import FUSIONS

from ..settings import Settings

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
#: CLI flag (argparse dest) -> Settings field.
SETTING_FLAGS = {
    "model": "model", "quantization": "quantization", "dtype": "dtype", "device": "device",
    "adapter": "adapter", "max_length": "max_length", "batch_tokens": "batch_tokens",
    "packing": "packing", "fusion": "fusion",
    "collection": "collection", "data_dir": "data_dir", "qdrant_url": "qdrant_url",
    "workers": "workers", "ray_address": "ray_address", "lora_adapters": "lora_adapters",
    "parse_workers": "parse_workers",
}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """The settings every command takes (each also read from ``RAG_<NAME>``) and ``-v``."""
    g = parser.add_argument_group("settings (each also read from RAG_<NAME>)")
    g.add_argument("--model", help="model folder, hub name, .gguf file, or 'default'")
    g.add_argument("--quantization", choices=["none", "8bit", "4bit"])
    g.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"])
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--adapter", help="LoRA adapter folder")
    g.add_argument("--max-length", type=int, dest="max_length")
    g.add_argument("--batch-tokens", type=int, dest="batch_tokens")
    g.add_argument("--packing", choices=["auto", "on", "off"], help="unpadded batches (default: auto)")
    g.add_argument("--fusion", choices=FUSIONS, help="how hybrid search fuses dense and sparse results (default: dbsf)")
    g.add_argument("--collection", help="collection name (default: documents)")
    g.add_argument("--data-dir", dest="data_dir", help="embedded store folder")
    g.add_argument("--qdrant-url", dest="qdrant_url", help="Qdrant server URL (default: embedded store)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")


def add_direct_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direct", action="store_true",
                        help="open the store in this process even when `rag serve` runs for the data dir")


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings from ``RAG_*`` with the command's flags on top."""
    overrides = {k: getattr(args, flag) for flag, k in SETTING_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    return Settings(**overrides)


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # transformers reads this when it is first imported (only by commands that load a model):
    # no "Loading weights" bar over the CLI's own output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def service_client(settings: Settings):
    """The client of the `rag serve` running for this data dir (embedded store), or None."""
    if settings.qdrant_url:
        return None
    from ..serve.client import RemoteClient

    return RemoteClient.for_data_dir(settings.data_dir)


def open_service(args: argparse.Namespace, settings: Settings):
    """The facade the command talks to: the running `rag serve` for this data dir (its
    :class:`~app.serve.remote.RemoteSearchService`) unless ``--direct``, else a
    :class:`~app.service.SearchService` over the store opened here, its model read on first use."""
    client = None if getattr(args, "direct", False) else service_client(settings)
    if client is not None:
        from ..serve.remote import RemoteSearchService

        return RemoteSearchService(client)
    from ..service import SearchService

    return SearchService.from_settings(settings, lazy=True)


def via(service) -> str | None:
    """The URL of the service a facade goes through, or None when the store is opened here."""
    return getattr(getattr(service, "client", None), "url", None)
