"""The llama.cpp that ships runs on any CPU of the stated baseline: x86-64-v3 on x86-64 (AVX2 and
FMA, no AVX-512 and no AMX), armv8-a on aarch64 (no SVE). Proved on the built libraries themselves,
by disassembling every instruction in them: a native build on an AVX-512/AMX machine fails here."""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Registers only AVX-512 has (zmm, the k masks) and AMX's tile instructions.
X86_BEYOND_V3 = re.compile(r"%zmm\d|%k[0-7]\b|\b(tdpb\w+|tileloadd\w*|ldtilecfg|tilezero)\b")
AARCH64_BEYOND_V8 = re.compile(
    r"\bz\d{1,2}\.[bhsdq]\b|\bp\d{1,2}/[zm]\b"
)  # SVE vectors, predicates


def libraries() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    found = sorted(p for p in folder.glob("*.so") if not p.is_symlink())
    assert found, f"no libraries in {folder}"
    return found


def test_no_instruction_beyond_the_baseline_ships() -> None:
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils, installed with the C compiler) is needed to check this"
    machine = platform.machine()
    beyond = X86_BEYOND_V3 if machine in ("x86_64", "AMD64") else AARCH64_BEYOND_V8
    if machine not in ("x86_64", "AMD64", "aarch64", "arm64"):
        pytest.skip(f"no baseline is stated for {machine}")
    vector_code = 0
    for library in libraries():
        listing = subprocess.run(
            [objdump, "-d", "--no-show-raw-insn", str(library)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        offending = [line for line in listing.splitlines() if beyond.search(line)]
        assert not offending, f"{library.name}: {len(offending)} such, e.g. {offending[:3]}"
        vector_code += listing.count("%ymm") + listing.count("v0.")
    assert vector_code > 1000, "the CPU kernels should use the baseline's vector instructions"


def test_the_patterns_catch_what_a_native_build_on_such_a_cpu_contains() -> None:
    """Lines as objdump prints them from a build with AVX-512 and AMX (the one that crashed)."""
    native = [
        "  4a3f10:\tvpdpbusd %zmm1,%zmm2,%zmm3",
        "  4a3f20:\tkmovw  %k1,%eax",
        "  4a3f30:\ttdpbssd %tmm2,%tmm1,%tmm0",
        "  4a3f40:\tldtilecfg (%rax)",
    ]
    baseline = [
        "  4a3f50:\tvfmadd231ps %ymm1,%ymm2,%ymm3",
        "  4a3f60:\tvpmaddubsw %ymm0,%ymm1,%ymm2",
    ]
    assert all(X86_BEYOND_V3.search(line) for line in native)
    assert not any(X86_BEYOND_V3.search(line) for line in baseline)
    assert AARCH64_BEYOND_V8.search("\tfmla\tz0.s, p0/m, z1.s, z2.s")
    assert not AARCH64_BEYOND_V8.search("\tfmla\tv0.4s, v1.4s, v2.4s")
