"""The CNI verbs over the control plane's per-endpoint API (see the package docstring).

An attachment ``(CNI_CONTAINERID, CNI_IFNAME)`` of network configuration ``name`` is the endpoint
``cni-<first 12 characters of the container id>`` (kind ``container``) of netvirt network
``network`` on netvirt host ``host``, labelled ``cni-network``, ``cni-container``, ``cni-ifname``.
ADD bind-mounts ``CNI_NETNS`` where the host's agent keeps that endpoint's namespace
(``Names(deployment, prefix).graph_namespace``), so the agent builds the endpoint's veth, addresses,
routes and filter rules inside the container's namespace; removing the endpoint unmounts it and
leaves the namespace to the runtime.

Errors are the spec's ``{"cniVersion", "code", "msg", "details"}`` on stdout, exit code 1:
1 incompatible version, 4 missing environment, 6 undecodable input, 7 invalid configuration or an
endpoint netvirt refuses (the located problems in ``details``), 11 the control plane cannot be
reached or the agent did not realize the change in time, 50/51 (STATUS) not ready,
100 CHECK found the attachment differing from what was realized.
"""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = "1.1.0"
INCOMPATIBLE, MISSING_ENV, UNDECODABLE, INVALID_CONFIG, TRY_AGAIN = 1, 4, 6, 7, 11
NOT_AVAILABLE, LIMITED = 50, 51
DIFFERS = 100
ENDPOINT_PREFIX = "cni-"


class CniError(Exception):
    """A CNI error result: a well-known ``code``, a message and details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


@dataclass(frozen=True)
class Conf:
    """The network configuration netvirt-cni reads (unknown keys are ignored, as the spec allows)."""

    raw: dict[str, Any]
    version: str
    name: str
    network: str
    host: str
    controller: str | None
    store: str | None
    token: str | None
    deployment: str
    prefix: str
    timeout: float
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Conf":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise CniError(UNDECODABLE, f"the network configuration is not JSON: {error}") from None
        if not isinstance(raw, dict):
            raise CniError(UNDECODABLE, "the network configuration must be a JSON object")
        version = str(raw.get("cniVersion", CURRENT_VERSION))
        if version not in SUPPORTED_VERSIONS:
            raise CniError(INCOMPATIBLE, f"cniVersion {version} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise CniError(INVALID_CONFIG, "the network configuration needs a 'name'")
        if raw.get("controller") and raw.get("store"):
            raise CniError(INVALID_CONFIG, "give either 'controller' (a URL) or 'store' (an embedded store URL), not both")
        token = raw.get("token")
        if raw.get("tokenFile"):
            try:
                token = Path(raw["tokenFile"]).read_text().strip()
            except OSError as error:
                raise CniError(INVALID_CONFIG, f"cannot read tokenFile {raw['tokenFile']}: {error.strerror}") from None
        labels = raw.get("labels") or {}
        if not isinstance(labels, dict):
            raise CniError(INVALID_CONFIG, "'labels' must be an object of text values")
        return cls(
            raw=raw,
            version=version,
            name=name,
            network=str(raw.get("network") or name),
            host=str(raw.get("host") or os.uname().nodename.split(".")[0]),
            controller=raw.get("controller") or (None if raw.get("store") else "http://127.0.0.1:8470"),
            store=raw.get("store"),
            token=token,
            deployment=str(raw.get("deployment", "netvirt")),
            prefix=str(raw.get("prefix", "nv")),
            timeout=float(raw.get("timeout", 30)),
            labels={str(k): str(v) for k, v in labels.items()},
        )


# --- the control plane ---------------------------------------------------------------------------


class Plane:
    """The controller's REST API: over HTTP, or in-process over an embedded store."""

    def __init__(self, conf: Conf) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {conf.token}"} if conf.token else {}
        self.where = conf.controller or conf.store or ""
        if conf.store:
            from fastapi.testclient import TestClient

            from netvirt.control.controller import Controller
            from netvirt.control.store import StoreError, open_store
            from netvirt.management.api import create_app

            try:
                self._store = open_store(conf.store)
            except StoreError as error:
                raise CniError(TRY_AGAIN, f"cannot open the store {conf.store}", str(error)) from None
            self.http: httpx.Client = TestClient(create_app(Controller(self._store)), headers=headers)
        else:
            self.http = httpx.Client(base_url=self.where, headers=headers, timeout=30)

    def call(self, method: str, path: str, **request: Any) -> tuple[int, Any]:
        import httpx

        try:
            reply = self.http.request(method, path, **request)
        except httpx.TransportError as error:
            raise CniError(TRY_AGAIN, f"cannot reach the netvirt controller at {self.where}", str(error)) from None
        try:
            body = reply.json()
        except ValueError:
            body = {"detail": reply.text}
        if reply.status_code == 422 and isinstance(body.get("detail"), dict):
            problems = "\n".join(problem["text"] for problem in body["detail"]["problems"])
            raise CniError(INVALID_CONFIG, f"netvirt refused the endpoint: {body['detail']['summary']}", problems)
        if reply.status_code in (401, 503) or reply.status_code >= 500:
            raise CniError(TRY_AGAIN, f"the netvirt controller at {self.where} answered {reply.status_code}", str(body.get("detail")))
        return reply.status_code, body

    def wait_realized(self, host: str, revision: int, timeout: float, endpoint: str, present: bool) -> dict[str, Any]:
        """The host's detail once its agent realized ``revision`` or later and its realized graph
        has (``present``) or lacks ``endpoint``'s namespace; TRY_AGAIN after ``timeout``. (The
        detail's keys are read one after the other, so an agent reporting in between can show in
        sync beside the realized graph before: the graph itself is what is waited for.)"""
        deadline = time.monotonic() + timeout
        while True:
            status, detail = self.call("GET", f"/v1/hosts/{host}")
            report = (detail.get("status") or {}) if status == 200 else {}
            if status == 200 and detail["in_sync"] and report.get("realized_revision", 0) >= min(revision, detail["desired_revision"]):
                namespaces = {ns["name"] for ns in (detail.get("realized") or {}).get("namespaces", [])}
                if (endpoint in namespaces) == present:
                    return detail
            if time.monotonic() > deadline:
                state = detail.get("state", "unknown") if status == 200 else "unknown to the controller"
                errors = "; ".join(report.get("errors", []))
                raise CniError(TRY_AGAIN, f"host {host}'s agent did not realize revision {revision} within {timeout:g}s "
                                          f"(it is {state}); is `netvirt agent --host {host}` running?", errors)
            time.sleep(0.05)


# --- attachments ---------------------------------------------------------------------------------


def endpoint_name(container: str) -> str:
    """The endpoint of a container: ``cni-`` and the container id's first 12 characters
    (lowercase letters and digits; else 12 hex digits of its SHA-256)."""
    short = container[:12].lower()
    if not re.fullmatch(r"[a-z0-9]+", short):
        import hashlib

        short = hashlib.sha256(container.encode()).hexdigest()[:12]
    return ENDPOINT_PREFIX + short


@dataclass(frozen=True)
class Attachment:
    container: str
    netns: str
    ifname: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, need_netns: bool = True) -> "Attachment":
        missing = [key for key in ("CNI_CONTAINERID", "CNI_IFNAME") + (("CNI_NETNS",) if need_netns else ()) if not env.get(key)]
        if missing:
            raise CniError(MISSING_ENV, f"missing environment: {', '.join(missing)}")
        if env["CNI_IFNAME"] != "eth0":
            raise CniError(INVALID_CONFIG, f"CNI_IFNAME {env['CNI_IFNAME']!r}: netvirt names a container's "
                                           "interface eth0 (one netvirt network per container)")
        return cls(env["CNI_CONTAINERID"], env.get("CNI_NETNS", ""), env["CNI_IFNAME"])

    @property
    def endpoint(self) -> str:
        return endpoint_name(self.container)


def kernel_namespace(conf: Conf, endpoint: str) -> str:
    from netvirt.dataplane.kernel.naming import Names

    return Names(conf.deployment, conf.prefix).graph_namespace(conf.host, endpoint)


def add(conf: Conf, env: Mapping[str, str]) -> dict[str, Any]:
    from netvirt.dataplane.kernel import netns

    attachment = Attachment.from_env(env)
    plane = Plane(conf)
    ips = _ipam("ADD", conf, env).get("ips", []) if _ipam_type(conf) else []
    item: dict[str, Any] = {
        "name": attachment.endpoint,
        "kind": "container",
        "host": conf.host,
        "network": conf.network,
        "labels": {**conf.labels, "cni-network": _label(conf.name), "cni-container": _label(attachment.container),
                   "cni-ifname": attachment.ifname},
    }
    for ip in ips:
        address = ip["address"].split("/")[0]
        item.setdefault("ip6" if ":" in address else "ip", address)
    namespace = kernel_namespace(conf, attachment.endpoint)
    try:
        netns.adopt(namespace, attachment.netns)
    except OSError as error:
        raise CniError(INVALID_CONFIG, f"cannot use CNI_NETNS {attachment.netns}: {error}") from None
    try:
        body = {"text": json.dumps(item), "filename": f"{conf.name}.json"}
        status, result = plane.call("POST", "/v1/endpoints", json=body)
        if status == 409 and "already exists" in str(result.get("detail")):
            status, result = plane.call("PUT", f"/v1/endpoints/{attachment.endpoint}", json=body)
        if status != 200:
            raise CniError(INVALID_CONFIG, f"netvirt cannot add endpoint {attachment.endpoint}", str(result.get("detail")))
        detail = plane.wait_realized(conf.host, result["revision"], conf.timeout, attachment.endpoint, True)
        return _result(conf, attachment, detail)
    except BaseException:
        _forget(plane, conf, attachment.endpoint)
        raise


def delete(conf: Conf, env: Mapping[str, str]) -> None:
    attachment = Attachment.from_env(env, need_netns=False)
    plane = Plane(conf)
    _forget(plane, conf, attachment.endpoint, wait=True)
    if _ipam_type(conf):
        _ipam("DEL", conf, env)


def _forget(plane: Plane, conf: Conf, endpoint: str, *, wait: bool = False) -> None:
    """Remove ``endpoint`` (absent is fine): its interface first (the veth pair goes with it),
    then the endpoint, then (once realized, or when no agent did it) the bind mount."""
    from netvirt.dataplane.kernel import links, netns

    namespace = kernel_namespace(conf, endpoint)
    if netns.exists(namespace):
        try:
            ipr = netns.netlink(namespace)
            try:
                links.delete(ipr, "eth0")
            finally:
                ipr.close()
        except (OSError, links.LinkError):
            pass  # nothing to delete
    status, result = plane.call("DELETE", f"/v1/endpoints/{endpoint}")
    if status == 200 and wait:
        plane.wait_realized(conf.host, result["revision"], conf.timeout, endpoint, False)
    elif status not in (200, 404):
        raise CniError(INVALID_CONFIG, f"netvirt cannot remove endpoint {endpoint}", str(result.get("detail")))
    netns.remove(namespace)


def check(conf: Conf, env: Mapping[str, str]) -> None:
    from netvirt.dataplane.kernel import netns

    attachment = Attachment.from_env(env)
    previous = conf.raw.get("prevResult")
    if not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "CHECK needs the prevResult of the ADD")
    plane = Plane(conf)
    status, found = plane.call("GET", f"/v1/endpoints/{attachment.endpoint}")
    if status != 200:
        raise CniError(DIFFERS, f"endpoint {attachment.endpoint} is not in the applied spec", str(found.get("detail")))
    detail = plane.wait_realized(conf.host, found["revision"], conf.timeout, attachment.endpoint, True)
    expected = _result(conf, attachment, detail)
    problems = []
    for key in ("interfaces", "ips"):
        if _comparable(previous.get(key)) != _comparable(expected.get(key)):
            problems.append(f"{key}: the ADD returned {previous.get(key)}, netvirt realized {expected.get(key)}")
    namespace = kernel_namespace(conf, attachment.endpoint)
    if not netns.same(namespace, attachment.netns):
        problems.append(f"{attachment.netns} is not the namespace netvirt builds in ({namespace})")
    else:
        problems += _kernel_differences(namespace, attachment.ifname, expected)
    if problems:
        raise CniError(DIFFERS, f"attachment {attachment.container}/{attachment.ifname} differs from what netvirt realized",
                       "\n".join(problems))
    if _ipam_type(conf):
        _ipam("CHECK", conf, env)


def gc(conf: Conf) -> None:
    """Remove every endpoint of this network configuration on this host whose attachment the
    runtime no longer lists (``cni.dev/valid-attachments``)."""
    valid_list = conf.raw.get("cni.dev/valid-attachments", conf.raw.get("cni.dev/attachments")) or []
    valid = {(_label(str(a.get("containerID", ""))), str(a.get("ifname", ""))) for a in valid_list if isinstance(a, dict)}
    plane = Plane(conf)
    _, listing = plane.call("GET", "/v1/endpoints")
    stale = [
        e["name"] for e in listing.get("endpoints", [])
        if e.get("host") == conf.host and (e.get("labels") or {}).get("cni-network") == _label(conf.name)
        and (e["labels"].get("cni-container"), e["labels"].get("cni-ifname")) not in valid
    ]
    for endpoint in stale:
        _forget(plane, conf, endpoint, wait=endpoint == stale[-1])


def status(conf: Conf) -> None:
    """Ready when the controller answers, the applied spec has the network and the host, and
    the host's agent is alive (else 50; 51 when the agent is not alive: attached containers keep
    their data plane but get no changes)."""
    plane = Plane(conf)
    code, spec = plane.call("GET", "/v1/spec")
    if code != 200:
        raise CniError(NOT_AVAILABLE, f"no spec is applied at {plane.where}", str(spec.get("detail")))
    for kind, name in (("networks", conf.network), ("hosts", conf.host)):
        if name not in {item["name"] for item in spec["spec"].get(kind, [])}:
            raise CniError(NOT_AVAILABLE, f"the applied spec has no {kind[:-1]} {name!r}")
    code, host = plane.call("GET", f"/v1/hosts/{conf.host}")
    if code != 200 or host.get("agent") != "alive":
        raise CniError(LIMITED, f"host {conf.host}'s agent is not alive ({host.get('agent', 'unknown')})")


# --- results -------------------------------------------------------------------------------------


def _result(conf: Conf, attachment: Attachment, detail: dict[str, Any]) -> dict[str, Any]:
    """The ADD result from the realized graph of the host."""
    graph = detail.get("realized") or {}
    endpoint = attachment.endpoint
    namespace = next((ns for ns in graph.get("namespaces", []) if ns["name"] == endpoint), None)
    device = next((d for d in graph.get("devices", []) if d["namespace"] == endpoint and d["name"] == "eth0"), None)
    if namespace is None or device is None:
        raise CniError(TRY_AGAIN, f"host {conf.host} reports no realized endpoint {endpoint}")
    modern = conf.version.split(".")[0] != "0"
    inside: dict[str, Any] = {"name": attachment.ifname, "mac": device["mac"], "sandbox": attachment.netns}
    if conf.version == "1.1.0" and device.get("mtu"):
        inside["mtu"] = device["mtu"]
    host_end = device["config"]["peer"]
    interfaces = [{"name": host_end}, inside]
    gateways = {r["dst"]: r["via"] for r in namespace.get("routes", []) if r.get("via")}
    ips = []
    for address in device.get("addresses", []):
        six = ":" in address
        entry: dict[str, Any] = {"address": address, "interface": 1}
        gateway = gateways.get("::/0" if six else "0.0.0.0/0")
        if gateway:
            entry["gateway"] = gateway
        if not modern:
            entry["version"] = "6" if six else "4"
        ips.append(entry)
    routes = [{"dst": r["dst"], **({"gw": r["via"]} if r.get("via") else {})}
              for r in namespace.get("routes", []) if r.get("via") or not _connected(r["dst"], device)]
    return {"cniVersion": conf.version, "interfaces": interfaces, "ips": ips, "routes": routes, "dns": {}}


def _connected(destination: str, device: dict[str, Any]) -> bool:
    import ipaddress

    return any(str(ipaddress.ip_interface(a).network) == destination for a in device.get("addresses", []))


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _kernel_differences(namespace: str, ifname: str, expected: dict[str, Any]) -> list[str]:
    """What the container's interface lacks, read from the kernel."""
    from netvirt.dataplane.kernel import netns

    ipr = netns.netlink(namespace)
    try:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return [f"interface {ifname} is missing in the container's namespace"]
        link = ipr.get_links(found[0])[0]
        mac = link.get_attr("IFLA_ADDRESS")
        addresses = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=found[0])}
    finally:
        ipr.close()
    problems = []
    if mac != expected["interfaces"][1]["mac"]:
        problems.append(f"interface {ifname} has MAC {mac}, not {expected['interfaces'][1]['mac']}")
    for ip in expected["ips"]:
        if ip["address"] not in addresses:
            problems.append(f"interface {ifname} lacks address {ip['address']}")
    return problems


def _label(text: str) -> str:
    return text[:63]


# --- IPAM delegation ------------------------------------------------------------------------------


def _ipam_type(conf: Conf) -> str | None:
    ipam = conf.raw.get("ipam")
    return ipam.get("type") if isinstance(ipam, dict) and ipam.get("type") else None


def _ipam(command: str, conf: Conf, env: Mapping[str, str]) -> dict[str, Any]:
    """Run the configured IPAM plugin (found in CNI_PATH) with the same configuration, as the
    spec's delegation does; its result (ADD) or {}."""
    plugin = _ipam_type(conf)
    assert plugin is not None
    path = next((Path(d) / plugin for d in env.get("CNI_PATH", "").split(":") if d and (Path(d) / plugin).is_file()), None)
    if path is None:
        raise CniError(INVALID_CONFIG, f"IPAM plugin {plugin!r} not found in CNI_PATH {env.get('CNI_PATH', '')!r}")
    ran = subprocess.run([str(path)], input=json.dumps(conf.raw), capture_output=True, text=True,
                         env={**env, "CNI_COMMAND": command}, timeout=conf.timeout)
    output = ran.stdout.strip()
    if ran.returncode != 0:
        try:
            error = json.loads(output)
        except ValueError:
            error = {"code": 5, "msg": output or ran.stderr.strip()}
        raise CniError(int(error.get("code", 5)), f"IPAM plugin {plugin}: {error.get('msg')}", str(error.get("details", "")))
    return json.loads(output) if command == "ADD" and output else {}


# --- the executable --------------------------------------------------------------------------------


def run(command: str, stdin: str, env: Mapping[str, str]) -> dict[str, Any] | None:
    """One invocation: the result to print (None: print nothing); CniError on failure."""
    if command == "VERSION":
        try:
            requested = json.loads(stdin).get("cniVersion", CURRENT_VERSION) if stdin.strip() else CURRENT_VERSION
        except (ValueError, AttributeError):
            requested = CURRENT_VERSION
        version = requested if requested in SUPPORTED_VERSIONS else CURRENT_VERSION
        return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    conf = Conf.parse(stdin)
    if command == "ADD":
        return add(conf, env)
    if command == "DEL":
        delete(conf, env)
    elif command == "CHECK":
        check(conf, env)
    elif command == "GC":
        gc(conf)
    elif command == "STATUS":
        status(conf)
    else:
        raise CniError(MISSING_ENV, f"CNI_COMMAND {command!r}: one of ADD, DEL, CHECK, VERSION, GC, STATUS")
    return None


def main() -> NoReturn:
    """The ``netvirt-cni`` executable: CNI_COMMAND from the environment, the configuration on stdin."""
    stdin = sys.stdin.read()
    command = os.environ.get("CNI_COMMAND", "")
    try:
        result = run(command, stdin, os.environ)
    except CniError as error:
        try:
            version = str(json.loads(stdin).get("cniVersion", CURRENT_VERSION))
        except (ValueError, AttributeError):
            version = CURRENT_VERSION
        print(json.dumps({"cniVersion": version, "code": error.code, "msg": error.msg, "details": error.details}))
        sys.exit(1)
    if result is not None:
        print(json.dumps(result))
    sys.exit(0)
