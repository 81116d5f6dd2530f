"""Addresses as the codecs hold them (packed bytes) and as people write them (text).

Reprs keep addresses in wire form — 6-byte MACs, 4-byte IPv4 and 16-byte IPv6 addresses — so
parsing never pays for text conversion; ``to_dict`` and ``summary`` convert on demand.
"""

import socket


def mac_to_bytes(text: str) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or with ``-``) -> 6 bytes; ``ValueError`` names the bad text."""
    parts = text.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or not all(len(part) == 2 for part in parts):
            raise ValueError
        return bytes(int(part, 16) for part in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r} (expected six hex pairs like aa:bb:cc:dd:ee:ff)") from None


def mac_to_text(address: bytes) -> str:
    """6 bytes -> ``"aa:bb:cc:dd:ee:ff"``."""
    return address.hex(":")


def ip_to_bytes(text: str) -> bytes:
    """``"10.0.0.1"`` -> 4 bytes, ``"fd00::1"`` -> 16 bytes; ``ValueError`` names the bad text."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise ValueError(f"not an IPv4 or IPv6 address: {text!r}") from None


def ip_to_text(address: bytes) -> str:
    """4 or 16 bytes -> ``"10.0.0.1"`` or ``"fd00::1"`` (RFC 5952 form)."""
    if len(address) == 4:
        return socket.inet_ntop(socket.AF_INET, address)
    if len(address) == 16:
        return socket.inet_ntop(socket.AF_INET6, address)
    raise ValueError(f"an IP address is 4 or 16 bytes, got {len(address)}: {address.hex()}")
