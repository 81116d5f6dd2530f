"""Complete frames on the wire into the switch: no checksum or segmentation offloads.

Contract: ``complete_frames(namespace, ifname)`` turns off the transmit offloads of a device whose
frames the userspace switch reads (the peer of one of its ports): checksum offload (else the
switch would see and forward partial checksums) and every segmentation offload (else it would see
64 KiB super-frames). The sending kernel then computes checksums and segments in software, as a
NIC without offloads needs. Idempotent; OSError if the device cannot be changed.
"""

from pyroute2.ethtool.ethtool import Ethtool

from netvirt.dataplane.kernel import netns

_OFF = ("tx-checksum-", "-segmentation", "tx-gso-", "tx-generic-segmentation", "tx-scatter-gather")


def _enabled(ifname: str) -> list[str]:
    with Ethtool() as ethtool:
        features = ethtool.get_features(ifname).features
        return [key for key, value in features.items() if value.enable and any(part in key for part in _OFF)]


def complete_frames(namespace: str, ifname: str) -> None:
    """See the module docstring."""

    def change() -> None:
        with Ethtool() as ethtool:
            features = ethtool.get_features(ifname)
            for key, feature in features.features.items():
                if feature.enable and any(part in key for part in _OFF):
                    feature.enable = False
            ethtool.set_features(ifname, features)

    netns.call_in(namespace, change)


def enabled_offloads(namespace: str, ifname: str) -> list[str]:
    """The transmit offloads still on (``complete_frames`` leaves none a device lets go of)."""
    return netns.call_in(namespace, _enabled, ifname)
