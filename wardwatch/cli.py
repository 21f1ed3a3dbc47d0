"""The ``wardwatch`` command: one entry point, a subcommand per part.

This is the composition root: each subcommand imports the parts it needs lazily, so the
hub (``wardwatch gateway``) never loads the backend's code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from wardwatch import __version__

Handler = Callable[[argparse.Namespace], int]


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(coro_factory: Callable[[], object]) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro_factory())  # type: ignore[arg-type]
    return 0


# -- demo ----------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from wardwatch._demo import run_demo

    return run_demo(args)


# -- gateway ---------------------------------------------------------------------------
def _cmd_gateway_run(args: argparse.Namespace) -> int:
    from gateway.runtime import Gateway, GatewayConfig

    config = GatewayConfig.from_toml(args.config)
    return _run(lambda: Gateway(config).run())


def _cmd_gateway_status(args: argparse.Namespace) -> int:
    import orjson

    from gateway.outbox import Outbox
    from gateway.runtime import GatewayConfig

    config = GatewayConfig.from_toml(args.config)
    outbox = Outbox(config.outbox_path)
    status = {
        "gateway": config.gateway_id,
        "queued": outbox.pending(),
        "sent": outbox.sent(),
        "quarantined": len(outbox.quarantined()),
        "devices": [d.device_id for d in config.devices],
    }
    outbox.close()
    sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# -- ingest ------------------------------------------------------------------------------
def _cmd_ingest_run(args: argparse.Namespace) -> int:
    from ingest.pipeline import StoredHook
    from ingest.service import run_ingest

    async def main() -> None:
        hooks: list[StoredHook] = []
        if args.with_alerting:
            from alerting.wiring import alerting_hook
            from ingest.stores import open_store

            hook, _delivery = alerting_hook(open_store(args.store))
            hooks.append(hook)
        await run_ingest(
            args.store, args.broker, http_port=args.http_port, workers=args.workers, hooks=hooks
        )

    return _run(main)


# -- alerts -------------------------------------------------------------------------------
def _cmd_alerts_list(args: argparse.Namespace) -> int:
    import orjson

    from alerting.report import alerts_as_json
    from ingest.stores import open_store

    store = open_store(args.store)
    try:
        doc = alerts_as_json(store.list_alerts())
    finally:
        store.close()
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        for a in doc:
            state = (
                "resolved"
                if a["resolved_at"]
                else "acknowledged"
                if a["acknowledged_at"]
                else "open"
            )
            line = f"{a['opened_at']}  {a['severity']:<7}  {a['patient']:<10}  {a['rule']:<28}"
            sys.stdout.write(f"{line}  {state}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wardwatch`` command."""
    parser = argparse.ArgumentParser(
        prog="wardwatch",
        description="Remote patient monitoring: BLE/MQTT gateway, FHIR ingest, alerting.",
    )
    parser.add_argument("--version", action="version", version=f"wardwatch {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the whole chain on the embedded store (SQLite), no external service",
        description=(
            "Simulated BLE blood-pressure cuffs for three synthetic patients (one in "
            "hypertensive crisis) -> gateway -> durable outbox -> HTTP uplink -> ingest -> "
            "SQLite -> alerting -> apprise (console). Runs until interrupted unless --duration."
        ),
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS and print a summary",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    demo.add_argument(
        "--data-dir",
        default=None,
        help="keep the store and outbox here (default: a temporary directory)",
    )
    demo.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between a cuff's measurements (default 5)",
    )
    demo.set_defaults(handler=_cmd_demo)

    gw = sub.add_parser("gateway", help="the home-hub gateway")
    gw_sub = gw.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")
    gw_run = gw_sub.add_parser("run", help="run the gateway (BLE devices -> outbox -> uplink)")
    gw_run.add_argument("--config", required=True, help="gateway TOML file")
    gw_run.set_defaults(handler=_cmd_gateway_run)
    gw_status = gw_sub.add_parser("status", help="print the outbox's state as JSON")
    gw_status.add_argument("--config", required=True, help="gateway TOML file")
    gw_status.set_defaults(handler=_cmd_gateway_status)

    ing = sub.add_parser("ingest", help="the backend's ingest service")
    ing_sub = ing.add_subparsers(dest="ingest_command", required=True, metavar="ACTION")
    ing_run = ing_sub.add_parser("run", help="consume gateway bundles over MQTT (and HTTP)")
    ing_run.add_argument(
        "--store",
        default=os.environ.get("WARDWATCH_STORE"),
        required=not os.environ.get("WARDWATCH_STORE"),
        help="sqlite:PATH or postgresql://... (env WARDWATCH_STORE)",
    )
    ing_run.add_argument(
        "--broker",
        default=os.environ.get("WARDWATCH_BROKER", "mqtt://127.0.0.1:1883"),
        help="mqtt://[user:pass@]host:port (env WARDWATCH_BROKER)",
    )
    ing_run.add_argument(
        "--http-port", type=int, default=None, help="also serve POST /fhir/Bundle on this port"
    )
    ing_run.add_argument(
        "--workers", type=int, default=1, help="MQTT consumers sharing the subscription"
    )
    ing_run.add_argument(
        "--with-alerting", action="store_true", help="run the alert engine in-process"
    )
    ing_run.set_defaults(handler=_cmd_ingest_run)

    alerts = sub.add_parser("alerts", help="alerts in a store")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    alerts_list = alerts_sub.add_parser("list", help="list every alert")
    alerts_list.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    alerts_list.add_argument("--json", action="store_true", help="print a JSON list")
    alerts_list.set_defaults(handler=_cmd_alerts_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wardwatch`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
