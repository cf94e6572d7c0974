"""The IANA registries lab.ike reads, re-exported from lab.iana (the leaf lab.ike and lab.esp share)."""
from __future__ import annotations

from lab.iana import (
    IKE_PORT,
    NAT_T_PORT,
    PAYLOAD_SHORT_NAMES,
    TRANSFORM_ID_ENUMS,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    DhGroup,
    EapCode,
    EapType,
    EncrId,
    EsnId,
    ExchangeType,
    HashAlgorithm,
    HeaderFlag,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
    coerce,
    name_of,
)

__all__ = [
    "IKE_PORT", "NAT_T_PORT", "PAYLOAD_SHORT_NAMES", "TRANSFORM_ID_ENUMS", "AuthMethod", "CertEncoding", "CfgAttr",
    "CfgType", "DhGroup", "EapCode", "EapType", "EncrId", "EsnId", "ExchangeType", "HashAlgorithm", "HeaderFlag", "IdType",
    "IntegId",
    "NotifyType", "PayloadType", "PrfId", "ProtocolId", "TransformAttr", "TransformType", "TsType", "coerce",
    "name_of",
]
