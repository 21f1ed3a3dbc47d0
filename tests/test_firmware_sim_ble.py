"""Simulated BLE peripherals through bleak's public API, and the byte encoders they use.

Everything BLE here goes through ``bleak.BleakScanner`` / ``bleak.BleakClient`` with the
simulator's backend classes: the same calls the gateway makes against real hardware.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bleak.uuids import normalize_uuid_16
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.ble import (
    AttError,
    SimulatedAir,
    SimulatedCharacteristic,
    SimulatedPeripheral,
    SimulatedService,
)
from firmware_sim.devices import BloodPressureCuff, BloodPressureReading
from firmware_sim.encoding import (
    SpecialValue,
    encode_blood_pressure_measurement,
    encode_date_time,
    encode_float,
    encode_sfloat,
)

CUFF_ADDRESS = "C0:FF:EE:00:12:34"
BPM = normalize_uuid_16(0x2A35)
VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "ble-gatt.json"
WAIT = 2.0  # seconds; generous upper bound for simulated events, not a timing assertion

READINGS = [
    BloodPressureReading(128, 84, 99, 71, datetime(2025, 3, 1, 7, 30, 5)),
    BloodPressureReading(131.5, 86, 101, None, datetime(2025, 3, 1, 19, 2, 0), user_id=1),
    BloodPressureReading(119, 79, 92, 64, datetime(2025, 3, 2, 7, 45, 59), status=0x0004),
]


@pytest.fixture
def cuff() -> BloodPressureCuff:
    return BloodPressureCuff(
        CUFF_ADDRESS,
        READINGS,
        manufacturer="Acme Medical",
        model_number="BP-7",
        serial_number="A1B2C3",
        manufacturer_data={0xFFFF: b"\x01\x02"},
        rssi=-55,
    )


@pytest.fixture
def air(cuff: BloodPressureCuff) -> SimulatedAir:
    air = SimulatedAir(advertising_interval=0.01)
    air.add(cuff)
    return air


async def find(air: SimulatedAir, address: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        address, timeout=WAIT, backend=air.scanner_backend()
    )
    assert device is not None, f"{address} not discovered"
    return device


class Received:
    """Collects notification values, awaitable by count."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, sender: BleakGATTCharacteristic, data: bytearray) -> None:
        self.values.append(bytes(data))
        self._changed.set()

    async def until(self, count: int) -> list[bytes]:
        async with asyncio.timeout(WAIT):
            while len(self.values) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.values


# discovery


async def test_discover_returns_advertisement_data(air: SimulatedAir) -> None:
    found = await BleakScanner.discover(
        timeout=0.05, return_adv=True, backend=air.scanner_backend()
    )
    device, adv = found[CUFF_ADDRESS]
    assert device.name == "BP-Sim-1234"
    assert adv.local_name == "BP-Sim-1234"
    assert adv.service_uuids == [normalize_uuid_16(0x1810)]
    assert adv.manufacturer_data == {0xFFFF: b"\x01\x02"}
    assert adv.rssi == -55


async def test_advertisements_repeat_while_scanning(air: SimulatedAir) -> None:
    heard: list[AdvertisementData] = []
    several = asyncio.Event()

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        heard.append(adv)
        if len(heard) >= 3:
            several.set()

    scanner = BleakScanner(on_advertisement, backend=air.scanner_backend())
    assert scanner.backend_id == air.scanner_backend().__name__
    async with scanner, asyncio.timeout(WAIT):
        await several.wait()
    assert {adv.local_name for adv in heard} == {"BP-Sim-1234"}


async def test_service_uuid_filter_and_find_by_address(air: SimulatedAir) -> None:
    heart_rate = SimulatedPeripheral(
        "AA:00:00:00:00:01", local_name="HR", advertised_service_uuids=[0x180D]
    )
    air.add(heart_rate)
    found = await BleakScanner.discover(
        timeout=0.05, service_uuids=["1810"], backend=air.scanner_backend()
    )
    assert [d.address for d in found] == [CUFF_ADDRESS]
    device = await find(air, "aa:00:00:00:00:01")
    assert device.name == "HR"


async def test_silent_or_absent_peripherals_are_not_found(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    cuff.advertising = False
    assert (
        await BleakScanner.find_device_by_address(
            CUFF_ADDRESS, timeout=0.05, backend=air.scanner_backend()
        )
        is None
    )
    cuff.advertising = True
    air.remove(cuff)
    assert await BleakScanner.discover(timeout=0.05, backend=air.scanner_backend()) == []


# connection and GATT


async def test_connect_lists_services_and_reads_device_information(air: SimulatedAir) -> None:
    device = await find(air, CUFF_ADDRESS)
    async with BleakClient(device, backend=air.client_backend()) as client:
        assert client.is_connected
        assert client.name == "BP-Sim-1234"
        service_uuids = {s.uuid for s in client.services}
        assert service_uuids == {normalize_uuid_16(u) for u in (0x1810, 0x180A, 0x180F)}
        measurement = client.services.get_characteristic(BPM)
        assert measurement is not None
        assert measurement.properties == ["indicate"]
        assert measurement.service_uuid == normalize_uuid_16(0x1810)
        assert [d.uuid for d in measurement.descriptors] == [normalize_uuid_16(0x2902)]

        assert await client.read_gatt_char("2a29") == b"Acme Medical"
        assert await client.read_gatt_char("2a24") == b"BP-7"
        assert await client.read_gatt_char("2a25") == b"A1B2C3"
        assert await client.read_gatt_char("2a19") == b"\x64"
        assert await client.read_gatt_char("2a49") == b"\x00\x00"
        with pytest.raises(BleakGATTProtocolError) as error:
            await client.read_gatt_char(BPM)
        assert error.value.code is BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
    assert not client.is_connected


async def test_connect_by_address_string_and_service_filter(air: SimulatedAir) -> None:
    client = BleakClient(CUFF_ADDRESS.lower(), services=["180a"], backend=air.client_backend())
    async with client:
        assert [s.uuid for s in client.services] == [normalize_uuid_16(0x180A)]


async def test_stored_measurements_are_indicated_on_subscribe(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    device = await find(air, CUFF_ADDRESS)
    received = Received()
    async with BleakClient(device, backend=air.client_backend()) as client:
        measurement = client.services.get_characteristic(BPM)
        assert measurement is not None
        cccd = measurement.descriptors[0]
        assert await client.read_gatt_descriptor(cccd) == b"\x00\x00"
        await client.start_notify(BPM, received)
        assert await client.read_gatt_descriptor(cccd) == b"\x02\x00"  # indications on
        values = await received.until(len(READINGS))
        assert values == [
            encode_blood_pressure_measurement(
                r.systolic,
                r.diastolic,
                r.mean,
                unit="mmHg",
                timestamp=r.at,
                pulse=r.pulse,
                user_id=r.user_id,
                status=r.status,
            )
            for r in READINGS
        ]
        assert values[0] == bytes.fromhex("06800054006300e9070301071e054700")
        await cuff.settle()  # the cuff marks a reading sent once its indication is confirmed
        assert cuff.pending == ()
        assert cuff.sent == tuple(READINGS)

        live = BloodPressureReading(140, 90, 107, 80, datetime(2025, 3, 3, 8, 0, 0))
        assert await cuff.take_measurement(live) is True
        assert (await received.until(len(READINGS) + 1))[-1] == cuff.encode(live)

        await client.stop_notify(BPM)
        later = BloodPressureReading(122, 80, 94, 66, datetime(2025, 3, 3, 20, 0, 0))
        assert await cuff.take_measurement(later) is False
        assert list(cuff.pending) == [later]
    assert len(received.values) == len(READINGS) + 1


async def test_async_notification_callback(air: SimulatedAir, cuff: BloodPressureCuff) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_indication(sender: BleakGATTCharacteristic, data: bytearray) -> None:
        await got.put(bytes(data))

    async with BleakClient(CUFF_ADDRESS, backend=air.client_backend()) as client:
        await client.start_notify(BPM, on_indication)
        async with asyncio.timeout(WAIT):
            assert await got.get() == cuff.encode(READINGS[0])


async def test_battery_level_notifications(air: SimulatedAir, cuff: BloodPressureCuff) -> None:
    received = Received()
    async with BleakClient(CUFF_ADDRESS, backend=air.client_backend()) as client:
        await client.start_notify("2a19", received)
        await cuff.set_battery_level(15)
        assert await received.until(1) == [b"\x0f"]
        assert await client.read_gatt_char("2a19") == b"\x0f"


async def test_device_side_disconnect_fires_disconnected_callback(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    dropped = asyncio.Event()
    device = await find(air, CUFF_ADDRESS)
    client = BleakClient(device, lambda _: dropped.set(), backend=air.client_backend())
    await client.connect()
    assert cuff.connected
    await cuff.disconnect()
    async with asyncio.timeout(WAIT):
        await dropped.wait()
    assert not client.is_connected
    assert not cuff.connected
    with pytest.raises(BleakError):
        await client.read_gatt_char("2a29")
    await client.connect()  # the cuff advertises again, so the gateway can reconnect
    assert client.is_connected
    await client.disconnect()


async def test_leaving_range_drops_the_connection(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    dropped = asyncio.Event()
    async with BleakClient(
        CUFF_ADDRESS, lambda _: dropped.set(), backend=air.client_backend()
    ) as client:
        air.remove(cuff)
        async with asyncio.timeout(WAIT):
            await dropped.wait()
        assert not client.is_connected


async def test_connect_to_out_of_range_device_fails(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    device = await find(air, CUFF_ADDRESS)
    air.remove(cuff)
    with pytest.raises(BleakError) as error:
        await BleakClient(device, backend=air.client_backend()).connect()
    assert isinstance(error.value, BleakDeviceNotFoundError)
    with pytest.raises(BleakError):
        await BleakClient("00:11:22:33:44:55", backend=air.client_backend()).connect()


async def test_broadcaster_is_heard_but_never_connected(air: SimulatedAir) -> None:
    from firmware_sim.devices import BroadcastScale

    scale = BroadcastScale("C0:FF:EE:00:00:5C")
    air.add(scale)
    scale.show_weight(70.0)
    found = await BleakScanner.discover(timeout=0.1, return_adv=True, backend=air.scanner_backend())
    _, adv = found[scale.address]
    assert adv.local_name == "FS2-005C"
    assert adv.manufacturer_data == {0xFFFF: bytes.fromhex("0100b036")}
    assert scale.heard > 0
    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient(scale.address, backend=air.client_backend()).connect()
    assert not scale.connected


async def test_refused_connections_are_bleak_errors_then_succeed(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    cuff.refuse_connections = 1
    with pytest.raises(BleakError, match="failed to be established"):
        await BleakClient(CUFF_ADDRESS, backend=air.client_backend()).connect()
    assert not cuff.connected
    async with BleakClient(CUFF_ADDRESS, backend=air.client_backend()) as client:
        assert client.is_connected
    assert cuff.refuse_connections == 0


async def test_connected_peripheral_stops_advertising(air: SimulatedAir) -> None:
    async with BleakClient(CUFF_ADDRESS, backend=air.client_backend()):
        assert await BleakScanner.discover(timeout=0.05, backend=air.scanner_backend()) == []
        with pytest.raises(BleakError):
            await BleakClient(CUFF_ADDRESS, backend=air.client_backend()).connect()


async def test_cuff_can_drop_the_link_after_transfer(air: SimulatedAir) -> None:
    cuff = BloodPressureCuff("C0:FF:EE:00:00:02", READINGS[:1], disconnect_after_transfer=True)
    air.add(cuff)
    dropped = asyncio.Event()
    received = Received()
    client = BleakClient(cuff.address, lambda _: dropped.set(), backend=air.client_backend())
    await client.connect()
    await client.start_notify(BPM, received)
    async with asyncio.timeout(WAIT):
        await dropped.wait()
    assert received.values == [cuff.encode(READINGS[0])]


# bonding


async def test_bonding_required_for_protected_characteristics(air: SimulatedAir) -> None:
    cuff = BloodPressureCuff("C0:FF:EE:00:00:03", READINGS[:1], requires_bonding=True)
    air.add(cuff)
    received = Received()
    async with BleakClient(cuff.address, backend=air.client_backend()) as client:
        with pytest.raises(BleakGATTProtocolError) as error:
            await client.start_notify(BPM, received)
        assert error.value.code is BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION
        assert await client.read_gatt_char("2a29")  # device information stays open
        await client.pair()
        assert cuff.bonded
        await client.start_notify(BPM, received)
        await received.until(1)
    async with BleakClient(cuff.address, backend=air.client_backend()) as client:
        await client.unpair()
        assert not cuff.bonded
        assert not client.is_connected


async def test_read_requiring_bonding_fails_on_unbonded_link(air: SimulatedAir) -> None:
    peripheral = SimulatedPeripheral(
        "AA:00:00:00:00:02",
        services=[
            SimulatedService(
                "12345678-0000-1000-8000-00805f9b34fb",
                [SimulatedCharacteristic(0xFF01, ["read"], b"secret", requires_bonding=True)],
            )
        ],
    )
    air.add(peripheral)
    async with BleakClient(peripheral.address, backend=air.client_backend()) as client:
        with pytest.raises(BleakError, match="Insufficient Authentication"):
            await client.read_gatt_char("ff01")
    async with BleakClient(peripheral.address, pair=True, backend=air.client_backend()) as client:
        assert await client.read_gatt_char("ff01") == b"secret"


async def test_rejected_pairing_is_a_bleak_error(air: SimulatedAir) -> None:
    peripheral = SimulatedPeripheral("AA:00:00:00:00:03", pairable=False)
    air.add(peripheral)
    with pytest.raises(BleakError, match="Pairing"):
        await BleakClient(peripheral.address, pair=True, backend=air.client_backend()).connect()
    assert not peripheral.connected


# writes and device reactions


class RecordAccessDevice(SimulatedPeripheral):
    """A peripheral whose control point answers a write with notifications (RACP-like)."""

    CONTROL = normalize_uuid_16(0xFF02)
    RECORDS = normalize_uuid_16(0xFF03)

    def __init__(self) -> None:
        super().__init__(
            "AA:00:00:00:00:04",
            services=[
                SimulatedService(
                    0xFF00,
                    [
                        SimulatedCharacteristic(self.RECORDS, ["notify"]),
                        SimulatedCharacteristic(
                            self.CONTROL, ["write", "indicate"], on_write=self._on_control
                        ),
                    ],
                )
            ],
        )

    def _on_control(self, data: bytes) -> None:
        if data[:1] != b"\x01":
            raise AttError(BleakGATTProtocolErrorCode.VALUE_NOT_ALLOWED)
        self.run_soon(self._report(count=data[1]))

    async def _report(self, count: int) -> None:
        for number in range(count):
            await self.notify(self.RECORDS, bytes([number]))
        await self.notify(self.CONTROL, b"\x06\x00\x01\x01")


async def test_write_triggers_notifications(air: SimulatedAir) -> None:
    device = RecordAccessDevice()
    air.add(device)
    records, control = Received(), Received()
    async with BleakClient(device.address, backend=air.client_backend()) as client:
        await client.start_notify(device.RECORDS, records)
        await client.start_notify(device.CONTROL, control)
        await client.write_gatt_char(device.CONTROL, b"\x01\x03", response=True)
        assert await records.until(3) == [b"\x00", b"\x01", b"\x02"]
        assert await control.until(1) == [b"\x06\x00\x01\x01"]
        with pytest.raises(BleakGATTProtocolError) as error:
            await client.write_gatt_char(device.CONTROL, b"\x09", response=True)
        assert error.value.code is BleakGATTProtocolErrorCode.VALUE_NOT_ALLOWED
        with pytest.raises(BleakGATTProtocolError):
            await client.write_gatt_char(device.RECORDS, b"\x00", response=True)
        await device.settle()


async def test_gateway_style_connection_with_bleak_retry_connector(
    air: SimulatedAir, cuff: BloodPressureCuff
) -> None:
    from bleak_retry_connector import establish_connection

    device = await find(air, CUFF_ADDRESS)
    client = await establish_connection(
        BleakClient, device, "cuff", max_attempts=1, backend=air.client_backend()
    )
    try:
        assert await client.read_gatt_char("2a29") == b"Acme Medical"
    finally:
        await client.disconnect()


def test_backend_must_be_bound_to_an_air() -> None:
    from firmware_sim.ble import SimulatedBleakClient

    with pytest.raises(BleakError, match="SimulatedAir"):
        BleakClient(CUFF_ADDRESS, backend=SimulatedBleakClient)


# encoders: IEEE 11073 numbers


def _vectors(characteristic: str, *fields: str) -> list[Any]:
    """Standard-conformance vectors of one characteristic whose ``expected`` has ``fields``."""
    if not VECTORS.is_file():
        return [pytest.param(None, id="vectors-missing")]
    entries = json.loads(VECTORS.read_text())
    return [
        pytest.param(e, id=f"{characteristic}-{e['hex']}")
        for e in entries
        if e["characteristic"] == characteristic
        and e["conformance"] == "standard"
        and all(f in e["expected"] for f in fields)
    ]


def _require(vector: dict[str, Any] | None) -> dict[str, Any]:
    if vector is None:
        pytest.fail(f"test vectors missing: expected {VECTORS} (the shared/ checkout)")
    return vector


_SPECIAL_NAMES = {
    "NaN": SpecialValue.NAN,
    "NRes": SpecialValue.NRES,
    "+INF": SpecialValue.POSITIVE_INFINITY,
    "-INF": SpecialValue.NEGATIVE_INFINITY,
    "RFU": SpecialValue.RESERVED,
}


@pytest.mark.parametrize("vector", _vectors("SFLOAT"))
def test_sfloat_vectors(vector: dict[str, Any] | None) -> None:
    entry = _require(vector)
    value = entry["expected"]["value"]
    assert encode_sfloat(_SPECIAL_NAMES.get(value, value)).hex() == entry["hex"]


@pytest.mark.parametrize("vector", _vectors("FLOAT"))
def test_float_vectors(vector: dict[str, Any] | None) -> None:
    entry = _require(vector)
    value = entry["expected"]["value"]
    assert encode_float(_SPECIAL_NAMES.get(value, value)).hex() == entry["hex"]


@pytest.mark.parametrize(
    ("encode", "value", "expected"),
    [
        (encode_sfloat, float("nan"), "ff07"),
        (encode_sfloat, float("inf"), "fe07"),
        (encode_sfloat, float("-inf"), "0208"),
        (encode_sfloat, 0, "0000"),
        (encode_sfloat, 120, "7800"),  # integers that fit keep exponent 0
        (encode_sfloat, -120, "880f"),
        (encode_sfloat, 18.9, "bdf0"),
        (encode_sfloat, 1 / 3, "4dd1"),  # rounded to 4 digits: 333e-3
        (encode_sfloat, 2045.7, "cd10"),  # 205e1: rounding may carry into the exponent
        (encode_sfloat, 100000, "0150"),
        (encode_float, float("nan"), "ffff7f00"),
        (encode_float, -1.5, "f1ffffff"),
        (encode_float, 36.6, "6e0100ff"),
    ],
)
def test_number_encodings(encode: Callable[[float], bytes], value: float, expected: str) -> None:
    assert encode(value).hex() == expected


@pytest.mark.parametrize(("encode", "too_big"), [(encode_sfloat, 2.05e10), (encode_float, 8.4e133)])
def test_number_out_of_range(encode: Callable[[float], bytes], too_big: float) -> None:
    with pytest.raises(ValueError, match="range"):
        encode(too_big)


def _decode_sfloat(raw: bytes) -> float:
    word = int.from_bytes(raw, "little")
    mantissa, exponent = word & 0x0FFF, word >> 12
    mantissa -= 0x1000 if mantissa >= 0x0800 else 0
    exponent -= 0x10 if exponent >= 0x8 else 0
    return mantissa * 10.0**exponent


@given(st.integers(min_value=-2045, max_value=2045))
def test_sfloat_integers_are_exact(value: int) -> None:
    raw = encode_sfloat(value)
    assert _decode_sfloat(raw) == value
    assert raw[1] >> 4 == 0


@given(st.floats(min_value=-2.04e10, max_value=2.04e10, allow_nan=False, allow_infinity=False))
def test_sfloat_rounding_error_is_bounded(value: float) -> None:
    # a mantissa of at most 2045 keeps 3 to 4 significant digits: error <= 0.5 / 205
    decoded = _decode_sfloat(encode_sfloat(value))
    assert decoded == pytest.approx(value, rel=2.5e-3, abs=5e-9)


# encoders: Date Time and Blood Pressure Measurement


def test_date_time() -> None:
    assert encode_date_time(datetime(2020, 5, 21, 10, 30, 45)).hex() == "e40705150a1e2d"
    with pytest.raises(ValueError, match="year"):
        encode_date_time(datetime(1500, 1, 1))


# valid payloads that list every value (the others are decoder tests: nothing to encode)
@pytest.mark.parametrize("vector", _vectors("0x2A35", "systolic", "unit"))
def test_blood_pressure_vectors(vector: dict[str, Any] | None) -> None:
    entry = _require(vector)
    expected = entry["expected"]
    stamp = expected.get("timestamp")
    if stamp is not None and stamp["year"] is None:
        pytest.skip("'year not known' (0) is not expressible as a datetime")
    encoded = encode_blood_pressure_measurement(
        expected["systolic"],
        expected["diastolic"],
        expected["mean_arterial_pressure"],
        unit=expected["unit"],
        timestamp=None if stamp is None else datetime(**stamp),
        pulse=expected.get("pulse_rate_bpm"),
        user_id=expected.get("user_id"),
        status=expected.get("measurement_status_raw"),
    )
    assert encoded.hex() == entry["hex"]


def test_blood_pressure_minimal_and_special_values() -> None:
    encoded = encode_blood_pressure_measurement(120, 80, SpecialValue.NAN)
    assert encoded.hex() == "0078005000ff07"
    with pytest.raises(ValueError, match="unit"):
        encode_blood_pressure_measurement(1, 1, 1, unit="bar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_id"):
        encode_blood_pressure_measurement(1, 1, 1, user_id=256)
