"""The serving dtype follows the CPU's flags (injected here), so both branches are tested on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EmbeddedConfig
from synth.serve import server
from synth.serve.cpu import choose_dtype, read_cpu_info, server_env

# Real flag lines, shortened: an AVX2-only AMD EPYC (the machine where bf16 ran 5x slower) and a Zen 4 with
# AVX512-BF16; an Intel Sapphire Rapids with AMX; an aarch64 Neoverse V1 (Features line, bf16).
AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 ssse3 fma avx avx2 bmi2 sha_ni\n"
ZEN4 = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
SPR = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
NEOVERSE = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics sve bf16 i8mm\nCPU part\t: 0xd40\n"


@pytest.mark.parametrize(("cpuinfo", "dtype"), [(AVX2_ONLY, "float32"), (ZEN4, "bfloat16"), (SPR, "bfloat16"),
                                                (NEOVERSE, "bfloat16"), ("", "float32")])
def test_auto_picks_bf16_only_with_native_instructions(cpuinfo: str, dtype: str) -> None:
    choice = choose_dtype("auto", read_cpu_info(cpuinfo))
    assert choice.dtype == dtype
    assert choice.reason.startswith("CPU has native bf16") == (dtype == "bfloat16")


def test_forced_dtype_is_kept_and_warns_when_emulated() -> None:
    forced = choose_dtype("bfloat16", read_cpu_info(AVX2_ONLY))
    assert forced.dtype == "bfloat16" and "no native bf16" in forced.reason
    assert choose_dtype("float32", read_cpu_info(ZEN4)).dtype == "float32"


def test_cpu_model_and_flags_are_read() -> None:
    info = read_cpu_info(ZEN4)
    assert info.model == "AMD EPYC 9B14"
    assert "avx512_bf16" in info.vector_flags() and "fpu" not in info.vector_flags()


def test_server_command_carries_the_chosen_dtype_and_tool_settings(tmp_path: Path) -> None:
    cfg = EmbeddedConfig(port=8799, model_dir=tmp_path, chat_template=tmp_path / "t.jinja",
                         tool_call_parser="hermes")
    cmd = server.command(cfg, tmp_path, "float32")
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    assert cmd[cmd.index("--chat-template") + 1] == str(tmp_path / "t.jinja")
    assert cmd[cmd.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in cmd
    assert cmd[cmd.index("--served-model-name") + 1] == tmp_path.name.lower()
    plain = server.command(EmbeddedConfig(), tmp_path, "bfloat16")
    assert "--tool-call-parser" not in plain and "--chat-template" not in plain


def test_start_refuses_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(server.ServerError, match="not a Hugging Face checkpoint"):
        server._start(EmbeddedConfig(port=8798, model_dir=tmp_path))


def test_tcmalloc_preload_is_added_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("synth.serve.cpu.tcmalloc_path", lambda: "/usr/lib/libtcmalloc_minimal.so.4")
    env, notes = server_env({"LD_PRELOAD": "/x/libfoo.so"}, preload_tcmalloc=True)
    assert env["LD_PRELOAD"] == "/usr/lib/libtcmalloc_minimal.so.4:/x/libfoo.so" and notes
    again, _ = server_env(env, preload_tcmalloc=True)
    assert again["LD_PRELOAD"].count("libtcmalloc") == 1
    off, _ = server_env({}, preload_tcmalloc=False)
    assert "LD_PRELOAD" not in off
