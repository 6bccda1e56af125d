"""The Verilator runner's options that need no simulator build."""

import os

import pytest

from sim import objcache
from sim.objcache import CACHE_DIR_ENV
from sim.runner import PORTS_ONLY, _public_config, build
from sim.top.system import TOP_NAME, TOP_PUBLIC


def test_public_config_lists_the_ports_and_the_named_signals():
    assert _public_config("dut", PORTS_ONLY).splitlines() == [
        "`verilator_config", 'public_flat_rw -module "dut" -var "*"']
    lines = _public_config(TOP_NAME, TOP_PUBLIC).splitlines()
    assert lines[1] == f'public_flat_rw -module "{TOP_NAME}" -var "*"'
    assert 'public_flat_rw -module "elmoe_dram_storage" -var "words"' in lines
    assert f'public_flat_rw -module "{TOP_NAME}.top.processor" -var "slot_*"' in lines
    assert len(lines) == 2 + len(TOP_PUBLIC)


@pytest.mark.parametrize("public", [("words",), (("dut", ""),), (("dut", 'a"b'),),
                                    ((1, "x"),)])
def test_bad_public_signals_are_named_before_anything_is_built(public, tmp_path, monkeypatch):
    monkeypatch.setattr("sim.runner.BUILD_ROOT", tmp_path)
    with pytest.raises(ValueError, match="a public signal is a"):
        build("dut", "module dut; endmodule\n", public=public)
    assert not (tmp_path / "sim").exists() or not any((tmp_path / "sim").iterdir())


@pytest.fixture
def fake_toolchain(tmp_path, monkeypatch):
    """A Verilator root with one run-time source, and a "compiler" that writes the object and its
    dependency file and counts its calls."""
    root = tmp_path / "verilator"
    (root / "include").mkdir(parents=True)
    (root / "include" / "verilated.cpp").write_text("int x;\n")
    calls = tmp_path / "calls"
    compiler = tmp_path / "cxx"
    compiler.write_text("#!/bin/sh\n"
                        f"echo x >> {calls}\n"
                        'while [ "$1" != "-o" ]; do shift; done\n'
                        'echo "object of $3" > "$2"; echo "${2%.o}.o: $3" > "${2%.o}.d"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    return root, compiler, calls


def _compile(compiler, source, workdir, *flags):
    workdir.mkdir(exist_ok=True)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return objcache.main([str(compiler), *flags, "-MMD", "-c", "-o", "verilated.o",
                              str(source)])
    finally:
        os.chdir(cwd)


def test_the_run_time_library_is_compiled_once_per_flag_set(fake_toolchain, tmp_path):
    root, compiler, calls = fake_toolchain
    source = root / "include" / "verilated.cpp"
    for build_dir in ("a", "b", "c"):
        assert _compile(compiler, source, tmp_path / build_dir, "-Os") == 0
        assert (tmp_path / build_dir / "verilated.o").read_text() == f"object of {source}\n"
        assert (tmp_path / build_dir / "verilated.d").exists()
    assert len(calls.read_text().split()) == 1
    assert _compile(compiler, source, tmp_path / "d", "-O0") == 0          # other flags
    source.write_text("int y;\n")                                           # other source
    assert _compile(compiler, source, tmp_path / "e", "-O0") == 0
    assert len(calls.read_text().split()) == 3


def test_design_sources_are_never_cached(fake_toolchain, tmp_path):
    _, compiler, calls = fake_toolchain
    design = tmp_path / "Vtop.cpp"
    design.write_text("int z;\n")
    for build_dir in ("a", "b"):
        assert _compile(compiler, design, tmp_path / build_dir) == 0
    assert len(calls.read_text().split()) == 2
    assert not (tmp_path / "cache").exists()
