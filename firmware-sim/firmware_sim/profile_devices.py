"""A simulated BLE peripheral for any BLE device profile.

:func:`peripheral_for_profile` reads a profile (``gateway.profiles.Profile``) and stands up
the device it describes:

- it advertises the profile's example local name (or ``SIM-<profile id>`` when the
  profile matches on services only), its service UUIDs and its manufacturer id;
- its GATT table holds every characteristic of the profile in the first advertised
  service, with the properties the session asks for (``read``; ``notify``/``indicate``;
  the RACP ``write`` + ``indicate``), plus Current Time (0x2A2B, in the Current Time
  Service 0x1805) when the session sets the clock or a ``clock`` (:class:`DeviceClock`:
  drifted, or never set) is given; it reads the device's clock, and a write sets it;
  feature characteristics read a valid
  value, CGM Session Start Time reads the samples' ``cgm_session_start``;
- its session behaviour: a ``bond`` step makes every characteristic require bonding; a
  ``set_current_time`` step makes it send nothing until the clock is written (it
  disconnects instead, as such devices do); an ``racp`` step makes it a record store: the
  valid sample payloads become records (a Glucose Measurement's own Sequence Number, else
  a running number) sent only in answer to an RACP request, then the RACP response;
- otherwise it sends each characteristic's valid sample payloads, oldest first, once a
  central subscribes to it.

Faults, as options of :class:`ProfilePeripheral` (see its documentation): a disconnect in
the middle of an RACP transfer, records re-sent after a reconnect, garbage bytes on a
measurement characteristic, an RACP that never answers.

An advertising-only profile (``transport: ble-advertisement``) gets an
:class:`AdvertisingProfilePeripheral`: a broadcaster that advertises each valid sample
payload in its source (service or manufacturer data) a few times, one after the other.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from bleak.assigned_numbers import CharacteristicPropertyName

from firmware_sim._clock import DeviceClock
from firmware_sim._gatt import (
    SimulatedCharacteristic,
    SimulatedService,
    WriteHandler,
    normalize_uuid,
)
from firmware_sim._peripheral import SimulatedPeripheral
from firmware_sim.errors import AttError
from gateway.decoders import (
    DateTime,
    OpCode,
    Operator,
    RacpRequest,
    RacpResponse,
    ResponseCode,
    decode_current_time,
    decode_racp_request,
    encode_date_time,
)
from gateway.decoders.racp import FILTER_SEQUENCE_NUMBER
from gateway.errors import DecodeError
from gateway.profiles import Profile
from gateway.profiles._model import characteristic_key

__all__ = [
    "AdvertisingProfilePeripheral",
    "ProfilePeripheral",
    "Record",
    "peripheral_for_profile",
]

logger = logging.getLogger(__name__)

RACP = "2A52"
CURRENT_TIME = "2A2B"
CURRENT_TIME_SERVICE = 0x1805
#: characteristics that carry their RACP record number (uint16 after the flags byte)
SEQUENCED = frozenset({"2A18", "2A34"})
#: a valid value for the read-only characteristics a session reads, by decoder name
READ_VALUES: dict[str, bytes] = {
    "glucose_feature": b"\x00\x00",
    "weight_scale_feature": b"\x00\x00\x00\x00",
    "cgm_feature": b"\x00\x00\x00\x00\xff\xff",
}
_VENDOR_SERVICE = "0000fff0-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record: its sequence number, characteristic and value."""

    sequence: int
    characteristic: str
    payload: bytes


def _valid_payloads(profile: Profile) -> list[tuple[str, bytes]]:
    """(characteristic, payload) of every valid BLE sample, in file order."""
    out: list[tuple[str, bytes]] = []
    for sample in profile.samples:
        if sample.error is not None or sample.hex is None:
            continue
        key = characteristic_key(sample.characteristic or profile.characteristic(None).uuid)
        out.append((key, bytes.fromhex(sample.hex)))
    return out


def _session_start(profile: Profile) -> datetime:
    for sample in profile.samples:
        if sample.cgm_session_start:
            return datetime.fromisoformat(sample.cgm_session_start.replace("Z", "+00:00"))
    return datetime(2024, 1, 1, tzinfo=UTC)


class ProfilePeripheral(SimulatedPeripheral):
    """The simulated device a BLE profile describes (see the module documentation).

    Faults (each an attribute too, so a test can change it between connections):

    - ``drop_after_records=N``: in the next RACP transfer the device drops the link after
      sending N records (before the RACP response); the option then clears itself, so
      the transfer after it completes.
    - ``resend_after_reconnect=K``: every transfer after the first also re-sends the last
      K records already delivered, whatever the request asked for (firmware that
      ignores the filter's lower bound).
    - ``garbage=b"..."``: sent once, on the first measurement characteristic, right after
      the first record of the next transfer (or before the stored values of a device
      without RACP); then cleared.
    - ``racp_silent=True``: RACP requests are accepted (the write succeeds) and never
      answered: no records, no response, no disconnect.
    """

    def __init__(
        self,
        profile: Profile,
        address: str,
        *,
        local_name: str | None = None,
        disconnect_after_racp: bool = True,
        drop_after_records: int | None = None,
        resend_after_reconnect: int = 0,
        garbage: bytes | None = None,
        racp_silent: bool = False,
        clock: DeviceClock | None = None,
    ) -> None:
        if profile.transport != "ble" or profile.ble is None:
            raise ValueError(f"profile {profile.id} is not a BLE profile")
        self.profile = profile
        ble = profile.ble
        steps = {s.step for s in profile.session}
        self.needs_clock = "set_current_time" in steps
        #: the device's own clock: Current Time reports it, a write sets it; stamps of
        #: records taken at true time t are ``device_clock.at(t)`` (tests build them so)
        self.device_clock = clock if clock is not None else DeviceClock()
        self.uses_racp = "racp" in steps
        self.disconnect_after_racp = disconnect_after_racp
        self.drop_after_records = drop_after_records
        self.resend_after_reconnect = resend_after_reconnect
        self.garbage = garbage
        self.racp_silent = racp_silent
        #: RACP transfers served (records sent), cut short or not
        self.transfers = 0
        modes = {s.characteristic: s.mode for s in profile.session if s.step == "subscribe"}
        reads = {s.characteristic for s in profile.session if s.step == "read"}
        characteristics = []
        for spec in profile.characteristics:
            value = b""
            handler: WriteHandler | None = None
            props: list[CharacteristicPropertyName]
            if spec.uuid == RACP:
                props = ["write", "indicate"]
                handler = self._on_racp_write
            elif spec.uuid in reads:
                props = ["read"]
                value = self._read_value(spec.decoder)
            else:
                props = ["indicate" if modes.get(spec.uuid) == "indicate" else "notify"]
            characteristics.append(
                SimulatedCharacteristic(spec.uuid, props, value, on_write=handler)
            )
        primary = ble.service_uuids[0] if ble.service_uuids else _VENDOR_SERVICE
        services = [SimulatedService(primary, characteristics)]
        if self.needs_clock or clock is not None:
            current_time = SimulatedCharacteristic(
                CURRENT_TIME,
                ["read", "write"],
                self.device_clock.current_time(),
                on_read=self.device_clock.current_time,
                on_write=self._on_clock_write,
            )
            services.append(SimulatedService(CURRENT_TIME_SERVICE, [current_time]))
        manufacturer = {} if ble.manufacturer_id is None else {ble.manufacturer_id: b"\x01"}
        super().__init__(
            address,
            local_name=local_name or ble.local_name_example or f"SIM-{profile.id}",
            services=services,
            advertised_service_uuids=list(ble.service_uuids),
            manufacturer_data=manufacturer,
            requires_bonding="bond" in steps,
        )
        #: the device clock as the central set it (None: never set)
        self.clock_set: datetime | None = None
        #: RACP requests received, in order
        self.racp_requests: list[RacpRequest] = []
        #: (characteristic, payload) delivered to a central, in order
        self.sent: list[tuple[str, bytes]] = []
        self.records: list[Record] = []
        self._pending: dict[str, collections.deque[bytes]] = collections.defaultdict(
            collections.deque
        )
        for key, payload in _valid_payloads(profile):
            if self.uses_racp:
                if key != RACP:
                    self.add_record(payload, key)
            else:
                self._pending[key].append(payload)

    def _read_value(self, decoder: str) -> bytes:
        if decoder == "cgm_session_start_time":
            start = _session_start(self.profile).astimezone(UTC)
            return encode_date_time(DateTime.from_datetime(start)) + b"\x00\x00"
        return READ_VALUES.get(decoder, b"")

    # what tests and scenarios drive

    def add_record(self, payload: bytes, characteristic: str = "2A18") -> Record:
        """Store a record (RACP devices); its sequence number is read from the payload."""
        key = characteristic_key(characteristic)
        if key in SEQUENCED and len(payload) >= 3:
            sequence = int.from_bytes(payload[1:3], "little")
        else:
            sequence = max((r.sequence for r in self.records), default=0) + 1
        record = Record(sequence, key, bytes(payload))
        self.records.append(record)
        return record

    async def queue_value(self, characteristic: str, payload: bytes) -> None:
        """Store a value to send (non-RACP devices); sent now if a central listens."""
        key = characteristic_key(characteristic)
        self._pending[key].append(bytes(payload))
        await self._send_pending(key)

    def sent_sequences(self) -> list[int]:
        """Sequence numbers of the records delivered, in order."""
        return [
            int.from_bytes(p[1:3], "little")
            for c, p in self.sent
            if c in SEQUENCED and c != RACP and len(p) >= 3
        ]

    # behaviour

    def on_subscription_changed(
        self, characteristic: SimulatedCharacteristic, *, enabled: bool
    ) -> None:
        """Send stored values of a characteristic once a central subscribes to it."""
        if not enabled or self.uses_racp:
            return
        key = self._key(characteristic)
        if self.needs_clock and self.clock_set is None:
            logger.debug("%s: clock not set; disconnecting without sending", self.address)
            self.run_soon(self.disconnect())
            return
        self.run_soon(self._send_pending_task(key))

    async def _send_pending_task(self, key: str) -> None:
        if self.garbage is not None and self._pending.get(key):
            garbage, self.garbage = self.garbage, None
            if await self.notify(key, garbage) > 0:
                self.sent.append((key, garbage))
        await self._send_pending(key)

    async def _send_pending(self, key: str) -> int:
        pending = self._pending.get(key)
        sent = 0
        while pending and self.is_subscribed(key):
            if await self.notify(key, pending[0]) == 0:
                break
            self.sent.append((key, pending.popleft()))
            sent += 1
        return sent

    def _key(self, characteristic: SimulatedCharacteristic) -> str:
        for spec in self.profile.characteristics:
            if normalize_uuid(spec.uuid) == characteristic.uuid:
                return spec.uuid
        return characteristic.uuid

    def _on_clock_write(self, data: bytes) -> None:
        try:
            value = decode_current_time(data)
        except DecodeError as exc:
            from bleak.exc import BleakGATTProtocolErrorCode

            raise AttError(BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH) from exc
        self.clock_set = value.to_datetime(UTC)
        if self.clock_set is not None:
            self.device_clock.set(self.clock_set)
        self.characteristic(CURRENT_TIME).value = bytes(data)

    def _on_racp_write(self, data: bytes) -> None:
        try:
            request = decode_racp_request(data)
        except DecodeError:
            self.run_soon(self._respond(data[0] if data else 0, ResponseCode.OP_CODE_NOT_SUPPORTED))
            return
        self.racp_requests.append(request)
        if self.needs_clock and self.clock_set is None:
            self.run_soon(self.disconnect())
            return
        if self.racp_silent:
            logger.debug("%s: RACP request left unanswered (fault)", self.address)
            return
        self.run_soon(self._serve(request))

    def _select(self, request: RacpRequest) -> list[Record] | ResponseCode:
        records = sorted(self.records, key=lambda r: r.sequence)
        op, operand = request.operator, request.operand
        if op is Operator.ALL_RECORDS:
            return records
        if op is Operator.FIRST_RECORD:
            return records[:1]
        if op is Operator.LAST_RECORD:
            return records[-1:]
        if op in (Operator.GREATER_THAN_OR_EQUAL_TO, Operator.LESS_THAN_OR_EQUAL_TO):
            if len(operand) != 3 or operand[0] != FILTER_SEQUENCE_NUMBER:
                return ResponseCode.OPERAND_NOT_SUPPORTED
            bound = int.from_bytes(operand[1:3], "little")
            if op is Operator.GREATER_THAN_OR_EQUAL_TO:
                return [r for r in records if r.sequence >= bound]
            return [r for r in records if r.sequence <= bound]
        return ResponseCode.OPERATOR_NOT_SUPPORTED

    async def _serve(self, request: RacpRequest) -> None:
        selected = self._select(request)
        if isinstance(selected, ResponseCode):
            await self._respond(request.op_code, selected)
            return
        if request.op_code is OpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            response = RacpResponse(
                OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, number_of_records=len(selected)
            )
            await self.notify(RACP, response.encode())
            return
        if request.op_code is not OpCode.REPORT_STORED_RECORDS:
            await self._respond(request.op_code, ResponseCode.OP_CODE_NOT_SUPPORTED)
            return
        if self.transfers and self.resend_after_reconnect:
            delivered = {p for _, p in self.sent}
            ordered = sorted(self.records, key=lambda r: r.sequence)
            already = [r for r in ordered if r.payload in delivered]
            selected = already[-self.resend_after_reconnect :] + selected
        self.transfers += 1
        drop_after, self.drop_after_records = self.drop_after_records, None
        for n, record in enumerate(selected):
            if drop_after is not None and n == drop_after:
                logger.debug("%s: dropping the link mid-transfer (fault)", self.address)
                await self.disconnect()
                return
            if await self.notify(record.characteristic, record.payload) > 0:
                self.sent.append((record.characteristic, record.payload))
            if n == 0 and self.garbage is not None:
                garbage, self.garbage = self.garbage, None
                if await self.notify(record.characteristic, garbage) > 0:
                    self.sent.append((record.characteristic, garbage))
        code = ResponseCode.SUCCESS if selected else ResponseCode.NO_RECORDS_FOUND
        await self._respond(request.op_code, code)
        if self.disconnect_after_racp:
            await self.disconnect()

    async def _respond(self, op_code: int, code: ResponseCode) -> None:
        response = RacpResponse(
            OpCode.RESPONSE_CODE, request_op_code=int(op_code), response_code=int(code)
        )
        await self.notify(RACP, response.encode())


class AdvertisingProfilePeripheral(SimulatedPeripheral):
    """A broadcaster for an advertising-only profile.

    It advertises the profile's example name, service UUIDs and manufacturer id, and puts
    each valid sample payload, in file order, in the sample's source (service data or
    manufacturer data) for ``repeats`` advertisements; after the last it keeps repeating
    that one. It accepts no connection.
    """

    def __init__(
        self, profile: Profile, address: str, *, local_name: str | None = None, repeats: int = 3
    ) -> None:
        if profile.advertisement is None or profile.ble is None:
            raise ValueError(f"profile {profile.id} is not an advertising-only profile")
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        ble = profile.ble
        self.profile = profile
        self.repeats = repeats
        self._base_manufacturer = (
            {} if ble.manufacturer_id is None else {ble.manufacturer_id: b"\x01"}
        )
        #: (source, payload) of each valid sample, in file order
        self.payloads = [
            (
                profile.advertisement_source(
                    service_data=s.service_data, manufacturer_id=s.manufacturer_id
                ),
                bytes.fromhex(s.hex),
            )
            for s in profile.samples
            if s.error is None and s.hex is not None
        ]
        if not self.payloads:
            raise ValueError(f"profile {profile.id} has no valid sample to advertise")
        super().__init__(
            address,
            local_name=local_name or ble.local_name_example or f"SIM-{profile.id}",
            advertised_service_uuids=list(ble.service_uuids),
            manufacturer_data=self._base_manufacturer,
            accepts_connections=False,
        )
        #: how many advertisements were heard
        self.heard = 0
        self._show(0)

    @property
    def showing(self) -> int:
        """Index of the payload advertised now."""
        return min(self.heard // self.repeats, len(self.payloads) - 1)

    def _show(self, index: int) -> None:
        source, payload = self.payloads[index]
        self.manufacturer_data = dict(self._base_manufacturer)
        self.service_data = {}
        if source.service_data is not None:
            self.service_data = {normalize_uuid(source.service_data): payload}
        else:
            self.manufacturer_data[source.manufacturer_id or 0] = payload

    def on_advertised(self) -> None:
        """Move on to the next payload every ``repeats`` advertisements."""
        self.heard += 1
        self._show(self.showing)


def peripheral_for_profile(profile: Profile, address: str) -> SimulatedPeripheral:
    """A simulated BLE peripheral behaving as ``profile`` describes, at ``address``."""
    if profile.advertisement is not None:
        return AdvertisingProfilePeripheral(profile, address)
    return ProfilePeripheral(profile, address)
