"""The pure half of predict-vs-verify (no kernel): what a frame says about a flow, and how a
prediction and an observation are compared. The kernel half is tested in
tests/privileged/test_linux_quickstart.py and test_linux_cli.py."""

from netvirt.dataplane.sim import packets
from netvirt.trace.verify import Path, Side, Signature, answer_key, compare, request_key, signature
from netvirt.wire import build, encapsulate, ethernet, icmpv4, ipv4, tcp, udp
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

A, B = "10.10.0.196", "10.10.0.121"


def frame(flags: int = 0x02, src: str = A, dst: str = B, sport: int = 40000, dport: int = 80) -> bytes:
    return build([ethernet.Repr(mac_to_bytes("02:00:00:00:00:01"), mac_to_bytes("02:00:00:00:00:02"), ethernet.IPV4),
                  ipv4.Repr(ip_to_bytes(src), ip_to_bytes(dst), ipv4.TCP),
                  tcp.Repr(sport, dport, sequence_number=1, flags=flags, window=1000)])


def tunnelled(inner: bytes, vni: int = 33047) -> bytes:
    return encapsulate(inner, encap="vxlan", vni=vni, outer_src="192.0.2.10", outer_dst="192.0.2.11",
                       outer_src_mac="0e:00:00:00:00:01", outer_dst_mac="0e:00:00:00:00:02")


def test_signature_of_a_plain_and_a_tunnelled_packet():
    assert signature(frame()) == Signature((A, B, "tcp", 40000, 80))
    assert signature(tunnelled(frame())) == Signature((A, B, "tcp", 40000, 80), ("192.0.2.10", "192.0.2.11", 4789, 33047))
    assert signature(b"\x00" * 10) is None


def test_the_first_packet_of_a_flow_is_recognised_also_inside_a_tunnel():
    assert request_key(frame()) == (A, "tcp", 40000)
    assert request_key(tunnelled(frame())) == (A, "tcp", 40000)  # the inner SYN, not the outer UDP
    assert request_key(frame(flags=0x12)) is None  # SYN|ACK: the answer
    assert request_key(frame(flags=0x10)) is None  # a later packet
    echo = build([ethernet.Repr(bytes(6), bytes(6), ethernet.IPV4), ipv4.Repr(ip_to_bytes(A), ip_to_bytes(B), ipv4.ICMP),
                  icmpv4.Repr(8, 0, identifier=4242, sequence_number=1)])
    assert request_key(echo) == (A, "icmp", 4242)
    datagram = build([ethernet.Repr(bytes(6), bytes(6), ethernet.IPV4), ipv4.Repr(ip_to_bytes(A), ip_to_bytes(B), ipv4.UDP),
                      udp.Repr(5353, 53)])
    assert request_key(datagram) == (A, "udp", 5353)


PLACES = ("host-a:client-1/eth0", "host-a:host-a/eth0", "host-b:host-b/eth0", "host-b:web-2/eth0")
BACK = tuple(reversed(PLACES))
INNER = Signature((A, B, "tcp", 40000, 80))
OUTER = Signature(INNER.inner, ("192.0.2.10", "192.0.2.11", 4789, 33047))
PACKETS = {PLACES[0]: INNER, PLACES[1]: OUTER, PLACES[2]: OUTER, PLACES[3]: INNER}
REPLY = Signature((B, A, "tcp", 80, 40000))
REPLY_OUTER = Signature(REPLY.inner, ("192.0.2.11", "192.0.2.10", 4789, 33047))
ANSWER = {BACK[0]: REPLY, BACK[1]: REPLY_OUTER, BACK[2]: REPLY_OUTER, BACK[3]: REPLY}
PREDICTED = Side("delivered", "host-b:web-2", Path(PLACES, PACKETS), "delivered", Path(BACK, ANSWER))


def observed(answer: dict | None = None, **changes) -> Side:
    request = {"places": PLACES, "packets": dict(PACKETS), "times": {p: i * 1e-5 for i, p in enumerate(PLACES)}}
    back = {"places": BACK, "packets": dict(ANSWER), "times": {p: 1 + i * 1e-5 for i, p in enumerate(BACK)}}
    answered = changes.pop("answered", "delivered")
    fields = {"disposition": "delivered", "delivered_to": "host-b:web-2"}
    fields |= {k: v for k, v in changes.items() if k in fields}
    request |= {k: v for k, v in changes.items() if k in request}
    return Side(**fields, request=Path(**request), answered=answered, answer=Path(**(back | (answer or {}))))


def test_agreement():
    assert compare(PREDICTED, observed()) == []


def test_each_kind_of_disagreement_is_named():
    assert compare(PREDICTED, observed(disposition="dropped", delivered_to=None)) == [
        "disposition: predicted delivered, observed dropped"]
    assert compare(PREDICTED, observed(delivered_to="host-a:web-1")) == [
        "delivered to: predicted host-b:web-2, observed host-a:web-1"]
    assert compare(PREDICTED, observed(places=PLACES[:2])) == [
        "path: never seen at host-b:host-b/eth0, host-b:web-2/eth0 (predicted)"]
    nat = dict(PACKETS, **{PLACES[3]: Signature((A, "10.10.0.20", "tcp", 40000, 80))})
    assert compare(PREDICTED, observed(packets=nat)) == [
        f"packet at {PLACES[3]}: predicted tcp {A}:40000 > {B}:80, observed tcp {A}:40000 > 10.10.0.20:80"]
    other_vni = dict(PACKETS, **{PLACES[1]: Signature(INNER.inner, ("192.0.2.10", "192.0.2.11", 4789, 5020))})
    assert compare(PREDICTED, observed(packets=other_vni))[0].startswith(f"encapsulation at {PLACES[1]}")


def test_path_order_allows_near_simultaneous_timestamps_only():
    swapped = (PLACES[0], PLACES[2], PLACES[1], PLACES[3])
    near = {PLACES[0]: 0.0, PLACES[1]: 0.00005, PLACES[2]: 0.00004, PLACES[3]: 0.0001}
    assert compare(PREDICTED, observed(places=swapped, times=near)) == []
    far = dict(near, **{PLACES[2]: -0.01})
    assert compare(PREDICTED, observed(places=swapped, times=far))[0].startswith("path order")


def test_the_answer_is_compared_like_the_request():
    assert compare(PREDICTED, observed(answer={"places": BACK[:2]})) == [
        "answer path: never seen at host-a:host-a/eth0, host-a:client-1/eth0 (predicted)"]
    lost = observed(answered="dropped", answer={"places": BACK[:1]})
    assert compare(PREDICTED, lost)[0] == "answer: predicted delivered, observed dropped"
    no_reverse_nat = dict(ANSWER, **{BACK[3]: Signature(("10.10.0.20", A, "tcp", 80, 40000))})
    assert compare(PREDICTED, observed(answer={"packets": no_reverse_nat})) == [
        f"answer packet at {BACK[3]}: predicted tcp {B}:80 > {A}:40000, observed tcp 10.10.0.20:80 > {A}:40000"]
    other_vni = dict(ANSWER, **{BACK[1]: Signature(REPLY.inner, ("192.0.2.11", "192.0.2.10", 4789, 5020))})
    assert compare(PREDICTED, observed(answer={"packets": other_vni}))[0].startswith(f"answer encapsulation at {BACK[1]}")


def test_the_first_answer_of_a_flow_is_recognised():
    assert answer_key(frame(flags=0x12, src=B, dst=A, sport=80, dport=40000)) == ("tcp", 40000, False)  # SYN|ACK
    assert answer_key(tunnelled(frame(flags=0x14, src=B, dst=A, sport=80, dport=40000))) == ("tcp", 40000, False)
    assert answer_key(frame(flags=0x10, src=B, dst=A, sport=80, dport=40000)) is None  # a later packet
    assert answer_key(frame()) is None  # the SYN
    reply = build([ethernet.Repr(bytes(6), bytes(6), ethernet.IPV4), ipv4.Repr(ip_to_bytes(B), ip_to_bytes(A), ipv4.ICMP),
                   icmpv4.Repr(0, 0, identifier=4242, sequence_number=1)])
    assert answer_key(reply) == ("icmp", 4242, False)
    syn = frame()[14:]
    quoted = packets.icmp_error(syn, packets.headers(syn, 0), ip_to_bytes("10.10.0.1"), "too-big", 1400)
    error = bytes(12) + b"\x08\x00" + quoted  # fragmentation needed from the router, quoting the SYN
    assert answer_key(error) == ("tcp", 40000, True)
    assert request_key(error) is None  # the quoted SYN is no request
    assert signature(error) == Signature(("10.10.0.1", A, "icmp", 0, 0))
