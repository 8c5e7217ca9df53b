"""Platform and ISA detection on real /proc/cpuinfo and lscpu dumps (../shared/fixtures/cpuinfo)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "cpuinfo"
SCRIPT = REPO / "payload" / "fleetbench_payload" / "cpuinfo.py"

# The controller venv has no payload package: load the module from its file.
_spec = importlib.util.spec_from_file_location("fleetbench_cpuinfo", SCRIPT)
assert _spec and _spec.loader
cpuinfo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cpuinfo)

ALL_PRECISIONS = tuple(cpuinfo.PRECISION_ISA)
AMX = ("amx_int8", "amx_bfloat16", "amx_bfloat32")

# file: (platform, vendor, family, model, has AMX, has AVX-512 VNNI)
EXPECTED = {
    "spr-8480plus.cpuinfo.txt": ("SPR", "Intel", 6, 143, True, True),
    "emr-6530.lscpu.txt": ("EMR", "Intel", 6, 207, True, True),
    "emr-kvm-genericname.cpuinfo.txt": ("EMR", "Intel", 6, 207, True, True),
    "emr-8575c-vm-noamx.cpuinfo.txt": ("EMR", "Intel", 6, 207, False, True),
    "gnr-6972p.cpuinfo.txt": ("GNR", "Intel", 6, 173, True, True),
    "icx-6326-vmware.cpuinfo.txt": ("ICX", "Intel", 6, 106, False, True),
    "icx-es-6-106-4.lscpu.txt": ("ICX", "Intel", 6, 106, False, True),
    "clx-8260m.cpuinfo.txt": ("CLX", "Intel", 6, 85, False, True),
    "clx-8280.lscpu.txt": ("CLX", "Intel", 6, 85, False, True),
    "genoa-9654.cpuinfo.txt": ("Genoa", "AMD", 25, 17, False, True),
}


def dumps() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("*.txt"))


def test_every_fixture_dump_has_an_expectation() -> None:
    names = {p.name for p in dumps()}
    assert names, f"no CPU dumps found in {FIXTURES}"
    assert names == set(EXPECTED), "a dump was added or removed: update EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_platform_and_isa_of_real_dumps(name: str) -> None:
    platform, vendor, family, model, amx, vnni = EXPECTED[name]
    got = cpuinfo.parse((FIXTURES / name).read_text(encoding="utf-8"))
    assert (got["name"], got["vendor"], got["family"], got["model"]) == (platform, vendor, family, model)
    assert isinstance(got["stepping"], int)
    assert got["model_name"]
    isa = got["isa"]
    assert set(isa) == set(cpuinfo.CAPABILITIES)
    assert isa["avx2"] and isa["avx512f"]
    assert isa["avx512_vnni"] is vnni
    assert isa["amx_tile"] is isa["amx_bf16"] is isa["amx_int8"] is amx
    missing = {p: cpuinfo.missing_isa(p, isa) for p in ALL_PRECISIONS}
    assert missing["avx_fp32"] == []
    assert missing["avx_int8"] == []
    for precision in AMX:
        assert (missing[precision] == []) is amx, precision


def test_masked_amx_vm_names_the_missing_flags() -> None:
    isa = cpuinfo.parse((FIXTURES / "emr-8575c-vm-noamx.cpuinfo.txt").read_text(encoding="utf-8"))["isa"]
    assert cpuinfo.missing_isa("amx_bfloat16", isa) == ["amx_tile", "amx_bf16"]
    assert cpuinfo.missing_isa("amx_bfloat32", isa) == ["amx_tile", "amx_bf16"]
    assert cpuinfo.missing_isa("amx_int8", isa) == ["amx_tile", "amx_int8", "amx_bf16"]


def test_generic_and_garbage_model_names_do_not_matter() -> None:
    for name in ("emr-kvm-genericname.cpuinfo.txt", "icx-es-6-106-4.lscpu.txt"):
        got = cpuinfo.parse((FIXTURES / name).read_text(encoding="utf-8"))
        assert got["name"] == EXPECTED[name][0]


def test_lscpu_and_cpuinfo_of_one_cpu_agree() -> None:
    a = cpuinfo.parse((FIXTURES / "clx-8260m.cpuinfo.txt").read_text(encoding="utf-8"))
    b = cpuinfo.parse((FIXTURES / "clx-8280.lscpu.txt").read_text(encoding="utf-8"))
    for key in ("name", "vendor", "family", "model", "stepping", "isa"):
        assert a[key] == b[key], key


@given(pad=st.sampled_from([" ", "\t", "\t\t", "    ", " \t"]), eol=st.sampled_from(["\n", "\r\n"]),
       trailing=st.booleans())
def test_padding_and_line_ends_do_not_matter(pad: str, eol: str, trailing: bool) -> None:
    original = (FIXTURES / "spr-8480plus.cpuinfo.txt").read_text(encoding="utf-8")
    lines = [re.sub(r"^([^:]*?)\s*:", lambda m: m.group(1) + pad + ":", line) for line in original.splitlines()]
    text = eol.join(lines) + (eol if trailing else "")
    assert cpuinfo.parse(text) == cpuinfo.parse(original)


def test_only_the_first_cpu_block_counts() -> None:
    block = "processor\t: {}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: {}\nstepping\t: 6\nflags\t\t: {}\n"
    text = block.format(0, 143, "avx2 amx_tile amx_bf16") + "\n" + block.format(1, 106, "avx2")
    got = cpuinfo.parse(text)
    assert got["name"] == "SPR"
    assert got["isa"]["amx_bf16"] and not got["isa"]["amx_int8"]
    assert cpuinfo.missing_isa("amx_int8", got["isa"]) == ["amx_int8"]


@pytest.mark.parametrize(("vendor", "family", "model", "stepping", "name"), [
    ("GenuineIntel", 6, 85, 4, "SKX"),
    ("GenuineIntel", 6, 85, 7, "CLX"),
    ("GenuineIntel", 6, 85, 11, "CPX"),
    ("GenuineIntel", 6, 108, 1, "ICX"),
    ("GenuineIntel", 6, 174, 0, "GNR"),
    ("GenuineIntel", 6, 85, 2, "Intel family 6 model 85"),
    ("GenuineIntel", 6, 151, 2, "Intel family 6 model 151"),
    ("AuthenticAMD", 25, 1, 1, "Milan"),
    ("AuthenticAMD", 25, 0x11, 1, "Genoa"),
    ("AuthenticAMD", 25, 0x18, 1, "Genoa"),
    ("AuthenticAMD", 23, 49, 0, "AMD family 23 model 49"),
    ("HygonGenuine", 24, 1, 1, "HygonGenuine family 24 model 1"),
    ("", None, None, None, "unknown family None model None"),
])
def test_platform_name(vendor: str, family: int | None, model: int | None, stepping: int | None, name: str) -> None:
    assert cpuinfo.platform_name(vendor, family, model, stepping) == name


def test_empty_text_gives_unknown_platform_and_no_isa() -> None:
    got = cpuinfo.parse("")
    assert got["family"] is None and not any(got["isa"].values())
    assert cpuinfo.missing_isa("avx_fp32", got["isa"]) == ["avx2"]


def test_unknown_precision_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown precision"):
        cpuinfo.missing_isa("fp64", {})


def test_parse_cpulist() -> None:
    assert cpuinfo.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert cpuinfo.parse_cpulist("5") == [5]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_topology_from_sysfs(tmp_path: Path) -> None:
    # 2 sockets x 2 cores x 2 threads; CPU n and n+4 are siblings; node 2 holds memory only.
    _write(tmp_path / "cpu" / "online", "0-7")
    for cpu in range(8):
        _write(tmp_path / "cpu" / f"cpu{cpu}" / "topology" / "physical_package_id", str((cpu % 4) // 2))
        _write(tmp_path / "cpu" / f"cpu{cpu}" / "topology" / "core_id", str(cpu % 2))
    _write(tmp_path / "node" / "node0" / "cpulist", "0-1,4-5")
    _write(tmp_path / "node" / "node1" / "cpulist", "2-3,6-7")
    _write(tmp_path / "node" / "node2" / "cpulist", "")
    topo = cpuinfo.topology(str(tmp_path))
    assert topo["logical_cpus"] == 8
    assert topo["physical_cores"] == 4
    assert topo["sockets"] == 2
    assert topo["numa_nodes"] == [
        {"id": 0, "cpus": [0, 1, 4, 5], "cores": [0, 1]},
        {"id": 1, "cpus": [2, 3, 6, 7], "cores": [2, 3]},
    ]


def test_topology_without_numa_or_core_info_is_one_node(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "online", "0-2")
    topo = cpuinfo.topology(str(tmp_path))
    assert topo["numa_nodes"] == [{"id": 0, "cpus": [0, 1, 2], "cores": [0, 1, 2]}]
    assert (topo["physical_cores"], topo["sockets"]) == (3, 1)


def test_meminfo() -> None:
    text = "MemTotal:       24683568 kB\nMemFree:          100 kB\nMemAvailable:   24171260 kB\n"
    assert cpuinfo.meminfo(text) == {"mem_total_kb": 24683568, "mem_available_kb": 24171260}


def test_runs_as_a_standalone_script_on_this_host() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True, cwd="/")
    doc = json.loads(out.stdout)
    assert set(doc) == {"platform", "host"}
    assert set(doc["platform"]["isa"]) == set(cpuinfo.CAPABILITIES)
    host = doc["host"]
    assert host["logical_cpus"] >= host["physical_cores"] >= 1
    assert sum(len(n["cores"]) for n in host["numa_nodes"]) == host["physical_cores"]
    assert host["mem_total_kb"] > 0 and host["kernel"]


def test_script_parses_a_saved_dump() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), str(FIXTURES / "gnr-6972p.cpuinfo.txt")],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["name"] == "GNR"


def _python38() -> str | None:
    candidates = [shutil.which("python3.8"), *map(str, Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_runs_under_python_3_8() -> None:
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 interpreter here")

    def run(*args: Path) -> dict:
        return json.loads(subprocess.run([python, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                                         check=True).stdout)

    assert set(run()) == {"platform", "host"}
    for dump in dumps():
        assert run(dump) == cpuinfo.parse(dump.read_text(encoding="utf-8")), dump.name
