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


# -- decode --------------------------------------------------------------------------------
def _cmd_decode(args: argparse.Namespace) -> int:
    import orjson

    from gateway.decode_cli import DecodeRequest, run_decode

    request = DecodeRequest(
        characteristic=args.characteristic,
        profile=args.profile,
        hex_payload=args.hex,
        json_payload=args.json_payload,
        patient=args.patient,
        device=args.device,
        at=args.at,
    )
    code, doc = run_decode(request)
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    return code


# -- profiles ------------------------------------------------------------------------------
def _cmd_profiles(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.profiles import _commands

    dirs = [Path(d) for d in args.dir]
    packaged = not args.no_packaged
    if args.profiles_command == "validate":
        code, text = _commands.validate(dirs, packaged=packaged)
    elif args.profiles_command == "test":
        code, text = _commands.run_profile_test(args.profile_id, dirs, packaged=packaged)
    else:
        code, text = _commands.write_docs(Path(args.output) if args.output else None)
    sys.stdout.write(text)
    return code


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

    _add_decode_parser(sub)
    _add_profiles_parser(sub)
    _add_sim_parser(sub)
    return parser


def _add_decode_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dec = sub.add_parser(
        "decode",
        help="decode a device payload and print its FHIR Observations as JSON",
        description=(
            'Prints {"observations": [...]} and exits 0, or {"error": "..."} and exits 2 '
            "when the payload cannot be decoded."
        ),
    )
    dec.add_argument(
        "--characteristic",
        metavar="UUID",
        help="GATT characteristic: 2A35, 0x2A35 or the 128-bit form",
    )
    dec.add_argument("--profile", metavar="PROFILE_ID", help="decode through a device profile")
    payload = dec.add_mutually_exclusive_group(required=True)
    payload.add_argument("--hex", help="the characteristic value as hex")
    payload.add_argument("--json-payload", metavar="JSON", help="a vendor JSON message")
    dec.add_argument("--patient", default="example-patient", help="Patient id for subject")
    dec.add_argument("--device", default="example-device", help="Device id")
    dec.add_argument("--at", default=None, help="ISO 8601 reception time (default: now)")
    dec.set_defaults(handler=_cmd_decode)


def _add_profiles_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prof = sub.add_parser("profiles", help="device profiles: validate, test, document")
    prof_sub = prof.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")

    def dirs(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dir",
            action="append",
            default=[],
            metavar="DIR",
            help="also load profiles from DIR (repeatable; env WARDWATCH_PROFILE_DIRS too)",
        )
        p.add_argument("--no-packaged", action="store_true", help="leave out the packaged profiles")

    validate = prof_sub.add_parser(
        "validate", help="schema and registry checks, every sample run; exit 1 naming problems"
    )
    dirs(validate)
    test = prof_sub.add_parser("test", help="run one profile's samples, with a diff on failure")
    test.add_argument("profile_id", metavar="PROFILE_ID")
    dirs(test)
    docs = prof_sub.add_parser("docs", help="generate the supported-devices page")
    docs.add_argument(
        "--output", default=None, help="where to write (default docs/devices.md; - for stdout)"
    )
    docs.set_defaults(dir=[], no_packaged=False)
    prof.set_defaults(handler=_cmd_profiles)


# -- sim (simulated feeds: replay, converters, scenarios, scoring) -------------------------
def _sim_speed(text: str) -> float | None:
    if text == "fast":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed {text!r} is neither 'fast' nor a number") from None
    if not speed > 0:
        raise argparse.ArgumentTypeError("speed must be positive")
    return speed


def _sim_fail(message: str) -> int:
    sys.stderr.write(f"wardwatch sim: {message}\n")
    return 2


def _cmd_sim_replay(args: argparse.Namespace) -> int:
    import orjson

    from firmware_sim.feeds.format import FeedError, read_feed
    from firmware_sim.feeds.replay import replay_feed
    from ingest.stores import open_store

    try:
        events = read_feed(args.feed)
    except (FeedError, OSError) as exc:
        return _sim_fail(f"{args.feed}: {exc}")
    store = open_store(args.store)
    try:
        result = replay_feed(events, store, batch_size=args.batch, speed=args.speed)
    finally:
        store.close()
    doc = result.as_json()
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stdout.write(
            f"{doc['events']} events, {doc['readings']} readings: {doc['stored']} stored, "
            f"{doc['duplicates']} already stored, {doc['rejected']} quarantined; "
            f"{len(result.enrolled)} patients enrolled\n"
        )
    return 0


def _cmd_sim_convert_glucose(args: argparse.Namespace) -> int:
    from firmware_sim.feeds.glucose import GlucoseTraceError, convert_glucose_traces

    try:
        written = convert_glucose_traces(args.src, args.out_dir)
    except (GlucoseTraceError, OSError) as exc:
        return _sim_fail(str(exc))
    for feed, truth in written:
        sys.stdout.write(f"{feed}\n{truth}\n")
    return 0


def _cmd_sim_scenario(args: argparse.Namespace) -> int:
    from firmware_sim.scenarios import SCENARIOS, write_scenario

    if args.list or args.name is None:
        for name, scenario in sorted(SCENARIOS.items()):
            sys.stdout.write(f"{name:<22} {scenario.summary}\n")
        return 0 if args.list else _sim_fail("NAME and OUT_DIR are required (or --list)")
    if args.out_dir is None:
        return _sim_fail("OUT_DIR is required")
    if args.name not in SCENARIOS:
        return _sim_fail(f"unknown scenario {args.name!r} (see --list)")
    feed, truth = write_scenario(
        args.name, args.out_dir, seed=args.seed, patients=args.patients, days=args.days
    )
    sys.stdout.write(f"{feed}\n{truth}\n")
    return 0


def _cmd_sim_score(args: argparse.Namespace) -> int:
    import orjson

    from firmware_sim.feeds.score import ScoreInputError, load_alerts, score, score_text
    from firmware_sim.feeds.truth import TruthError, load_truth

    try:
        truth = [load_truth(path) for path in args.truth]
        alerts = load_alerts(args.alerts)
    except (TruthError, ScoreInputError, OSError) as exc:
        return _sim_fail(str(exc))
    report = score(truth, alerts, grace_min=args.grace_min)
    if args.json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        sys.stdout.write(score_text(report))
    return 0


def _add_sim_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="simulated feeds: replay, scenarios, scoring (docs/feeds.md)")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="ACTION")

    replay = sim_sub.add_parser(
        "replay",
        help="replay a feed into a store (ingest + alerting in-process, feed's own clock)",
    )
    replay.add_argument("feed", metavar="FEED", help="JSON Lines feed (docs/feeds.md)")
    replay.add_argument("--store", required=True, help="sqlite:PATH (or postgresql://...)")
    replay.add_argument(
        "--speed",
        type=_sim_speed,
        default=None,
        metavar="fast|N",
        help="fast (default: as fast as possible) or N times real time",
    )
    replay.add_argument("--batch", type=int, default=200, help="observations per bundle")
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")
    replay.set_defaults(handler=_cmd_sim_replay)

    convert = sim_sub.add_parser(
        "convert-glucose", help="convert UVA/Padova glucose traces to feeds + ground truth"
    )
    convert.add_argument("src", metavar="SRC", help="directory of <id>.csv/<id>.json, or one csv")
    convert.add_argument("out_dir", metavar="OUT_DIR")
    convert.set_defaults(handler=_cmd_sim_convert_glucose)

    scenario = sim_sub.add_parser("scenario", help="generate a scenario feed + ground truth")
    scenario.add_argument("name", metavar="NAME", nargs="?", help="scenario (see --list)")
    scenario.add_argument("out_dir", metavar="OUT_DIR", nargs="?")
    scenario.add_argument("--seed", type=int, default=1)
    scenario.add_argument("--patients", type=int, default=None, help="number of patients")
    scenario.add_argument("--days", type=int, default=None, help="days monitored")
    scenario.add_argument("--list", action="store_true", help="list the scenarios")
    scenario.set_defaults(handler=_cmd_sim_scenario)

    score_cmd = sim_sub.add_parser("score", help="score alerts against ground-truth episodes")
    score_cmd.add_argument(
        "--truth", required=True, action="append", help="ground-truth JSON (repeatable)"
    )
    score_cmd.add_argument(
        "--alerts", required=True, help="output of `wardwatch alerts list --json`"
    )
    score_cmd.add_argument(
        "--grace-min", type=float, default=60.0, help="minutes after an episode's end (60)"
    )
    score_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    score_cmd.set_defaults(handler=_cmd_sim_score)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wardwatch`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
