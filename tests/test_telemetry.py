"""Telemetry: NVML sampler against a stand-in pynvml, RAPL against a fake sysfs tree."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.measure.telemetry import TELEMETRY_FIELDS, open_telemetry, nvml_target
from harness.measure.telemetry.nvml import GPU_FIELDS, GpuSampler
from harness.measure.telemetry.rapl import CPU_FIELDS, RaplMeter, energy_delta_uj


# ---- a stand-in for the pynvml module: only the names the sampler uses ----------------------

class NVMLError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__("Not Supported")


class FakeNvml:
    """Power is a known function of time so integrated energy has an exact expected value."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, *, power_w=lambda t: 300.0, energy_w: float | None = 250.0,
                 fail_after_power_reads: int | None = None, init_error: Exception | None = None,
                 util_supported: bool = True, read_s: float = 0.0) -> None:
        self.t0 = time.perf_counter()
        self.read_s = read_s                # how long a power reading takes (a slow driver)
        self.power_w = power_w              # t (s since construction) -> W
        self.energy_w = energy_w            # counter rate; None: counter not supported
        self.fail_after = fail_after_power_reads
        self.init_error = init_error
        self.util_supported = util_supported
        self.power_reads = 0
        self.shutdowns = 0
        self.handles: list[object] = []

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        self.handles.append(index)
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> object:
        self.handles.append(uuid)
        return ("handle", uuid)

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        self.power_reads += 1
        time.sleep(self.read_s)
        if self.fail_after is not None and self.power_reads > self.fail_after:
            raise NVMLError("GPU is lost")
        return round(self.power_w(self._now()) * 1000)  # mW, as NVML reports it

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        if self.energy_w is None:
            raise NVMLError_NotSupported()
        return 7_000_000 + round(self.energy_w * self._now() * 1000)  # mJ since driver load

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> SimpleNamespace:
        if not self.util_supported:
            raise NVMLError_NotSupported()
        return SimpleNamespace(gpu=80, memory=30)

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> SimpleNamespace:
        return SimpleNamespace(used=3 * 2**30 + self.power_reads, total=80 * 2**30, free=1)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetClockInfo(self, handle: object, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1980


def test_the_stand_in_only_uses_names_real_pynvml_has() -> None:
    # Guards the stand-in against drifting from the library it replaces (a misspelt function
    # would pass against the fake and fail on a real GPU).
    pynvml = pytest.importorskip("pynvml")
    public = [n for n in vars(FakeNvml) if n.startswith(("nvml", "NVML"))]
    assert len(public) >= 13
    assert [n for n in public if not hasattr(pynvml, n)] == []
    assert pynvml.NVML_TEMPERATURE_GPU == FakeNvml.NVML_TEMPERATURE_GPU
    assert pynvml.NVML_CLOCK_SM == FakeNvml.NVML_CLOCK_SM


def run_window(sampler: GpuSampler, seconds: float = 0.15):
    with sampler.window() as w:
        time.sleep(seconds)
    return w


# ---- NVML ----------------------------------------------------------------------------------

def test_energy_comes_from_the_counter_when_supported() -> None:
    fake = FakeNvml(power_w=lambda t: 300.0, energy_w=250.0)  # counter disagrees with power on purpose
    with GpuSampler(0, interval_s=0.01, nvml=fake) as sampler:
        w = run_window(sampler)
        s = w.summary(n_steps=5)
    assert set(s) == set(GPU_FIELDS)
    assert s["energy_source"] == "counter"
    assert s["energy_j_per_step"] == pytest.approx(250.0 * w.duration_s / 5, rel=0.02)
    assert s["mean_power_w"] == pytest.approx(250.0, rel=0.02)
    assert s["max_power_w"] == 300.0
    assert s["gpu_util_mean"] == 80
    assert s["gpu_mem_used_max_bytes"] == 3 * 2**30 + fake.power_reads  # max = the last reading
    assert s["temp_max_c"] == 61 and s["sm_clock_mean_mhz"] == 1980
    assert s["telemetry_note"] is None
    assert len(w.samples) >= 5, "the background thread should sample every 10 ms"
    assert fake.shutdowns == 1


def test_energy_integrates_power_when_the_counter_is_not_supported() -> None:
    # Power rises linearly (100 W + 400 W/s); the trapezoid rule is exact for a linear trace,
    # so the result must equal the closed-form integral over the sampled span.
    def power(t: float) -> float:
        return 100.0 + 400.0 * t
    fake = FakeNvml(power_w=power, energy_w=None)
    with GpuSampler(0, interval_s=0.01, nvml=fake) as sampler:
        w = run_window(sampler, 0.2)
    a, b = w.samples[0].t_s - fake.t0, w.samples[-1].t_s - fake.t0
    expected_j = 100.0 * (b - a) + 200.0 * (b * b - a * a)
    s = w.summary(n_steps=4)
    assert s["energy_source"] == "integrated_power"
    # A sample's timestamp is taken just before NVML is read; a busy machine can widen that gap
    # (GIL hand-over), so allow 0.5%. A left-Riemann sum instead of the trapezoid is ~1.5% low.
    assert s["energy_j_per_step"] == pytest.approx(expected_j / 4, rel=5e-3)
    assert s["mean_power_w"] == pytest.approx(expected_j / (b - a), rel=5e-3)
    assert s["max_power_w"] == pytest.approx(power(b), abs=0.5)


def test_a_counter_that_did_not_tick_falls_back_to_power() -> None:
    fake = FakeNvml(power_w=lambda t: 200.0, energy_w=0.0)  # counter stuck within the window
    w = run_window(GpuSampler(0, interval_s=0.01, nvml=fake), 0.05)
    s = w.summary(n_steps=1)
    assert s["energy_source"] == "integrated_power"
    assert s["energy_j_per_step"] == pytest.approx(200.0 * w.duration_s, rel=1e-6)


def test_nvml_failing_mid_run_nulls_values_and_never_raises() -> None:
    fake = FakeNvml(fail_after_power_reads=4)  # 1 probe + start + 2 thread samples, then lost
    sampler = GpuSampler(0, interval_s=0.01, nvml=fake)
    w = run_window(sampler)
    reads_at_failure = fake.power_reads
    time.sleep(0.05)
    assert fake.power_reads == reads_at_failure, "sampling must stop after the failure"
    s = w.summary(n_steps=3)
    assert s["telemetry_note"].startswith("NVML error mid-run:") and "GPU is lost" in s["telemetry_note"]
    assert all(s[k] is None for k in GPU_FIELDS if k != "telemetry_note")
    sampler.close()
    assert fake.shutdowns == 1


def test_each_window_reports_what_its_sampling_thread_cost() -> None:
    # The thread's readings compete with the timed steps for the GIL: the row says how long it
    # spent on them, per step. Each reading here takes at least 4 ms.
    fake = FakeNvml(read_s=0.004)
    w = run_window(GpuSampler(0, interval_s=0.01, nvml=fake), 0.2)
    s = w.summary(n_steps=4)
    thread_readings = s["gpu_samples"] - 2             # the window's edges are read outside the steps
    assert s["gpu_samples"] == len(w.samples) and thread_readings >= 5
    assert thread_readings * 4.0 / 4 <= s["gpu_sampler_ms_per_step"] < 0.2 * 1e3 / 4


def test_sampling_can_be_turned_off_and_energy_still_comes_from_the_counter() -> None:
    fake = FakeNvml(energy_w=250.0)
    w = run_window(GpuSampler(0, interval_s=None, nvml=fake), 0.1)
    s = w.summary(n_steps=2)
    assert s["gpu_samples"] == 2 and s["gpu_sampler_ms_per_step"] == 0.0
    assert s["energy_source"] == "counter"
    assert s["energy_j_per_step"] == pytest.approx(250.0 * w.duration_s / 2, rel=0.02)
    with pytest.raises(ValueError, match="positive or None"):
        GpuSampler(0, interval_s=0)


def test_pynvml_missing_gives_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with GpuSampler(0) as sampler:
        s = run_window(sampler, 0).summary(1)
    assert s["telemetry_note"] == "NVML unavailable: pynvml not installed"
    assert all(s[k] is None for k in GPU_FIELDS if k != "telemetry_note")


def test_nvml_init_failure_and_unsupported_metric_are_notes() -> None:
    dead = FakeNvml(init_error=NVMLError("Driver Not Loaded"))
    s = run_window(GpuSampler(0, nvml=dead), 0).summary(1)
    assert s["telemetry_note"] == "NVML unavailable: Driver Not Loaded"

    mig = FakeNvml(util_supported=False)  # e.g. a MIG slice has no utilization counter
    s = run_window(GpuSampler(0, interval_s=0.01, nvml=mig), 0.03).summary(1)
    assert s["gpu_util_mean"] is None and s["energy_j_per_step"] is not None
    assert s["telemetry_note"] == "not supported on this device: gpu_util"


def test_real_pynvml_on_this_machine_never_raises() -> None:
    # With a driver this reads a real GPU; without one NVML's own error becomes the note.
    with GpuSampler(0, interval_s=0.01) as sampler:
        s = run_window(sampler, 0.05).summary(1)
    if s["telemetry_note"] is not None and s["telemetry_note"].startswith("NVML unavailable"):
        assert s["energy_j_per_step"] is None
    else:
        assert s["gpu_mem_used_max_bytes"] > 0


def test_nvml_target_follows_cuda_visible_devices() -> None:
    assert nvml_target("cuda", {}) == 0
    assert nvml_target("cuda:1", {"CUDA_VISIBLE_DEVICES": "3,2"}) == 2
    assert nvml_target("cuda:0", {"CUDA_VISIBLE_DEVICES": "GPU-abc,GPU-def"}) == "GPU-abc"
    with pytest.raises(ValueError, match="not visible"):
        nvml_target("cuda:1", {"CUDA_VISIBLE_DEVICES": "0,-1,1"})


# ---- RAPL -----------------------------------------------------------------------------------

def make_domain(root: Path, name: str, label: str, energy: int, max_range: int = 262_143_328_850) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_sums_packages_only_and_handles_wraparound(tmp_path: Path) -> None:
    pkg0 = make_domain(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    pkg1 = make_domain(tmp_path, "intel-rapl:1", "package-1", 999_000, max_range=1_000_000)
    core = make_domain(tmp_path, "intel-rapl:0:0", "core", 5)          # subdomain of package-0
    psys = make_domain(tmp_path, "intel-rapl:2", "psys", 5)            # whole platform
    mmio = make_domain(tmp_path, "intel-rapl-mmio:0", "package-0", 5)  # same counter again
    with RaplMeter(tmp_path).window() as w:
        (pkg0 / "energy_uj").write_text("4000000\n")   # +3 J
        (pkg1 / "energy_uj").write_text("500000\n")    # wrapped: +1000 µJ to the top, +500000 after
        for d in (core, psys, mmio):
            (d / "energy_uj").write_text("999999999\n")
    s = w.summary(n_steps=2)
    assert set(s) == set(CPU_FIELDS)
    assert s["cpu_energy_source"] == "rapl" and s["cpu_energy_note"] is None
    assert s["cpu_energy_j_per_step"] == pytest.approx((3_000_000 + 501_000) / 1e6 / 2)
    assert [d.name for d in w.domains] == ["package-0", "package-1"]
    assert energy_delta_uj(10, 30, 100) == 20 and energy_delta_uj(90, 5, 100) == 15


def test_rapl_absent_gives_a_note(tmp_path: Path) -> None:
    with RaplMeter(tmp_path / "powercap").window() as w:
        pass
    s = w.summary(1)
    assert s == {"cpu_energy_j_per_step": None, "cpu_energy_source": None,
                 "cpu_energy_note": f"no RAPL domains under {tmp_path / 'powercap'}"}


def test_rapl_permission_denied_gives_a_note() -> None:
    # A real EACCES from the kernel: as root, drop the effective uid to `nobody` while reading
    # (root bypasses file modes); as any other user, mode 0400 of a root-less file does it.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        pkg = make_domain(root, "intel-rapl:0", "package-0", 123)
        os.chmod(pkg / "energy_uj", 0o000 if os.geteuid() != 0 else 0o400)  # sysfs: root-only
        if os.geteuid() == 0:
            os.seteuid(65534)
        try:
            with RaplMeter(root).window() as w:
                pass
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
        s = w.summary(1)
    assert s["cpu_energy_j_per_step"] is None and s["cpu_energy_source"] is None
    assert s["cpu_energy_note"] == f"permission denied reading {pkg / 'energy_uj'}"


# ---- the combined interface -----------------------------------------------------------------

def test_cpu_point_has_null_gpu_keys_and_rapl_values(tmp_path: Path) -> None:
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    with open_telemetry("cpu", rapl_root=tmp_path) as tel:
        with tel.window() as w:
            (pkg / "energy_uj").write_text("2500000\n")
    s = w.summary(5)
    assert set(s) == set(TELEMETRY_FIELDS) and s == tel.summary(5)
    assert s["telemetry_note"] == "not a CUDA point"
    assert all(s[k] is None for k in GPU_FIELDS if k != "telemetry_note")
    assert s["cpu_energy_j_per_step"] == pytest.approx(0.5)


def test_cuda_point_merges_gpu_and_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    fake = FakeNvml()
    with open_telemetry("cuda:0", interval_s=0.01, nvml=fake, rapl_root=tmp_path) as tel:
        with tel.window() as w:
            time.sleep(0.03)
    s = w.summary(2)
    assert fake.handles == [1], "cuda:0 under CUDA_VISIBLE_DEVICES=1,0 is NVML device 1"
    assert s["energy_source"] == "counter" and s["energy_j_per_step"] > 0
    assert s["cpu_energy_note"] == f"no RAPL domains under {tmp_path}"
    assert fake.shutdowns == 1
