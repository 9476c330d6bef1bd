"""Where a tree was measured: the environment metadata, from local files only."""

from __future__ import annotations

import socket

import pytest

from irene.measure import environment as env

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme sse sse2 hypervisor avx2
"""
MEMINFO = "MemTotal:       16318276 kB\nMemFree:         1000000 kB\n"


def write_dmi(directory, **fields):
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in fields.items():
        (directory / name).write_text(value + "\n")
    return directory


def test_cpu_memory_and_hypervisor_from_proc_text():
    assert env.cpu_model(CPUINFO) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert env.hypervisor_flag(CPUINFO) is True
    assert env.hypervisor_flag(CPUINFO.replace(" hypervisor", "")) is False
    assert env.memory_bytes(MEMINFO) == 16318276 * 1024


@pytest.mark.parametrize("fields, cloud, instance, virt", [
    ({"sys_vendor": "Amazon EC2", "product_name": "g5.xlarge", "bios_vendor": "Amazon EC2"},
     "aws", "g5.xlarge", None),
    ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp", None,
     "google compute engine"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
      "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "azure", None,
     "virtual machine"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Surface Laptop 5"}, None, None,
     None),  # a Microsoft laptop is not Azure
    ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}, None, None,
     "qemu"),
    ({"sys_vendor": "Dell Inc.", "product_name": "Precision 7920 Tower"}, None, None, None),
])
def test_cloud_and_vm_from_dmi(tmp_path, fields, cloud, instance, virt):
    dmi = env.dmi_strings(write_dmi(tmp_path / "dmi", **fields))
    assert dmi == fields
    provider = env.cloud_provider(dmi)
    assert provider == cloud
    assert env.instance_type(dmi, provider) == instance
    found = env.virtualization(dmi, hypervisor=False, root=tmp_path)
    if virt is None:
        assert found in (None, "wsl")  # WSL is read from this kernel's release
    else:
        assert found == virt


def test_container_markers(tmp_path, monkeypatch):
    for name in ("KUBERNETES_SERVICE_HOST", "container"):
        monkeypatch.delenv(name, raising=False)
    assert env.container_kind(tmp_path) is None
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "cgroup").write_text("0::/kubepods/burstable/pod1234/abcd\n")
    assert env.container_kind(tmp_path) == "kubernetes"
    (tmp_path / ".dockerenv").write_text("")
    assert env.container_kind(tmp_path) == "docker"


def test_environment_metadata_reads_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("environment_metadata opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    meta = env.environment_metadata("cpu")
    assert meta["host"] == socket.gethostname()
    assert meta["logical_cpus"] >= 1 and meta["memory_bytes"] > 0
    assert meta["kernel"] and meta["python"] and meta["os"]
    assert "gpu_name" not in meta  # not a CUDA device
    assert all(v is not None for v in meta.values())
