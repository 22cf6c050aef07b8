"""A scripted stand-in for pynvml: energy counters as a function of a (fake) clock, for tests and dry runs.

    clock = FakeClock()
    nv = FakeNvml([FakeGpu(power_w=300.0), FakeGpu(power_w=100.0)], clock)
    meter = NvmlEnergyMeter(nvml=nv, clock=clock, interval_s=None)

Power per device is constant (power_w) or piecewise constant (power_schedule: [(from_t_s, watts), ...]); the
energy counter is its exact integral since t=0 in millijoules, restarting from 0 at each time in reset_at_s
(a driver reload). energy_supported=False makes nvmlDeviceGetTotalEnergyConsumption raise NotSupported (pre-Volta);
power_supported=False does the same for nvmlDeviceGetPowerUsage. mode "no_driver" / "no_library" makes nvmlInit
raise as pynvml does on a machine without a loaded driver / without libnvidia-ml.so.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries the NVML return code in .value."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"Unknown Error {self.value}")


class NVMLError_Uninitialized(NVMLError):  # noqa: N801 - pynvml's names
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNINITIALIZED)


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_DRIVER_NOT_LOADED)


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


class FakeClock:
    """A clock the test moves by hand: clock() -> current t_s."""

    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> float:
        if dt_s < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.t_s += dt_s
        return self.t_s

    def set(self, t_s: float) -> float:
        return self.advance(t_s - self.t_s)


@dataclass
class FakeGpu:
    name: str = "NVIDIA Fake H200"
    power_w: float = 100.0
    power_schedule: Sequence[tuple[float, float]] | None = None  # [(from_t_s, watts), ...], first from 0
    energy_supported: bool = True
    power_supported: bool = True
    reset_at_s: Sequence[float] = ()

    def schedule(self) -> list[tuple[float, float]]:
        return sorted(self.power_schedule) if self.power_schedule else [(0.0, self.power_w)]

    def power_at(self, t_s: float) -> float:
        watts = self.schedule()[0][1]
        for start, w in self.schedule():
            if start <= t_s:
                watts = w
        return watts

    def energy_since_zero_j(self, t_s: float) -> float:
        """Exact integral of the power schedule over [0, t_s]."""
        sched = self.schedule()
        total = 0.0
        for k, (start, watts) in enumerate(sched):
            a = max(start if k else 0.0, 0.0)
            b = sched[k + 1][0] if k + 1 < len(sched) else t_s
            b = min(b, t_s)
            if b > a:
                total += watts * (b - a)
        return total

    def counter_mj(self, t_s: float) -> int:
        last_reset = max((r for r in self.reset_at_s if r <= t_s), default=0.0)
        return round((self.energy_since_zero_j(t_s) - self.energy_since_zero_j(last_reset)) * 1000.0)


class FakeNvml:
    """Module-like: the pynvml functions NvmlEnergyMeter uses, over FakeGpu devices and a clock."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND

    def __init__(self, gpus: Sequence[FakeGpu], clock: Callable[[], float] = time.monotonic, *,
                 mode: str = "ok") -> None:
        if mode not in ("ok", "no_driver", "no_library"):
            raise ValueError(f"unknown mode {mode!r}")
        self.gpus = list(gpus)
        self.clock = clock
        self.mode = mode
        self.init_calls = 0
        self.shutdown_calls = 0
        self._depth = 0

    @property
    def initialized(self) -> bool:
        return self._depth > 0

    def _check(self) -> None:
        if not self.initialized:
            raise NVMLError_Uninitialized()

    def _gpu(self, handle: int) -> FakeGpu:
        self._check()
        return self.gpus[handle]

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.mode == "no_driver":
            raise NVMLError_DriverNotLoaded()
        if self.mode == "no_library":
            raise NVMLError_LibraryNotFound()
        self.init_calls += 1
        self._depth += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._check()
        self.shutdown_calls += 1
        self._depth -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return self._gpu(handle).name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        gpu = self._gpu(handle)
        if not gpu.energy_supported:
            raise NVMLError_NotSupported()
        return gpu.counter_mj(self.clock())

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        gpu = self._gpu(handle)
        if not gpu.power_supported:
            raise NVMLError_NotSupported()
        return round(gpu.power_at(self.clock()) * 1000.0)
