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
def _gateway_fail(message: str) -> int:
    sys.stderr.write(f"wardwatch gateway: {message}\n")
    return 2


def _cmd_gateway_run(args: argparse.Namespace) -> int:
    from gateway.errors import GatewayError
    from gateway.runtime import Gateway, GatewayConfig

    try:
        config = GatewayConfig.from_toml(args.config)
    except GatewayError as exc:
        return _gateway_fail(str(exc))
    if args.record is None:
        return _run(lambda: Gateway(config).run())
    from firmware_sim.feeds.record import FeedRecorder

    try:
        recorder = FeedRecorder(args.record, gateway_id=config.gateway_id)
    except OSError as exc:
        return _gateway_fail(f"--record {args.record}: {exc}")
    with recorder:
        return _run(lambda: Gateway(config, record=recorder).run())


def _cmd_gateway_status(args: argparse.Namespace) -> int:
    import orjson

    from gateway.errors import GatewayError
    from gateway.runtime import GatewayConfig, offline_status

    try:
        status = offline_status(GatewayConfig.from_toml(args.config))
    except GatewayError as exc:
        return _gateway_fail(str(exc))
    sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _cmd_gateway_pair(args: argparse.Namespace) -> int:
    from gateway.ble import PairedDevice
    from gateway.errors import GatewayError
    from gateway.runtime import pair_device

    device = PairedDevice(
        args.device_id, args.patient, args.address, args.name, args.topic, args.profile
    )
    try:
        outcome = pair_device(args.config, device)
    except GatewayError as exc:
        return _gateway_fail(str(exc))
    sys.stdout.write(f"{outcome} device {args.device_id}; restart the gateway to apply\n")
    return 0


def _cmd_gateway_devices(args: argparse.Namespace) -> int:
    import orjson

    from gateway.errors import GatewayError
    from gateway.runtime import GatewayConfig, offline_status

    try:
        devices = offline_status(GatewayConfig.from_toml(args.config))["devices"]
    except GatewayError as exc:
        return _gateway_fail(str(exc))
    if args.json:
        sys.stdout.write(orjson.dumps(devices).decode() + "\n")
        return 0
    cols = ("id", "patient", "match", "last_seen", "battery", "readings_in", "queued", "dropped")
    rows = [[str(d[c]) if d[c] is not None else "-" for c in cols] for d in devices]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for row in [list(cols), *rows]:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    return 0


# -- ingest ------------------------------------------------------------------------------
def _cmd_ingest_run(args: argparse.Namespace) -> int:
    from ingest.http import MIN_TOKEN_LENGTH
    from ingest.pipeline import StoredHook
    from ingest.service import run_ingest

    if args.read_token is not None and len(args.read_token) < MIN_TOKEN_LENGTH:
        sys.stderr.write(
            f"wardwatch ingest run: the read token must be at least {MIN_TOKEN_LENGTH} characters\n"
        )
        return 2
    loopback = args.http_host in ("127.0.0.1", "::1", "localhost")
    if args.http_port is not None and args.token is None and not loopback:
        sys.stderr.write(
            "wardwatch ingest run: an HTTP API on a non-loopback address needs a write token "
            "(--token or WARDWATCH_INGEST_TOKEN)\n"
        )
        return 2

    from ingest.stores.timescale_policy import Period, StoragePolicySettings

    try:
        storage = StoragePolicySettings(
            refresh_every=Period.parse(args.rollup_every),
            retention=None if args.retention.lower() == "off" else Period.parse(args.retention),
            retention_every=Period.parse(args.retention_every),
        )
    except ValueError as exc:
        sys.stderr.write(f"wardwatch ingest run: {exc}\n")
        return 2

    def report_plan(plan: dict[str, str]) -> None:
        import orjson

        sys.stdout.write(f"storage policy: {orjson.dumps(plan).decode()}\n")
        sys.stdout.flush()

    policy = None
    if args.alerting_policy is not None:
        from alerting.policy import NotificationPolicy, PolicyError

        if not args.with_alerting:
            sys.stderr.write("wardwatch ingest run: --alerting-policy needs --with-alerting\n")
            return 2
        try:
            policy = NotificationPolicy.load(args.alerting_policy)
        except PolicyError as exc:
            sys.stderr.write(f"wardwatch ingest run: {exc}\n")
            return 2

    async def main() -> None:
        hooks: list[StoredHook] = []
        alerting = None  # holds the dispatcher's task for the life of the service
        if args.with_alerting:
            from alerting.wiring import alerting_hook
            from ingest.stores import open_store

            hook, alerting = alerting_hook(open_store(args.store), policy=policy)
            hooks.append(hook)
        try:
            await run_ingest(
                args.store,
                args.broker,
                http_port=args.http_port,
                workers=args.workers,
                hooks=hooks,
                token=args.token,
                read_token=args.read_token,
                read_principal=args.read_principal,
                http_host=args.http_host,
                storage=storage,
                on_storage_plan=report_plan,
            )
        finally:
            if alerting is not None:
                await alerting.drain()

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
                "auto-cleared"
                if a.get("auto_cleared")
                else "resolved"
                if a["resolved_at"]
                else "acknowledged"
                if a["acknowledged_at"]
                else "open"
            )
            line = f"{a['opened_at']}  {a['severity']:<7}  {a['patient']:<10}  {a['rule']:<28}"
            sys.stdout.write(f"{line}  {state}\n")
    return 0


# -- gateways -----------------------------------------------------------------------------
def _cmd_gateways_list(args: argparse.Namespace) -> int:
    import orjson

    from ingest.gateway_status import gateways_as_json, gateways_table
    from ingest.stores import open_store

    store = open_store(args.store)
    try:
        gateways = store.list_gateways()
    finally:
        store.close()
    if args.json:
        sys.stdout.write(orjson.dumps(gateways_as_json(gateways)).decode() + "\n")
    else:
        sys.stdout.write(gateways_table(gateways))
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
            "SQLite -> alerting -> apprise (console); the nurse page and API on 127.0.0.1 "
            "(address and demo login printed at start). Runs until interrupted unless --duration."
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
    demo.add_argument(
        "--port",
        type=int,
        default=None,
        help="serve the nurse page and API on this 127.0.0.1 port (default: a free one)",
    )
    demo.set_defaults(handler=_cmd_demo)

    gw = sub.add_parser("gateway", help="the home-hub gateway")
    gw_sub = gw.add_subparsers(dest="gateway_command", required=True, metavar="ACTION")
    gw_run = gw_sub.add_parser("run", help="run the gateway (BLE devices -> outbox -> uplink)")
    gw_run.add_argument("--config", required=True, help="gateway TOML file")
    gw_run.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="also record what the devices send into this feed file (docs/feeds.md)",
    )
    gw_run.set_defaults(handler=_cmd_gateway_run)
    gw_status = gw_sub.add_parser(
        "status",
        help="print the hub's state as JSON: queue, sent, dropped (per device and kind), devices",
    )
    gw_status.add_argument("--config", required=True, help="gateway TOML file")
    gw_status.set_defaults(handler=_cmd_gateway_status)
    gw_pair = gw_sub.add_parser(
        "pair", help="add or replace a [[devices]] entry in the TOML file (the rest is kept)"
    )
    gw_pair.add_argument("--config", required=True, help="gateway TOML file (edited in place)")
    gw_pair.add_argument("--device-id", required=True, help="the device's id")
    gw_pair.add_argument("--patient", required=True, help="the patient id it belongs to")
    how = gw_pair.add_mutually_exclusive_group(required=True)
    how.add_argument("--address", help="BLE address")
    how.add_argument("--name", help="BLE local name")
    how.add_argument("--topic", help="MQTT topic or filter (needs device_broker)")
    gw_pair.add_argument("--profile", help="pin a device profile id")
    gw_pair.set_defaults(handler=_cmd_gateway_pair)
    gw_devices = gw_sub.add_parser(
        "devices", help="paired devices: last seen, battery, readings in, queued, dropped"
    )
    gw_devices.add_argument("--config", required=True, help="gateway TOML file")
    gw_devices.add_argument("--json", action="store_true", help="print a JSON list")
    gw_devices.set_defaults(handler=_cmd_gateway_devices)

    ing = sub.add_parser("ingest", help="the backend's ingest service")
    ing_sub = ing.add_subparsers(dest="ingest_command", required=True, metavar="ACTION")
    ing_run = ing_sub.add_parser(
        "run", help="consume gateway bundles over MQTT (and HTTP), record gateway statuses"
    )
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
        "--http-host",
        default=os.environ.get("WARDWATCH_HTTP_HOST", "127.0.0.1"),
        help="address the HTTP API listens on (env WARDWATCH_HTTP_HOST; default 127.0.0.1)",
    )
    ing_run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="MQTT consumers sharing the subscription (0 with --http-port: HTTP only)",
    )
    ing_run.add_argument(
        "--rollup-every",
        default=os.environ.get("WARDWATCH_ROLLUP_EVERY", "5m"),
        metavar="PERIOD",
        help="refresh the hourly/daily rollups this often, e.g. 5m (env WARDWATCH_ROLLUP_EVERY)",
    )
    ing_run.add_argument(
        "--retention",
        default=os.environ.get("WARDWATCH_RETENTION", "off"),
        metavar="PERIOD|off",
        help="drop raw observations older than PERIOD, e.g. 5y (env WARDWATCH_RETENTION; "
        "default off: clinical records are kept); TimescaleDB store only",
    )
    ing_run.add_argument(
        "--retention-every",
        default=os.environ.get("WARDWATCH_RETENTION_EVERY", "1h"),
        metavar="PERIOD",
        help="how often the retention step runs on the Apache edition (default 1h)",
    )
    ing_run.add_argument(
        "--with-alerting",
        action="store_true",
        help="run the alert engine and the notification dispatcher in-process",
    )
    ing_run.add_argument(
        "--alerting-policy",
        default=os.environ.get("WARDWATCH_ALERTING_POLICY") or None,
        metavar="FILE",
        help="notification policy (YAML: targets and tags, escalation, repeat, grouping, "
        "retries, inhibition; see docs/alerting.md) for --with-alerting (env "
        "WARDWATCH_ALERTING_POLICY; default: each care team's notify URLs, no escalation)",
    )
    ing_run.add_argument(
        "--token",
        default=os.environ.get("WARDWATCH_INGEST_TOKEN") or None,
        metavar="TOKEN",
        help="bearer token gateways must send to POST /fhir/Bundle and /fhir/Observation "
        "(env WARDWATCH_INGEST_TOKEN, preferred); required when --http-host is not loopback",
    )
    ing_run.add_argument(
        "--read-token",
        default=os.environ.get("WARDWATCH_READ_TOKEN") or None,
        metavar="TOKEN",
        help="bearer token for the audited FHIR read API (env WARDWATCH_READ_TOKEN, preferred: "
        "the command line is visible to other users); without it every read is refused",
    )
    ing_run.add_argument(
        "--read-principal",
        default=os.environ.get("WARDWATCH_READ_PRINCIPAL", "read-service"),
        metavar="NAME",
        help="who reads with the read token, as written to the audit trail "
        "(env WARDWATCH_READ_PRINCIPAL; default read-service)",
    )
    ing_run.set_defaults(handler=_cmd_ingest_run)

    alerts = sub.add_parser("alerts", help="alerts in a store")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    alerts_list = alerts_sub.add_parser("list", help="list every alert")
    alerts_list.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    alerts_list.add_argument("--json", action="store_true", help="print a JSON list")
    alerts_list.set_defaults(handler=_cmd_alerts_list)

    gateways = sub.add_parser("gateways", help="home hubs known to a store (status, last bundle)")
    gateways_sub = gateways.add_subparsers(dest="gateways_command", required=True, metavar="ACTION")
    gateways_list = gateways_sub.add_parser(
        "list", help="every gateway: last status (online/offline), outbox counts, last bundle"
    )
    gateways_list.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    gateways_list.add_argument("--json", action="store_true", help="print a JSON list")
    gateways_list.set_defaults(handler=_cmd_gateways_list)

    _add_quarantine_parser(sub)
    _add_decode_parser(sub)
    _add_profiles_parser(sub)
    _add_sim_parser(sub)
    from wardwatch._admin import register_admin

    register_admin(sub)
    from alerting.api.serve import register_serve

    register_serve(sub)
    return parser


# -- quarantine (list, re-ingest after a fix) ------------------------------------------------
def _quarantine_fail(message: str) -> int:
    sys.stderr.write(f"wardwatch quarantine: {message}\n")
    return 2


def _cmd_quarantine_list(args: argparse.Namespace) -> int:
    import orjson

    from ingest.reingest import quarantine_as_json
    from ingest.stores import open_store

    store = open_store(args.store)
    try:
        items = store.list_quarantine(
            state=None if args.state == "all" else args.state, reason_code=args.reason_code
        )
    finally:
        store.close()
    doc = [quarantine_as_json(i, payload=args.payload) for i in items]
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return 0
    for d in doc:
        state = f"released {d['released_at']}" if d["released_at"] else "held"
        sys.stdout.write(
            f"{d['id']:>6}  {d['received_at']}  {d['reason_code']:<18}  {state:<40}  "
            f"{d['source']}\n    {d['reason']}\n"
        )
    return 0


def _cmd_quarantine_reingest(args: argparse.Namespace) -> int:
    import getpass

    import orjson

    from ingest.errors import IngestError
    from ingest.pipeline import StoredHook
    from ingest.reingest import ReingestReport, reingest
    from ingest.stores import open_store

    if bool(args.ids) == args.all:
        return _quarantine_fail("give the IDs to re-ingest, or --all (not both)")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    store = open_store(args.store)
    try:
        held = store.list_quarantine(
            state="held", reason_code=args.reason_code, ids=args.ids or None
        )
        if args.ids:
            missing = sorted(set(args.ids) - {i.id for i in held})
            if missing:
                return _quarantine_fail(
                    f"not held in quarantine{' with that reason code' if args.reason_code else ''}"
                    f" (unknown or already released): {', '.join(map(str, missing))}"
                )

        async def main() -> ReingestReport:
            hooks: list[StoredHook] = []
            delivery = None
            if args.with_alerting:
                from alerting.wiring import alerting_hook

                hook, delivery = alerting_hook(store, tick_every=None)
                hooks.append(hook)
            try:
                return await asyncio.to_thread(
                    reingest, store, held, principal=f"cli:{user}", hooks=hooks
                )
            finally:
                if delivery is not None:
                    await delivery.drain()

        report = asyncio.run(main())
    except IngestError as exc:
        return _quarantine_fail(str(exc))
    finally:
        store.close()
    doc = report.as_json()
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        for item_id in doc["released"]:
            sys.stdout.write(f"{item_id:>6}  released\n")
        for h in doc["held"]:
            sys.stdout.write(f"{h['id']:>6}  still held: {h['reason_code']}: {h['reason']}\n")
        sys.stdout.write(
            f"{len(doc['released'])} released ({doc['stored']} observations newly stored), "
            f"{len(doc['held'])} still held\n"
        )
    return 0


def _add_quarantine_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qua = sub.add_parser("quarantine", help="refused input kept with its reason: list, re-ingest")
    qua_sub = qua.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    qlist = qua_sub.add_parser("list", help="list quarantined items (held and released)")
    qlist.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    qlist.add_argument(
        "--state", choices=("all", "held", "released"), default="all", help="default: all"
    )
    qlist.add_argument("--reason-code", default=None, metavar="CODE", help="only this reason")
    qlist.add_argument(
        "--payload", action="store_true", help="include each payload (may hold patient data)"
    )
    qlist.add_argument("--json", action="store_true", help="print a JSON list")
    qlist.set_defaults(handler=_cmd_quarantine_list)

    qre = qua_sub.add_parser(
        "reingest",
        help="re-run held items through ingest after a fix (e.g. patient enrolled, device paired)",
        description=(
            "Each held item goes through the ingest pipeline again, judged as of when it was "
            "received. Items that now pass are stored and marked released (the record is "
            "kept); items refused again stay held with the new reason. Every attempt is "
            "written to the audit trail."
        ),
    )
    qre.add_argument("ids", nargs="*", type=int, metavar="ID", help="quarantine item ids")
    qre.add_argument("--all", action="store_true", help="every held item (see --reason-code)")
    qre.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
    qre.add_argument("--reason-code", default=None, metavar="CODE", help="only this reason")
    qre.add_argument(
        "--with-alerting", action="store_true", help="run the alert engine on what is stored"
    )
    qre.add_argument("--json", action="store_true", help="print one JSON object")
    qre.set_defaults(handler=_cmd_quarantine_reingest)


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
    from firmware_sim.feeds.paths import ChainError, replay_path
    from ingest.stores import open_store

    if args.path == "mqtt" and args.broker is None:
        return _sim_fail("--path mqtt needs --broker mqtt://HOST:PORT")
    if args.url is not None and args.path != "http":
        return _sim_fail("--url applies to --path http")
    speed = 1.0 if args.realtime else None if args.fast else args.speed
    try:
        events = read_feed(args.feed)
    except (FeedError, OSError) as exc:
        return _sim_fail(f"{args.feed}: {exc}")
    store = open_store(args.store)
    try:
        result = replay_path(
            events,
            store,
            path=args.path,
            speed=speed,
            batch_size=args.batch,
            broker=args.broker,
            url=args.url,
            token=os.environ.get("WARDWATCH_INGEST_TOKEN"),
        )
    except ChainError as exc:
        return _sim_fail(f"{args.feed}: replay along {args.path} failed: {exc}")
    finally:
        store.close()
    doc = result.as_json()
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stdout.write(
            f"{doc['events']} events, {doc['readings']} readings: {doc['stored']} stored, "
            f"{doc['duplicates']} already stored, {doc['rejected']} quarantined"
            f" ({doc['not_sent']} not carried by path {doc['path']}); "
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
    try:
        feed, truth = write_scenario(
            args.name, args.out_dir, seed=args.seed, patients=args.patients, days=args.days
        )
    except ValueError as exc:
        return _sim_fail(str(exc))
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
        help="replay a feed through the chain into a store (ingest + alerting in-process, "
        "feed's own clock)",
    )
    replay.add_argument("feed", metavar="FEED", help="JSON Lines feed (docs/feeds.md)")
    replay.add_argument("--store", required=True, help="sqlite:PATH (or postgresql://...)")
    replay.add_argument(
        "--path",
        choices=("store", "http", "ble", "mqtt"),
        default="store",
        help="store (default): straight into ingest; http: bundles POSTed to the ingest API; "
        "ble: simulated BLE devices -> the real gateway -> uplink -> ingest; mqtt: MQTT "
        "device messages via --broker -> the real gateway -> ingest",
    )
    replay.add_argument(
        "--broker",
        default=None,
        metavar="mqtt://HOST:PORT",
        help="MQTT broker: required by --path mqtt; with --path ble the uplink goes over it",
    )
    replay.add_argument(
        "--url",
        default=None,
        help="--path http: a running ingest on the same store (token: WARDWATCH_INGEST_TOKEN)",
    )
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=_sim_speed,
        default=None,
        metavar="fast|N",
        help="fast (default: as fast as possible) or N times real time",
    )
    pace.add_argument("--realtime", action="store_true", help="real time (--speed 1)")
    pace.add_argument("--fast", action="store_true", help="as fast as possible (the default)")
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
