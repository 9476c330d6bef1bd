"""Where a tree was measured: host, CPU, memory, GPU, OS, container / VM, cloud instance type.

:func:`environment_metadata` reads only local sources — Python's ``platform``/``os``/``socket``,
``/proc/cpuinfo``, ``/proc/meminfo``, ``/proc/1/cgroup``, ``/etc/os-release``, the DMI strings
in ``/sys/class/dmi/id`` that any user may read (vendor, product and board names, never serial
numbers or UUIDs), torch's CUDA device properties and, when ``nvidia-ml-py`` is installed,
NVML's driver version. It never makes a network call (cloud metadata services are not asked:
the instance type is what the DMI strings say, as on AWS Nitro instances). Missing sources give
absent keys, never an error, so two data sets — a workstation's and a cloud GPU's — can be told
apart by their trees' ``environment`` metadata.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

#: the DMI strings read (all world-readable; serials and UUIDs are root-only and never read)
DMI_FIELDS = ("sys_vendor", "product_name", "product_version", "board_vendor", "board_name",
              "bios_vendor", "chassis_vendor", "chassis_asset_tag")
DMI_DIR = Path("/sys/class/dmi/id")
#: cloud providers recognised from DMI strings: (field, substring, provider)
CLOUD_HINTS = (
    ("sys_vendor", "amazon ec2", "aws"),
    ("bios_vendor", "amazon ec2", "aws"),
    ("product_version", "amazon", "aws"),
    ("bios_vendor", "amazon", "aws"),
    ("product_name", "google compute engine", "gcp"),
    ("chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77", "azure"),
    ("sys_vendor", "alibaba cloud", "alibaba"),
    ("chassis_asset_tag", "oraclecloud.com", "oci"),
    ("sys_vendor", "digitalocean", "digitalocean"),
    ("sys_vendor", "hetzner", "hetzner"),
    ("sys_vendor", "scaleway", "scaleway"),
    ("sys_vendor", "openstack", "openstack"),
)
#: DMI product names that name a hypervisor rather than a machine
VM_PRODUCTS = ("kvm", "qemu", "virtualbox", "vmware", "virtual machine", "hvm domu", "bochs",
               "google compute engine", "standard pc", "cloud hypervisor", "firecracker")
#: words in /proc/1/cgroup (or /proc/self/mountinfo) that mean a container
CONTAINER_WORDS = ("docker", "kubepods", "containerd", "libpod", "podman", "lxc", "garden")
_READ_LIMIT = 1 << 20


def _read(path: str | Path, limit: int = _READ_LIMIT) -> str | None:
    """The text of a small local file, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str | None:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or None


def hypervisor_flag(cpuinfo: str | None = None) -> bool:
    """Whether the CPU flags include ``hypervisor`` (the kernel runs under a hypervisor)."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    for line in (text or "").splitlines():
        if line.startswith("flags"):
            return "hypervisor" in line.split(":", 1)[-1].split()
    return False


def memory_bytes(meminfo: str | None = None) -> int | None:
    """Total RAM in bytes (``/proc/meminfo`` MemTotal, else ``os.sysconf``)."""
    text = meminfo if meminfo is not None else _read("/proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def dmi_strings(directory: Path = DMI_DIR) -> dict[str, str]:
    """The readable DMI strings of :data:`DMI_FIELDS` (empty off Linux / in most containers)."""
    out = {}
    for name in DMI_FIELDS:
        text = _read(directory / name, 256)
        if text and text.strip():
            out[name] = text.strip()
    return out


def cloud_provider(dmi: dict[str, str]) -> str | None:
    """``"aws"``, ``"gcp"``, ``"azure"``, ... when the DMI strings name a cloud, else None."""
    for field, needle, provider in CLOUD_HINTS:
        if needle in dmi.get(field, "").lower():
            return provider
    return None


def instance_type(dmi: dict[str, str], provider: str | None) -> str | None:
    """The cloud instance type where the DMI strings carry it (AWS Nitro: the product name is
    the instance type, e.g. ``p4d.24xlarge``); None elsewhere (no metadata service is asked)."""
    product = dmi.get("product_name", "")
    if provider == "aws" and "." in product and " " not in product:
        return product
    return None


def container_kind(root: Path = Path("/")) -> str | None:
    """``"docker"``, ``"podman"``, ``"kubernetes"``, ``"lxc"``, ... when this process runs in a
    container (marker files, PID 1's cgroups, the environment), else None."""
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run/.containerenv").exists():
        return "podman"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    container = os.environ.get("container")
    if container:
        return container
    text = (_read(root / "proc/1/cgroup") or "").lower()
    for word in CONTAINER_WORDS:
        if word in text:
            return "kubernetes" if word == "kubepods" else word
    return None


def virtualization(dmi: dict[str, str], *, hypervisor: bool,
                   root: Path = Path("/")) -> str | None:
    """What the DMI product / hypervisor type say about the VM (``"kvm"``, ``"xen"``, ...), or
    ``"vm"`` when only the CPU's hypervisor flag says so; None on bare metal (or unknown)."""
    xen = _read(root / "sys/hypervisor/type", 64)
    if xen and xen.strip():
        return xen.strip()
    product = (dmi.get("product_name", "") + " " + dmi.get("sys_vendor", "")).lower()
    for name in VM_PRODUCTS:
        if name in product:
            return name
    if "microsoft" in platform.release().lower():
        return "wsl"
    return "vm" if hypervisor else None


def os_description() -> str:
    """``PRETTY_NAME`` of ``/etc/os-release`` (else ``platform.platform()``)."""
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def gpu_metadata(device: str) -> dict[str, Any]:
    """Name, memory, capability and CUDA version of the GPU a CUDA ``device`` names, plus the
    NVML driver version when ``nvidia-ml-py`` is installed; empty for other devices."""
    if not device.startswith("cuda"):
        return {}
    import torch

    if not torch.cuda.is_available():
        return {}
    index = torch.device(device).index or 0
    props = torch.cuda.get_device_properties(index)
    out: dict[str, Any] = {"gpu_name": props.name, "gpu_memory_bytes": int(props.total_memory),
                           "gpu_capability": f"{props.major}.{props.minor}",
                           "gpu_count": torch.cuda.device_count(),
                           "cuda_version": torch.version.cuda}
    driver = _nvml_driver()
    if driver:
        out["gpu_driver"] = driver
    return out


def _nvml_driver() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML missing or broken: the driver is just not recorded
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def environment_metadata(device: str = "cpu") -> dict[str, Any]:
    """Where a tree was measured (root metadata key ``environment``): ``host``, ``cpu_model``,
    ``logical_cpus``, ``usable_cpus`` (this process's affinity), ``memory_bytes`` (RAM, bytes),
    ``os``, ``kernel``, ``python``, ``container``, ``virtualization``, ``cloud``,
    ``instance_type``, ``dmi`` (vendor/product strings) and, on a CUDA ``device``, the GPU's
    name, memory (bytes), capability, count, CUDA and driver versions. Keys whose source is
    absent are left out."""
    cpuinfo = _read("/proc/cpuinfo")
    dmi = dmi_strings()
    provider = cloud_provider(dmi)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    meta: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(cpuinfo),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": memory_bytes(),
        "os": os_description(),
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "container": container_kind(),
        "virtualization": virtualization(dmi, hypervisor=hypervisor_flag(cpuinfo)),
        "cloud": provider,
        "instance_type": instance_type(dmi, provider),
        "dmi": dmi or None,
    }
    meta.update(gpu_metadata(device))
    return {k: v for k, v in meta.items() if v is not None}
