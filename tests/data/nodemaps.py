"""GenApi node maps with exactly the feature names of the DALSA cameras (cell.md section 3).

Loaded into genicam's real GenApi NodeMap from XML, so writes are range-checked and refused
with the genicam exception classes, as on the device. Selectors are not modelled: each
feature holds one value.
"""

from __future__ import annotations

from genicam.genapi import NodeMap

HEADER = (
    '<?xml version="1.0" encoding="utf-8"?>\n<RegisterDescription ModelName="{model}" VendorName="Teledyne DALSA" '
    'ToolTip="test" StandardNameSpace="None" SchemaMajorVersion="1" SchemaMinorVersion="1" SchemaSubMinorVersion="0" '
    'MajorVersion="1" MinorVersion="0" SubMinorVersion="0" ProductGuid="11111111-1111-1111-1111-111111111111" '
    'VersionGuid="22222222-2222-2222-2222-222222222222" xmlns="http://www.genicam.org/GenApi/Version_1_1" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.genicam.org/GenApi/'
    'Version_1_1 http://www.genicam.org/GenApi/GenApiSchema_Version_1_1.xsd">\n'
)


def _int(name, value, lo, hi, inc=1):
    return f'<Integer Name="{name}"><Value>{value}</Value><Min>{lo}</Min><Max>{hi}</Max><Inc>{inc}</Inc></Integer>'


def _float(name, value, lo, hi):
    return f'<Float Name="{name}"><Value>{value}</Value><Min>{lo}</Min><Max>{hi}</Max></Float>'


def _enum(name, entries):
    body = "".join(f'<EnumEntry Name="{e}"><Value>{i}</Value></EnumEntry>' for i, e in enumerate(entries))
    return f'<Enumeration Name="{name}">{body}<Value>0</Value></Enumeration>'


def _command(name):
    return f'<Command Name="{name}"><Value>0</Value><CommandValue>1</CommandValue></Command>'


GENIE_NANO_C2420 = [
    _enum("PixelFormat", ["BayerRG8", "BayerRG10", "BayerRG12", "RGB8", "Mono8"]),
    _int("Width", 2464, 16, 2464, 16),
    _int("Height", 2056, 2, 2056, 2),
    _enum("ExposureMode", ["Timed"]),
    _float("ExposureTime", 8000, 10, 1_000_000),
    _float("Gain", 0, 0, 24),
    _enum("TriggerSelector", ["FrameStart", "FrameBurstStart"]),
    _enum("TriggerMode", ["Off", "On"]),
    _enum("TriggerSource", ["Line1", "Line2", "Software", "Timer1End", "Counter1End", "Action1"]),
    _enum("TriggerActivation", ["RisingEdge", "FallingEdge"]),
    _enum("TriggerOverlap", ["Off", "ReadOut", "EndOfExposure"]),
    _command("TriggerSoftware"),
]

LINEA_2K_DALSA = [
    _enum("PixelFormat", ["RGB8", "Mono8"]),
    _int("Width", 2048, 16, 2048, 16),
    _int("Height", 2048, 1, 16384),
    _float("ExposureTime", 20, 2, 3000),
    _float("Gain", 0, 0, 24),
    _int("rotaryEncoderMultiplier", 1, 1, 32),
    _int("rotaryEncoderDivider", 1, 1, 128),
    _enum("rotaryEncoderOutputMode", ["Position", "Motion"]),
    _enum("rotaryEncoderDirection", ["Forward", "Reverse"]),  # entry names unconfirmed
    _enum("TriggerSelector", ["LineStart", "FrameStart", "FrameBurstStart"]),
    _enum("TriggerMode", ["Off", "On"]),
    _enum("TriggerSource", ["rotaryEncoder1", "Line1", "Line2", "Software"]),
]

LINEA_2K_SFNC = [
    *(x for x in LINEA_2K_DALSA if "rotaryEncoder" not in x.split('"')[1]),
    _int("EncoderDivider", 1, 1, 128),
    _int("EncoderMultiplier", 1, 1, 32),
    _enum("EncoderOutputMode", ["Position", "Motion"]),
]


def node_map(features: list[str], model: str = "test") -> NodeMap:
    nm = NodeMap()
    nm.load_xml_from_string(HEADER.format(model=model) + "\n".join(features) + "\n</RegisterDescription>")
    return nm
