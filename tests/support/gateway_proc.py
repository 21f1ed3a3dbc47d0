"""A gateway in a process of its own, for fault tests that kill it (``kill -9``).

``python -m tests.support.gateway_proc --outbox PATH --uplink URL --readings N ...`` builds a
:class:`gateway.runtime.Gateway` with a simulated blood-pressure cuff (``firmware_sim``)
holding ``N`` stored measurements, one a minute from ``--start``. With ``N > 0`` the cuff's
records are first taken into the outbox with the uplink not yet started, and ``queued`` is
printed; then the whole gateway runs (``running`` is printed) until SIGTERM or SIGKILL.
A restarted gateway is run with ``--readings 0``: the cuff has already handed its records
over, so whatever reaches the backend afterwards comes from the outbox on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

from firmware_sim.ble import SimulatedAir
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from gateway.ble import PairedDevice
from gateway.runtime import Gateway, GatewayConfig


def reading(start: datetime, n: int) -> BloodPressureReading:
    """The cuff's ``n``-th stored measurement (synthetic values)."""
    return BloodPressureReading(120 + n % 10, 80, 93, 70, start + timedelta(minutes=n))


def say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    start = datetime.fromisoformat(args.start)
    air = SimulatedAir()
    cuff = BloodPressureCuff(args.address, [reading(start, n) for n in range(args.readings)])
    air.add(cuff)
    gateway = Gateway(
        GatewayConfig(
            gateway_id=args.gateway_id,
            uplink=args.uplink,
            outbox_path=Path(args.outbox),
            devices=(PairedDevice(args.device_id, args.patient, address=args.address),),
            batch_size=args.batch_size,
            ack_timeout=args.ack_timeout,
        ),
        scanner_backend=air.scanner_backend(),
        client_backend=air.client_backend(),
    )
    if args.readings:
        collector = asyncio.create_task(gateway.collector.run())
        while cuff.pending or gateway.outbox.pending() < 2 * args.readings:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        say("queued")
    task = asyncio.create_task(gateway.run())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    say("running")
    await asyncio.gather(task, return_exceptions=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--outbox", required=True)
    p.add_argument("--uplink", required=True)
    p.add_argument("--readings", type=int, default=0)
    p.add_argument("--start", default="2026-01-05T06:00:00+00:00")
    p.add_argument("--gateway-id", default="gw-kill")
    p.add_argument("--device-id", default="cuff-9")
    p.add_argument("--patient", default="p-9")
    p.add_argument("--address", default="C0:FF:EE:00:00:19")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--ack-timeout", type=float, default=2.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(parse_args()))
