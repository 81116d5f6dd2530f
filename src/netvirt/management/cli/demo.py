"""``netvirt demo``: the README's main job — a network described, predicted, built and proved.

1. Loads ``examples/quickstart.yaml`` (two hosts, two tenants with overlapping subnets, VXLAN, a
   distributed router, policies, a service) and shows, from the simulator, two walkthrough
   tables (a packet across the VXLAN overlay; a packet climbing the db-on-k8s stack) and the
   reachability matrix.
2. With CAP_NET_ADMIN: builds the network in the kernel (``netvirt up``'s machinery, deployment
   ``demoPID``), runs ``verify --all`` (real probes vs the simulator), shows real applications
   talking (HTTP GETs across the overlay, over IPv6 and through the service VIP, served by
   ``python -m http.server`` inside the endpoints; an allowed and two denied database
   connections), then tears everything down — also on Ctrl-C or a failure. Without the
   capability it says so and stays in the simulator.

``netvirt demo --codecs`` is the packet-codec tour: one TCP SYN between two pods in every
encapsulation, decoded layer by layer, the overhead of each, and a pcap round trip.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netvirt.management.cli.pcap import frame_line
from netvirt.wire import build, dissect, encapsulate, ethernet, geneve, ipv4, pcap, summary, tcp
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

QUICKSTART = Path("examples/quickstart.yaml")
# its own namespaces (nv-demoPID-*): a quickstart brought up by hand, or another demo running at
# the same time, is left alone
DEPLOYMENT = f"demo{os.getpid()}"

POD_A = ("0a:58:0a:f4:01:0a", "10.244.1.10")
POD_B = ("0a:58:0a:f4:02:14", "10.244.2.20")
NODE_1 = ("52:54:00:00:00:11", "192.168.56.11", "fd00:56::11")
NODE_2 = ("52:54:00:00:00:12", "192.168.56.12", "fd00:56::12")
VNI = 5001
# OVN's Geneve option (class 0x0102, type 0x80): logical ingress port 1, egress port 2
OVN_OPTION = geneve.Option(0x0102, 0x80, bytes.fromhex("00010002"))
ENCAPSULATIONS = (
    ("VXLAN", "vxlan", {}),
    ("Geneve + option", "geneve", {"options": (OVN_OPTION,)}),
    ("NVGRE", "nvgre", {"flow_id": 7}),
)
UNDERLAY_MTU = 1500


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    spec: Annotated[Path, typer.Option(help="The spec to show (its endpoints web-1, web-2, client-1 and db-1 "
                                            "and service web are used for the application exchanges).")] = QUICKSTART,
    codecs: Annotated[bool, typer.Option("--codecs", help="Show the packet-codec tour instead.")] = False,
    pcap_path: Annotated[
        Path | None,
        typer.Option("--pcap", help="With --codecs: keep the frames in this pcap file (default: a temporary one)"),
    ] = None,
) -> None:
    """The main job: quickstart predicted by the simulator, then (as root) built in the kernel,
    verified against the prediction, used by real applications, and torn down."""
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if codecs:
        codec_tour(console, pcap_path)
        return
    from netvirt.control.compile import compile_network
    from netvirt.dataplane.kernel import netns
    from netvirt.management.cli.spec import load_or_exit
    from netvirt.trace.plan import reach_network

    started = time.monotonic()
    loaded = load_or_exit(spec, "demo")
    network = reach_network(compile_network(loaded))  # with the outside world the probes reach
    simulate(console, loaded, network)
    if not netns.can_admin_network():
        console.rule("[bold]The real kernel")
        console.print("This process lacks CAP_NET_ADMIN, so the demo stays in the simulator. Run it as root "
                      "(sudo ./scripts/demo) to build the network in the kernel and verify the prediction.")
        return
    in_kernel(console, loaded, network)
    console.print(f"\n[bold]Done in {time.monotonic() - started:.0f} s.[/bold]")


# --- the simulator --------------------------------------------------------------------------------


def simulate(console: Console, spec, network) -> None:
    from netvirt.trace import reachability as reach_table
    from netvirt.trace import render
    from netvirt.trace.diagram import Diagram
    from netvirt.trace.plan import plan_trace, reach_spec

    console.rule(f"[bold]{spec.name}: {spec.description}")
    console.print(f"{len(spec.hosts)} hosts, {len(spec.networks)} networks, {len(spec.endpoints)} endpoints, "
                  f"{len(spec.routers)} router, {len(spec.policies)} policies, {len(spec.services)} service; "
                  f"compiled into {sum(len(g.namespaces) for g in network.hosts)} namespaces and "
                  f"{sum(len(g.devices) for g in network.hosts)} devices.\n")
    walks = [("client-1", "web-2", "a packet from a VM on host-a to a container on host-b, over VXLAN")]
    for source, target, what in walks:
        tracer, flow, _ = plan_trace(spec, source, target, None, None, 40000, None, compile=lambda _: network)
        console.print(f"[bold]Predicted walkthrough: {what}[/bold]")
        walked = tracer.trace(flow)
        console.print(render.table(walked), soft_wrap=True)
        with tempfile.NamedTemporaryFile(prefix=f"netvirt-demo-{source}-{target}-", suffix=".svg", delete=False) as file:
            file.write(Diagram(network, walked).render("svg"))  # a fresh file: other users' demos write theirs
        console.print(f"Drawn: {file.name} (the hops numbered over the topology; "
                      f"netvirt diagram SPEC --from {source} --to {target} -f png|svg|mermaid)\n")
    if spec.stacks:
        stack_tracer, flow, skip = plan_trace(spec, None, None, None, None, 40000, spec.stacks[0].name,
                                              compile=lambda _: network)
        console.print(f"[bold]Predicted walkthrough: stack {spec.stacks[0].name} — "
                      f"{spec.stacks[0].description}[/bold]")
        console.print(render.table(stack_tracer.trace(flow, skip=skip)), soft_wrap=True)
    console.print("[bold]Reachability, predicted by the simulator[/bold] (every endpoint pair on its ports, "
                  "and the service from every endpoint)")
    console.print(reach_table.table(reach_spec(spec, compile=lambda _: network)), soft_wrap=True)


# --- the kernel -----------------------------------------------------------------------------------


def in_kernel(console: Console, spec, network) -> None:
    from netvirt.dataplane.linux.backend import check_network, network_backends
    from netvirt.dataplane.kernel.cleanup import cleanup
    from netvirt.dataplane.kernel.ownership import OwnedNamespace
    from netvirt.management.cli.linux import converge, kernel_settings, names

    console.rule("[bold]The real kernel")
    backends = network_backends(network, DEPLOYMENT, **kernel_settings())
    problems = check_network(backends, network)
    if problems:
        for problem in problems:
            console.print(f"  {problem.where}: {problem.message}")
        _stop(console, f"{spec.name} cannot be built in this kernel; the simulator's answers above stand", 2)
    kernel_names = names(DEPLOYMENT)
    servers: list[subprocess.Popen] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        started = time.monotonic()
        converge(spec, backends, 60, console, network)
        namespaces = sum(len(g.namespaces) for g in network.hosts) + len(network.segments)
        console.print(f"Built in {time.monotonic() - started:.1f} s: {namespaces} network namespaces "
                      f"({kernel_names.prefix}-{DEPLOYMENT}-*) with veth pairs, bridges, VXLAN devices with static "
                      "FDB, routes, nftables policies and service DNAT.\n")
        verify_all(console, spec, network, kernel_names)
        servers = applications(console, spec, kernel_names)
    except KeyboardInterrupt:
        console.print("\n[bold]Interrupted[/bold]: tearing down.")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=5)
        report = cleanup(kernel_names, kernel_settings()["state_dir"])
        signal.signal(signal.SIGTERM, previous)
        gone = sum(isinstance(obj, OwnedNamespace) for obj in report.removed)
        console.print(f"Torn down: removed the demo's {gone} namespaces and everything in them.")


def verify_all(console: Console, spec, network, kernel_names) -> None:
    from netvirt.management.cli.verify import _verify_table
    from netvirt.dataplane import registry
    from netvirt.trace.plan import verify_probes
    from netvirt.trace.verify import Verifier

    console.print("[bold]netvirt verify --all[/bold]: every flow of the matrix sent for real (TCP connect, "
                  "ICMP echo), captured on every device, compared with the prediction")
    labelled = [(p.source, p.target, p.flow) for p in verify_probes(spec, 41000)]
    with console.status("probing"), Verifier(network, registry.observer("linux", DEPLOYMENT, prefix=kernel_names.prefix)) as verifier:
        results = verifier.verify_all([flow for _, _, flow in labelled])
    _verify_table(labelled, results, detail=False)
    if not all(r.agrees for r in results):
        _stop(console, "the kernel disagrees with the simulator (see above)", 1)


def applications(console: Console, spec, kernel_names) -> list[subprocess.Popen]:
    """Real applications in the endpoints: HTTP servers in web-1 and web-2, a database port in
    db-1; GETs across the overlay, over IPv6 and through the VIP; allowed and denied connections.
    Returns the server processes (the caller stops them)."""
    def where(endpoint: str) -> str:
        return kernel_names.graph_namespace(spec.endpoint(endpoint).host, endpoint)

    def address(endpoint: str, version: int = 4) -> str:
        attachment = spec.endpoint(endpoint).attachments[0]
        return str(attachment.ip if version == 4 else attachment.ip6)

    console.print("\n[bold]Real applications[/bold]: python -m http.server in web-1 and web-2, "
                  "a listener on tcp/5432 in db-1")
    servers, folder = [], Path(tempfile.mkdtemp(prefix="netvirt-demo-"))
    for endpoint in ("web-1", "web-2"):
        root = folder / endpoint
        root.mkdir()
        (root / "index.html").write_text(f"hello from {endpoint} on {spec.endpoint(endpoint).host}\n")
        servers.append(_netns_popen(where(endpoint), [sys.executable, "-m", "http.server", "80", "--bind", "::",
                                                      "--directory", str(root)]))
    servers.append(_netns_popen(where("db-1"), [sys.executable, "-c", _LISTENER, "5432"]))
    _wait_listening([(where(e), 80) for e in ("web-1", "web-2")] + [(where("db-1"), 5432)])
    table = Table("FROM", "REQUEST", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("RESULT", no_wrap=True)
    service = spec.service("web")
    exchanges = [
        ("client-1", f"GET http://{address('web-2')}/", "web-2 across hosts (VXLAN)", lambda: _get(where("client-1"), address("web-2"))),
        ("client-1", f"GET http://[{address('web-2', 6)}]/", "the same over IPv6", lambda: _get(where("client-1"), address("web-2", 6))),
        ("client-1", f"GET http://{service.vip}/ (service {service.name}) until each backend answered",
         "DNAT in client-1's nat output chain", lambda: _balanced(where("client-1"), str(service.vip), service.backends)),
        ("web-1", f"connect {address('db-1')}:5432", "policy green-in allows app=web", lambda: _connect(where("web-1"), address("db-1"), 5432)),
        ("client-1", f"connect {address('db-1')}:5432", "policy green-in: default drop", lambda: _connect(where("client-1"), address("db-1"), 5432)),
        ("client-1", f"connect {address('db-1')}:22", "policy green-in: reject", lambda: _connect(where("client-1"), address("db-1"), 22)),
    ]
    for source, request, why, run in exchanges:
        table.add_row(source, f"{escape(request)}\n[dim]{why}[/dim]", run())
    console.print(table)
    return servers


_LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"db-1 says hello\\n"); c.close()
"""


def _netns_popen(namespace: str, argv: list[str]) -> subprocess.Popen:
    from netvirt.dataplane.kernel import netns

    return netns.popen(namespace, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_listening(places: list[tuple[str, int]], timeout: float = 10) -> None:
    from netvirt.dataplane.linux.readback import listening

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(("tcp", port) in listening(namespace) for namespace, port in places):
            return
        time.sleep(0.05)
    raise RuntimeError("the demo's servers did not start listening")


def _get(namespace: str, address: str) -> str:
    """An HTTP GET from ``namespace``: the status line and the page, or what went wrong."""
    from netvirt.dataplane.kernel import netns

    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    host = f"[{address}]" if family == socket.AF_INET6 else address
    try:
        with netns.socket_in(namespace, family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect((address, 80))
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError as error:
        return f"[red]{error.strerror or error}[/red]"
    head, _, body = reply.decode(errors="replace").partition("\r\n\r\n")
    status = head.splitlines()[0].split(" ", 1)[1] if head else "no reply"
    return f"[green]{escape(status)}[/green]: {escape(body.strip())}"


def _balanced(namespace: str, address: str, backends: tuple[str, ...], tries: int = 16) -> str:
    """GETs to a service VIP until every backend has answered: which answered how often."""
    answers: dict[str, int] = {}
    for _ in range(tries):
        reply = _get(namespace, address)
        answers[reply] = answers.get(reply, 0) + 1
        if all(any(f"hello from {backend} " in text for text in answers) for backend in backends):
            break
    return "\n".join(f"{text} (x{count})" for text, count in answers.items())


def _connect(namespace: str, address: str, port: int) -> str:
    from netvirt.dataplane.kernel import netns

    try:
        with netns.socket_in(namespace, socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect((address, port))
            return f"[green]connected[/green]: {sock.recv(64).decode().strip()}"
    except ConnectionRefusedError:
        return "[red]refused (TCP reset)[/red]"
    except TimeoutError:
        return "[red]no answer (dropped)[/red]"
    except OSError as error:
        return f"[red]{error.strerror or error}[/red]"


def _interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


def _stop(console: Console, message: str, code: int) -> NoReturn:
    console.print(f"[bold red]netvirt demo: {message}[/bold red]")
    raise typer.Exit(code)


# --- the packet-codec tour ------------------------------------------------------------------------


def codec_tour(console: Console, pcap_path: Path | None) -> None:
    """One TCP SYN between two pods, in every encapsulation: the frames, the overheads, a pcap
    round trip as ``netvirt pcap show`` prints it."""
    inner = inner_syn()
    console.print(
        f"[bold]Pod A ({POD_A[1]}, node-1) opens TCP to pod B ({POD_B[1]}:8080, node-2).[/bold]\n"
        f"Inner frame, {len(inner)} bytes: {summary(dissect(inner))}\n"
        f"Node-1 tunnels it to node-2 (VNI/VSID {VNI}) in each encapsulation:\n"
    )
    frames = [("inner (no tunnel)", inner)]
    inner_layers = len(dissect(inner))
    for name, encap, extra in ENCAPSULATIONS:
        variants = []
        for underlay, column in (("IPv4", 1), ("IPv6", 2)):
            frame = encapsulate(
                inner, encap=encap, vni=VNI, outer_src=NODE_1[column], outer_dst=NODE_2[column],
                outer_src_mac=NODE_1[0], outer_dst_mac=NODE_2[0], **extra,
            )
            variants.append((underlay, frame))
            frames.append((f"{name} over {underlay}", frame))
        console.print(layer_table(name, variants, inner_layers), "")
    console.print(overhead_table(frames))
    if pcap_path is None:
        with tempfile.TemporaryDirectory(prefix="netvirt-demo-") as folder:
            replay(console, Path(folder) / "demo.pcap", frames)
    else:
        replay(console, pcap_path, frames)


def inner_syn() -> bytes:
    """Pod A's SYN to pod B, with the options Linux sends (MSS for a 1450-byte VXLAN MTU)."""
    options = (
        tcp.Option(tcp.MAXIMUM_SEGMENT_SIZE, (1410).to_bytes(2, "big")),
        tcp.Option(tcp.SACK_PERMITTED),
        tcp.Option(tcp.TIMESTAMPS, bytes.fromhex("0001e24000000000")),
        tcp.Option(tcp.NO_OPERATION),
        tcp.Option(tcp.WINDOW_SCALE, b"\x07"),
    )
    return build(
        [
            ethernet.Repr(mac_to_bytes(POD_A[0]), mac_to_bytes(POD_B[0]), ethernet.IPV4),
            ipv4.Repr(ip_to_bytes(POD_A[1]), ip_to_bytes(POD_B[1]), ipv4.TCP, dont_fragment=True),
            tcp.Repr(43210, 8080, sequence_number=1000, flags=0x02, window=64240, options=options),
        ]
    )


def layer_table(title: str, frames: list[tuple[str, bytes]], inner_layers: int) -> Table:
    """Each frame decoded again, one section per underlay: a row per outer layer with the bytes its
    header takes, then the inner frame (the last ``inner_layers`` layers) as one row."""
    table = Table(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    table.add_column("layer")
    table.add_column("bytes", justify="right")
    table.add_column("decoded")
    for underlay, frame in frames:
        layers = dissect(frame)
        sizes = header_sizes(layers)
        split = len(layers) - inner_layers
        for layer, size in zip(layers[:split], sizes, strict=False):
            table.add_row(layer.to_dict()["layer"], str(size), summary([layer]), style="cyan")
        table.add_row("inner", str(sum(sizes[split:])), summary(layers[split:]))
        table.add_row("", str(len(frame)), f"the whole frame over {underlay}", style="bold")
        if underlay != frames[-1][0]:
            table.add_section()
    return table


def header_sizes(layers: list) -> list[int]:
    """Bytes each layer's header takes: the growth of the frame built from a longer prefix."""
    lengths = [len(build(layers[:count])) for count in range(len(layers) + 1)]
    return [after - before for before, after in zip(lengths, lengths[1:])]


def overhead_table(frames: list[tuple[str, bytes]]) -> Table:
    """What each encapsulation adds, and the inner MTU left on a 1500-byte underlay."""
    inner = len(frames[0][1])
    table = Table(
        title="Encapsulation overhead", title_justify="left", title_style="bold",
        box=box.SIMPLE_HEAD, show_edge=False,
    )
    for column in ("encapsulation", "frame bytes", "added bytes", f"inner MTU on {UNDERLAY_MTU}"):
        table.add_column(column, justify="left" if column == "encapsulation" else "right")
    for title, frame in frames[1:]:
        added = len(frame) - inner
        # the MTU counts from the outer IP header: the outer Ethernet header is not in it,
        # the inner one is
        table.add_row(title, str(len(frame)), str(added), str(UNDERLAY_MTU - added))
    return table


def replay(console: Console, path: Path, frames: list[tuple[str, bytes]]) -> None:
    """Write the frames to a pcap file, read it back and print it as ``netvirt pcap show`` does."""
    start = time.time_ns()
    with pcap.Writer(path, nanosecond=True) as writer:
        for offset, (_, frame) in enumerate(frames):
            writer.write(frame, timestamp_ns=start + offset * 1000)
    heading = f"Through a pcap file and back, as `netvirt pcap show {path.name}`:"
    console.print(f"\n[bold]{heading}[/bold]")
    for frame in pcap.read(path):
        console.print(frame_line(frame), soft_wrap=True)
