"""Backend selection by URL scheme (``sim://``, later ``gentl://``, ``serial://`` ...).

Backends are named as ``"module:Class"`` strings and imported only when a config asks for
them, so a missing optional dependency only hurts the cell that uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ValidationError

from cellctl.drivers.errors import DriverInitError, DriverUnavailable

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL: ``scheme://location?key=value``."""

    raw: str
    scheme: str
    location: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> DeviceUrl:
        parts = urlsplit(raw)
        if not parts.scheme:
            raise ValueError(f"device URL {raw!r} has no scheme (expected e.g. 'sim://')")
        return cls(
            raw=raw,
            scheme=parts.scheme.lower(),
            location=(parts.netloc + parts.path),
            options=dict(parse_qsl(parts.query)),
        )

    def options_as(self, model: type[M], kind: str) -> M:
        """The URL options validated by a backend's options model; each bad option is named
        with its value and what is allowed, unknown ones with the options there are."""
        try:
            return model.model_validate(self.options)
        except ValidationError as exc:
            known = ", ".join(model.model_fields)
            problems = []
            for err in exc.errors():
                name = ".".join(map(str, err["loc"]))
                if not name:  # a rule across options
                    problems.append(err["msg"])
                elif err["type"] == "extra_forbidden":
                    problems.append(f"unknown option {name!r} (allowed: {known})")
                else:
                    problems.append(f"option {name}={self.options.get(name)!r}: {err['msg']}")
            raise DriverInitError(f"{kind} {self.raw!r}: {'; '.join(problems)} (options: {known})") from exc


def socket_address(url: DeviceUrl, kind: str) -> tuple[str, int]:
    """(host, port) of ``socket://HOST:PORT``; DriverInitError naming what is allowed for a
    missing host or a port that is not a number in 1-65535 (pyserial would fail on it later,
    at connect, with a garbled message)."""
    host, sep, port = url.location.rpartition(":")
    if not sep or not host.strip("[]"):
        raise DriverInitError(f"{kind} {url.raw!r}: expected socket://HOST:PORT (e.g. socket://192.168.0.20:30313)")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65_535):
        raise DriverInitError(f"{kind} {url.raw!r}: port {port!r} must be a number in 1-65535 (socket://HOST:PORT)")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class BackendRegistry:
    """Maps URL schemes of one device kind to ``"module:Class"`` backends and each backend's
    ``"module:OptionsModel"`` (its URL options as a pydantic model, checked before a start)."""

    kind: str
    backends: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)

    def load(self, url: DeviceUrl) -> type[Any]:
        backend: type[Any] = self._import(url, self._target(url, self.backends))
        return backend

    def options_model(self, url: DeviceUrl) -> type[BaseModel] | None:
        """The backend's options model; None if it declares none (then it takes no options)."""
        self._target(url, self.backends)  # an unknown scheme is named as such
        target = self.options.get(url.scheme)
        return None if target is None else self._import(url, target)

    def verify(self, raw: str) -> DeviceUrl:
        """Parse ``raw`` and validate its scheme and options without creating the device.

        Raises ValueError (not a URL), DriverUnavailable (unknown scheme, backend not
        importable) or DriverInitError (bad options), each naming what is allowed.
        """
        url = DeviceUrl.parse(raw)
        model = self.options_model(url)
        if url.scheme == "socket":  # every socket:// backend: the address, before its options
            socket_address(url, self.kind)
        if model is not None:
            url.options_as(model, self.kind)
        elif url.options:
            raise DriverInitError(f"{self.kind} {raw!r}: {url.scheme}:// takes no options")
        return url

    def create(self, url: str, **kwargs: Any) -> Any:
        parsed = DeviceUrl.parse(url)
        return self.load(parsed)(parsed, **kwargs)

    def _target(self, url: DeviceUrl, table: dict[str, str]) -> str:
        target = table.get(url.scheme)
        if target is None:
            known = ", ".join(f"{s}://" for s in sorted(self.backends))
            raise DriverUnavailable(f"{self.kind}: unknown URL scheme {url.scheme!r} in {url.raw!r}; known: {known}")
        return target

    def _import(self, url: DeviceUrl, target: str) -> Any:
        module_name, _, name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DriverUnavailable(
                f"{self.kind}: backend {url.scheme}:// needs module {module_name!r}, which "
                f"failed to import ({exc}); install it with `pip install cellctl`"
            ) from exc
        return getattr(module, name)
