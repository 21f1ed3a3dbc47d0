"""Record Access Control Point (0x2A52): requests the gateway writes, responses it receives.

Op codes, operators and response codes from GLS 1.0.1 (also used by CGMS and
PLXS) and GSS "Record Access Control Point". A request is Op Code uint8, Operator
uint8, then an operand (for a filtered request: Filter Type uint8 and the filter value).
A response is Op Code 5 (Number of Stored Records Response, operand uint16) or 6 (Response
Code: request op code uint8, response code uint8), always with the Null operator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from gateway.decoders._base import Decoded, DeviceContext, frozen
from gateway.errors import DecodeError


class OpCode(enum.IntEnum):
    """RACP op codes (GLS)."""

    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class Operator(enum.IntEnum):
    """RACP operators (GLS)."""

    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL_TO = 2
    GREATER_THAN_OR_EQUAL_TO = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class ResponseCode(enum.IntEnum):
    """RACP response codes (GLS)."""

    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


#: Filter Type for sequence numbers (GLS; CGMS uses 1 for Time Offset)
FILTER_SEQUENCE_NUMBER = 0x01
_RESPONSE_OPS = (OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, OpCode.RESPONSE_CODE)


def _text(member: enum.IntEnum) -> str:
    return member.name.lower().replace("_", " ")


def op_code_name(code: int) -> str:
    """The op code in words ("report stored records"), "reserved (n)" if unknown."""
    try:
        return _text(OpCode(code))
    except ValueError:
        return f"reserved ({code})"


def response_code_name(code: int) -> str:
    """The response code in words ("no records found"), "reserved (n)" if unknown."""
    try:
        return _text(ResponseCode(code))
    except ValueError:
        return f"reserved ({code})"


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request written to the RACP: op code, operator, raw operand bytes."""

    op_code: OpCode
    operator: Operator
    operand: bytes = b""

    def encode(self) -> bytes:
        """The bytes to write (GLS)."""
        return bytes((self.op_code, self.operator)) + self.operand


def report_all_records() -> bytes:
    """Request: report all stored records (GLS, op code 1, operator 1)."""
    return RacpRequest(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS).encode()


def _from_sequence(op: OpCode, sequence_number: int) -> bytes:
    if not 0 <= sequence_number <= 0xFFFF:
        raise ValueError(f"sequence number {sequence_number} is not a uint16")
    operand = bytes((FILTER_SEQUENCE_NUMBER,)) + sequence_number.to_bytes(2, "little")
    return RacpRequest(op, Operator.GREATER_THAN_OR_EQUAL_TO, operand).encode()


def report_records_from(sequence_number: int) -> bytes:
    """Request: report records with sequence number >= ``sequence_number`` (GLS)."""
    return _from_sequence(OpCode.REPORT_STORED_RECORDS, sequence_number)


def report_number_of_records(from_sequence_number: int | None = None) -> bytes:
    """Request: report the number of stored records (all, or from a sequence number)."""
    if from_sequence_number is None:
        op = OpCode.REPORT_NUMBER_OF_STORED_RECORDS
        return RacpRequest(op, Operator.ALL_RECORDS).encode()
    return _from_sequence(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, from_sequence_number)


def abort_operation() -> bytes:
    """Request: abort the running procedure (GLS, op code 3, Null operator)."""
    return RacpRequest(OpCode.ABORT_OPERATION, Operator.NULL).encode()


def decode_racp_request(data: bytes) -> RacpRequest:
    """Parse a request (the inverse of :meth:`RacpRequest.encode`; for simulators, tests)."""
    if len(data) < 2:
        raise DecodeError(f"RACP request has {len(data)} bytes; op code and operator need 2")
    try:
        op = OpCode(data[0])
    except ValueError:
        raise DecodeError(f"op code {data[0]} is reserved") from None
    if op in _RESPONSE_OPS:
        raise DecodeError(f"op code {op.value} ({_text(op)}) is a response, not a request")
    try:
        operator = Operator(data[1])
    except ValueError:
        raise DecodeError(f"operator {data[1]} is reserved") from None
    return RacpRequest(op, operator, bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """A response indicated on the RACP.

    ``number_of_records`` is set for op code 5; ``request_op_code`` and ``response_code``
    for op code 6.
    """

    op_code: OpCode
    number_of_records: int | None = None
    request_op_code: int | None = None
    response_code: int | None = None

    @property
    def succeeded(self) -> bool:
        """True for a number-of-records response or a Success response code."""
        return self.op_code is OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE or (
            self.response_code == ResponseCode.SUCCESS
        )

    def encode(self) -> bytes:
        """The bytes a server indicates (for simulators and tests)."""
        if self.op_code is OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            count = self.number_of_records or 0
            return bytes((self.op_code, Operator.NULL)) + count.to_bytes(2, "little")
        return bytes(
            (self.op_code, Operator.NULL, self.request_op_code or 0, self.response_code or 0)
        )


def decode_racp_response(data: bytes) -> RacpResponse:
    """Parse a response indicated on the RACP (GLS 1.0.1; GSS "Record Access Control Point").

    The Number of Stored Records operand is a uint16 by the specification; 1- and 4-byte
    operands seen in the field are accepted too, since the count stays unambiguous.
    """
    if not data:
        raise DecodeError("payload is empty; an RACP response needs at least 3 bytes")
    try:
        op = OpCode(data[0])
    except ValueError:
        raise DecodeError(f"op code {data[0]} is reserved, not a response op code") from None
    if op not in _RESPONSE_OPS:
        raise DecodeError(
            f"op code {op.value} ({_text(op)}) is a request, not a response op code (5 or 6)"
        )
    if len(data) < 2:
        raise DecodeError(f"payload has 1 byte; {_text(op)} needs an operator and an operand")
    if data[1] != Operator.NULL:
        raise DecodeError(f"response operator must be Null (0x00), got {data[1]:#04x}")
    operand = data[2:]
    if op is OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        if len(operand) not in (1, 2, 4):
            raise DecodeError(
                f"Number of Stored Records operand has {len(operand)} bytes; expected 2 (uint16)"
            )
        return RacpResponse(op, number_of_records=int.from_bytes(operand, "little"))
    if len(operand) != 2:
        raise DecodeError(
            f"Response Code operand has {len(operand)} bytes; expected 2 "
            "(request op code, response code)"
        )
    return RacpResponse(op, request_op_code=operand[0], response_code=operand[1])


def decode_racp(data: bytes, received_at: datetime, device: DeviceContext | None = None) -> Decoded:
    """Decode an indication on Record Access Control Point 0x2A52 (GLS 1.0.1; GSS RACP).

    Fields: op_code, op_code_name, number_of_records (op code 5), request_op_code,
    request_op_code_name, response_code, response (in words), success. No readings.
    """
    del received_at, device
    resp = decode_racp_response(data)
    fields: dict[str, object] = {
        "op_code": int(resp.op_code),
        "op_code_name": _text(resp.op_code),
        "number_of_records": resp.number_of_records,
        "request_op_code": resp.request_op_code,
        "request_op_code_name": (
            None if resp.request_op_code is None else op_code_name(resp.request_op_code)
        ),
        "response_code": resp.response_code,
        "response": None if resp.response_code is None else response_code_name(resp.response_code),
        "success": resp.succeeded,
    }
    return Decoded("2A52", (), frozen(fields))
