"""A small stand-in for libcni (containernetworking/cni's library, which runtimes use): it runs a
network configuration list's plugins as executables with the CNI environment and the per-plugin
configuration on stdin (``name`` and ``cniVersion`` copied from the list, ``prevResult`` chained),
caches each ADD's result the way libcni does (``results/NETWORK-CONTAINER-IFNAME``) and hands it to
CHECK and DEL as ``prevResult``; GC first DELs every cached attachment the runtime no longer lists,
then sends GC with ``cni.dev/valid-attachments`` (and ``cni.dev/attachments``, as libcni does)."""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PluginError(Exception):
    def __init__(self, plugin: str, command: str, error: dict[str, Any]) -> None:
        super().__init__(f"{plugin} {command}: {error}")
        self.error = error
        self.code = error.get("code")


@dataclass
class Libcni:
    conflist: dict[str, Any]
    plugin_dirs: list[Path]
    cache_dir: Path

    def _exec(self, plugin: dict[str, Any], command: str, env: dict[str, str], extra: dict[str, Any]) -> dict[str, Any] | None:
        conf = {**plugin, "name": self.conflist["name"], "cniVersion": self.conflist["cniVersion"], **extra}
        path = next(d / plugin["type"] for d in self.plugin_dirs if (d / plugin["type"]).exists())
        environment = {**os.environ, "CNI_COMMAND": command, "CNI_PATH": ":".join(map(str, self.plugin_dirs)), **env}
        ran = subprocess.run([str(path)], input=json.dumps(conf), capture_output=True, text=True, env=environment, timeout=120)
        output = json.loads(ran.stdout) if ran.stdout.strip() else None
        if ran.returncode != 0:
            raise PluginError(plugin["type"], command, output or {"msg": ran.stderr})
        return output

    def _cache(self, container: str, ifname: str) -> Path:
        return self.cache_dir / "results" / f"{self.conflist['name']}-{container}-{ifname}"

    def _env(self, container: str, netns: str, ifname: str) -> dict[str, str]:
        return {"CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": "IgnoreUnknown=1"}

    def add(self, container: str, netns: str, ifname: str = "eth0") -> dict[str, Any]:
        previous: dict[str, Any] | None = None
        for plugin in self.conflist["plugins"]:
            previous = self._exec(plugin, "ADD", self._env(container, netns, ifname), {"prevResult": previous} if previous else {})
        assert previous is not None
        cache = self._cache(container, ifname)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"kind": "cniCacheV1", "containerId": container, "ifName": ifname,
                                     "networkName": self.conflist["name"], "netns": netns, "result": previous}))
        return previous

    def cached(self, container: str, ifname: str = "eth0") -> dict[str, Any] | None:
        cache = self._cache(container, ifname)
        return json.loads(cache.read_text()) if cache.exists() else None

    def check(self, container: str, netns: str, ifname: str = "eth0") -> None:
        cached = self.cached(container, ifname)
        assert cached is not None, "libcni refuses CHECK without a cached result"
        for plugin in self.conflist["plugins"]:
            self._exec(plugin, "CHECK", self._env(container, netns, ifname), {"prevResult": cached["result"]})

    def delete(self, container: str, netns: str, ifname: str = "eth0") -> None:
        cached = self.cached(container, ifname)
        extra = {"prevResult": cached["result"]} if cached else {}
        for plugin in reversed(self.conflist["plugins"]):
            self._exec(plugin, "DEL", self._env(container, netns, ifname), extra)
        self._cache(container, ifname).unlink(missing_ok=True)

    def gc(self, valid: list[tuple[str, str]]) -> None:
        attachments = [{"containerID": container, "ifname": ifname} for container, ifname in valid]
        for cache in sorted((self.cache_dir / "results").glob(f"{self.conflist['name']}-*")):
            entry = json.loads(cache.read_text())
            if (entry["containerId"], entry["ifName"]) not in valid:
                self.delete(entry["containerId"], entry["netns"], entry["ifName"])
        for plugin in self.conflist["plugins"]:
            self._exec(plugin, "GC", {}, {"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments})

    def status(self) -> None:
        for plugin in self.conflist["plugins"]:
            self._exec(plugin, "STATUS", {}, {})

    def version(self) -> dict[str, Any]:
        result = self._exec(self.conflist["plugins"][0], "VERSION", {}, {})
        assert result is not None
        return result
