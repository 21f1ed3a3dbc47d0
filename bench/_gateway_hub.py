"""The hub process of ``bench/gateway.py``: the real ``gateway.runtime.Gateway`` with
simulated BLE devices producing readings at a steady rate, uplinked to a real broker.

    python -m bench._gateway_hub --broker mqtt://127.0.0.1:PORT --outbox PATH \\
        [--devices 20] [--rate 1.0] [--tick 1.0] [--no-account]

Run from the repository root with ``-m`` (``bench/gateway.py`` does): run as a file, the
``bench`` directory would come first on ``sys.path`` and ``bench/gateway.py`` would shadow
the ``gateway`` package.

It prints JSON lines on stdout: one ``stage`` line each after the interpreter started, the
gateway was imported and the simulator was built (resident memory at each), then one
``tick`` line every ``--tick`` seconds with the process's CPU time, VmRSS/VmHWM and the
gateway's counters. SIGUSR1 stops the simulated devices and lets the hub drain its outbox
(a last ``drained`` line); SIGTERM stops it at once.

The simulated devices are the bleak backend, so they run inside this process. To keep
their share apart, every asyncio task's steps are timed (``time.thread_time``) and charged
to the task's owner, simulator or gateway (:class:`CpuAccount`; ``--no-account``: off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from firmware_sim.profile_devices import ProfilePeripheral
    from gateway.profiles import ProfileRegistry
    from gateway.runtime import Gateway

#: what one patient has at home: (role, profile of even patients, profile of odd patients)
KIT = (
    ("bp", "sig-blood-pressure-monitor", "corvalis-bp7-connect"),
    ("glucose", "glucora-gm300", "glucora-gm300"),
    ("plx", "sig-pulse-oximeter", "sig-pulse-oximeter"),
    ("temperature", "sig-thermometer", "sig-thermometer"),
    ("weight", "sig-weight-scale", "libra-ls20"),
)
#: the characteristic each role sends its readings on
CHARACTERISTIC = {
    "bp": "2A35",
    "glucose": "2A18",
    "plx": "2A5F",
    "temperature": "2A1C",
    "weight": "2A9D",
}
GATEWAY_ID = "gw-bench"
#: device time advances this much per reading (Date Time has one-second resolution, and
#: a reading's identity is device + time + kind, so no two readings of a device share one)
DEVICE_STEP = timedelta(seconds=10)
#: RACP meters keep this many records (a real meter keeps a few hundred)
RECORDS_KEPT = 100
ADVERTISING_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class BenchDevice:
    """One simulated device of the bench fleet and the patient it is paired to."""

    device_id: str
    patient: str
    address: str
    profile: str
    role: str

    @property
    def characteristic(self) -> str:
        return CHARACTERISTIC[self.role]


def fleet(devices: int) -> list[BenchDevice]:
    """``devices`` devices, five per patient (cuff, glucose meter, oximeter, thermometer,
    scale), alternating between two profiles of each kind where the project ships two."""
    out: list[BenchDevice] = []
    for n in range(devices):
        p, slot = divmod(n, len(KIT))
        role, even, odd = KIT[slot]
        out.append(
            BenchDevice(
                device_id=f"{role}-{p:03d}",
                patient=f"p-bench-{p:03d}",
                address=f"C0:DE:00:00:{p:02X}:{slot:02X}",
                profile=even if p % 2 == 0 else odd,
                role=role,
            )
        )
    return out


# -- synthetic readings, encoded as the devices send them ----------------------------------


def _sfloat(mantissa: int, exponent: int) -> bytes:
    return (((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)).to_bytes(2, "little")


def _float(mantissa: int, exponent: int) -> bytes:
    return (((exponent & 0xFF) << 24) | (mantissa & 0x00FFFFFF)).to_bytes(4, "little")


def _date_time(at: datetime) -> bytes:
    return at.year.to_bytes(2, "little") + bytes([at.month, at.day, at.hour, at.minute, at.second])


def payload(device: BenchDevice, n: int, at: datetime) -> bytes:
    """The ``n``-th value ``device`` sends, measured at device time ``at`` (plausible values
    that vary a little from reading to reading)."""
    wobble = (n * 7919 + len(device.device_id)) % 11 - 5  # -5..5, deterministic
    if device.role == "bp":
        systolic, diastolic = 124 + wobble, 80 + wobble // 2
        mean = (systolic + 2 * diastolic) // 3
        # flags: mmHg, time stamp, pulse rate
        return (
            b"\x06"
            + _sfloat(systolic, 0)
            + _sfloat(diastolic, 0)
            + _sfloat(mean, 0)
            + _date_time(at)
            + _sfloat(70 + wobble, 0)
        )
    if device.role == "glucose":
        # flags: time offset, concentration in kg/L; mg/dL x 1e-5 = kg/L; capillary, finger
        sequence = n + 100  # after the profile's sample records
        return (
            b"\x03"
            + (sequence & 0xFFFF).to_bytes(2, "little")
            + _date_time(at)
            + b"\x00\x00"
            + _sfloat(105 + wobble, -5)
            + b"\x11"
        )
    if device.role == "plx":
        # continuous measurement: SpO2 and pulse rate, untimed (the hub stamps it)
        return b"\x00" + _sfloat(97 + wobble // 3, 0) + _sfloat(68 + wobble, 0)
    if device.role == "temperature":
        # flags: Celsius, time stamp
        return b"\x02" + _float(366 + wobble, -1) + _date_time(at)
    # weight, flags: time stamp; SI 0.005 kg steps, or 0.01 lb for the LS-20 (its quirk)
    raw = 15430 + wobble * 10 if device.profile == "libra-ls20" else 14000 + wobble * 20
    return b"\x02" + raw.to_bytes(2, "little") + _date_time(at)


# -- measurement ----------------------------------------------------------------------------


def memory_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in kB, from /proc/self/status."""
    rss = hwm = 0
    with Path("/proc/self/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def cpu_seconds() -> float:
    """User + system CPU time of the whole process, all threads (CLOCK_PROCESS_CPUTIME_ID:
    the same as utime + stime in /proc/PID/stat, without its 10 ms ticks)."""
    return time.process_time()


def emit(kind: str, **fields: Any) -> None:
    rss, hwm = memory_kb()
    line = {"kind": kind, "t": time.monotonic(), "cpu": cpu_seconds(), "rss_kb": rss}
    line |= {"hwm_kb": hwm, **fields}
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


class _TimedCoroutine:
    """A coroutine that adds the event-loop thread's CPU time of each step to an owner."""

    __slots__ = ("_account", "_coro", "_owner")

    def __init__(self, coro: Coroutine[Any, Any, Any], account: dict[str, float], owner: str):
        self._coro = coro
        self._account = account
        self._owner = owner

    def send(self, value: Any) -> Any:
        started = time.thread_time()
        try:
            return self._coro.send(value)
        finally:
            self._account[self._owner] += time.thread_time() - started

    def throw(self, *exc: Any) -> Any:
        started = time.thread_time()
        try:
            return self._coro.throw(*exc)
        finally:
            self._account[self._owner] += time.thread_time() - started

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> _TimedCoroutine:
        return self

    def __iter__(self) -> _TimedCoroutine:
        return self

    def __next__(self) -> Any:
        return self.send(None)


Coroutine.register(_TimedCoroutine)


class CpuAccount:
    """Where the event-loop thread's CPU time goes, by the owner of each asyncio task.

    A task belongs to the simulator when its coroutine is ``firmware_sim`` code (device
    reactions, the simulated radio) or a device driver of this module; to the bench for the
    rest of this module (reporting); else to the gateway (its own tasks and those of the
    libraries it uses). A task step is charged whole to the task's owner: the gateway's
    callbacks run from a simulated notification are charged to the simulator, the
    simulated backend's work inside a gateway session (what BlueZ and D-Bus do on a real
    hub) to the gateway. Work outside tasks (socket callbacks, timers) stays unattributed.
    """

    def __init__(self) -> None:
        self.seconds = {"sim": 0.0, "gateway": 0.0, "bench": 0.0}
        here = Path(__file__).resolve()
        self._hub = str(here)
        self._sim = str(here.parents[1] / "firmware-sim")

    def owner(self, coro: Any) -> str:
        code = getattr(coro, "cr_code", None)
        if code is None:
            return "gateway"
        if code.co_filename.startswith(self._sim):
            return "sim"
        if code.co_filename == self._hub:
            return "sim" if code.co_name == "drive" else "bench"
        return "gateway"

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            timed = _TimedCoroutine(coro, self.seconds, self.owner(coro))
            return asyncio.Task(timed, loop=loop, **kwargs)

        loop.set_task_factory(factory)


# -- the hub --------------------------------------------------------------------------------


def increasing_clock() -> Callable[[], datetime]:
    """Wall-clock time, strictly increasing by at least 1 ms (untimed readings, stamped by
    the hub, never share an identity)."""
    last = [datetime.now(UTC)]

    def clock() -> datetime:
        last[0] = max(datetime.now(UTC), last[0] + timedelta(milliseconds=1))
        return last[0]

    return clock


class Hub:
    """The gateway and its simulated devices in this process."""

    def __init__(self, args: argparse.Namespace, registry: ProfileRegistry) -> None:
        from firmware_sim.ble import SimulatedAir
        from firmware_sim.profile_devices import ProfilePeripheral
        from gateway.ble import PairedDevice
        from gateway.runtime import Gateway, GatewayConfig

        self.args = args
        self.devices = fleet(args.devices)
        self.air = SimulatedAir(advertising_interval=ADVERTISING_INTERVAL)
        self.peripherals: dict[str, ProfilePeripheral] = {}
        for d in self.devices:
            peripheral = ProfilePeripheral(registry.get(d.profile), d.address)
            self.air.add(peripheral)
            self.peripherals[d.device_id] = peripheral
        emit("stage", stage="simulator built", devices=len(self.devices))
        self.gateway: Gateway = Gateway(
            GatewayConfig(
                gateway_id=GATEWAY_ID,
                uplink=args.broker,
                outbox_path=Path(args.outbox),
                devices=tuple(
                    PairedDevice(d.device_id, d.patient, address=d.address, profile=d.profile)
                    for d in self.devices
                ),
            ),
            scanner_backend=self.air.scanner_backend(),
            client_backend=self.air.client_backend(),
            profiles=registry,
            clock=increasing_clock(),
        )
        self.generated = 0
        self.generating = True
        # device clocks: a day ago, so that readings never reach the future
        self.epoch = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    async def drive(self, device: BenchDevice, offset: float) -> None:
        """Produce ``--rate`` values a second on one device, on a fixed schedule."""
        peripheral = self.peripherals[device.device_id]
        loop = asyncio.get_running_loop()
        period = 1.0 / self.args.rate
        due = loop.time() + offset
        n = 0
        while self.generating:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += period
            at = self.epoch + n * DEVICE_STEP
            value = payload(device, n, at)
            n += 1
            self.generated += 1
            if peripheral.uses_racp:
                peripheral.add_record(value, device.characteristic)
                del peripheral.records[:-RECORDS_KEPT]
            else:
                await peripheral.queue_value(device.characteristic, value)

    async def outboxed(self) -> tuple[int, int]:
        """(readings ever queued in the outbox, still pending)."""
        outbox = self.gateway.outbox
        pending = await asyncio.to_thread(outbox.pending)
        sent = await asyncio.to_thread(outbox.sent)
        return pending + sent, pending

    async def report(self, account: CpuAccount | None, kind: str = "tick") -> None:
        total, pending = await self.outboxed()
        status = self.gateway.collector
        for peripheral in self.peripherals.values():
            peripheral.sent.clear()  # delivered-values log: keep the simulator lean
        fields: dict[str, Any] = {
            "generated": self.generated,
            "readings_in": status.readings_in,
            "rejected": status.rejected,
            "outboxed": total,
            "pending": pending,
            "bundles_sent": self.gateway.uplink.stats.bundles_sent,
            "resends": self.gateway.uplink.stats.resends,
            "connected": self.gateway.uplink.stats.connected,
        }
        if account is not None:
            fields["main_thread_cpu"] = time.thread_time()
            fields["cpu_by_owner"] = dict(account.seconds)
        emit(kind, **fields)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        drain = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, drain.set)
        account = None
        if self.args.account:
            account = CpuAccount()
            account.install(loop)
        period = 1.0 / self.args.rate
        n = max(1, len(self.devices))
        gateway_task = asyncio.create_task(self.gateway.run(), name="gateway")
        drivers = [
            asyncio.create_task(self.drive(d, period * i / n), name=f"drive-{d.device_id}")
            for i, d in enumerate(self.devices)
        ]
        try:
            while not stop.is_set():
                if drain.is_set():
                    await self._drain(drivers)
                    await self.report(account, "drained")
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(stop, drain), self.args.tick)
                if gateway_task.done():
                    gateway_task.result()  # raises what stopped the gateway
                    raise RuntimeError("the gateway stopped on its own")
                if not drain.is_set() and not stop.is_set():
                    await self.report(account)
        finally:
            for task in (*drivers, gateway_task):
                task.cancel()
            await asyncio.gather(*drivers, gateway_task, return_exceptions=True)

    async def _drain(self, drivers: list[asyncio.Task[None]]) -> None:
        """Stop producing; wait until the devices' values are in the outbox and the
        backend acknowledged all of it (nothing new for two seconds, nothing pending)."""
        self.generating = False
        await asyncio.gather(*drivers, return_exceptions=True)
        deadline = time.monotonic() + self.args.drain_timeout
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total, pending = await self.outboxed()
            if total != last:
                last, quiet_since = total, time.monotonic()
            elif pending == 0 and time.monotonic() - quiet_since >= 2.0:
                return
            await asyncio.sleep(0.2)


async def _either(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, help="mqtt:// URL of the uplink broker")
    parser.add_argument("--outbox", required=True, help="path of the outbox database")
    parser.add_argument("--devices", type=int, default=20, help="simulated devices")
    parser.add_argument("--rate", type=float, default=1.0, help="values a second per device")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between tick lines")
    parser.add_argument(
        "--no-account", dest="account", action="store_false", help="no CPU time per task owner"
    )
    parser.add_argument("--drain-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.devices < 0:
        parser.error("--rate must be positive and --devices not negative")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emit("stage", stage="interpreter")
    # imported here, in stages, to see what each costs in resident memory
    import gateway.runtime  # noqa: F401
    from gateway.profiles import ProfileRegistry

    registry = ProfileRegistry.load(env={})
    emit("stage", stage="gateway imported")
    hub = Hub(args, registry)
    asyncio.run(hub.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
