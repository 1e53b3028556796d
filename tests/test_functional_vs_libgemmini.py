"""Differential test: tvm_cosa's functional model of Gemmini (runtime/gemmini_func.c) against
libgemmini, Gemmini's reference model inside Spike. Random command streams (config_ex with both
dataflows and A strides, config_ld with strides, scales and shrunk accumulator loads for mvin /
mvin2 / mvin3, config_st with scales and ReLU, mvin to the scratchpad and to the accumulator with
and without the accumulate bit and from NULL, preload, compute_preloaded / compute_accumulated,
results to the accumulator (overwrite / accumulate) or to the scratchpad, mvout of raw and of
scaled accumulator rows and of scratchpad rows, GARBAGE_ADDR operands) run on both; after each
stream every scratchpad and accumulator row the streams can touch and the DRAM they write are
compared. Skipped without Spike."""

import ctypes
import random
from pathlib import Path

import numpy as np
import pytest

from tvm_cosa.target.gemmini import GemminiConfig, sdk
from tvm_cosa.target.gemmini.functional import (ACC_BIT, ACCUMULATE_BIT, FULL_BIT, GARBAGE_ADDR,
                                                FunctionalModel)

MISSING = sdk.available()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"Spike not usable: {MISSING}")

DIM = 16
SP_ROWS, ACC_ROWS = 48, 32  # rows the streams use (and that are compared)
IN_BYTES, ACC_IN_BYTES, OUT_BYTES = 2048, 4096, 2048
PROGRAMS, STREAMS, COMMANDS = 3, 40, 24  # 120 streams of ~30 commands each
SCALES = (1.0, 0.5, 2.0, 0.75, -1.0, 0.3)
ST_SCALES = (1.0, 0.5, 0.125, 0.01, 3.0)


class Stream:
    """A random valid command stream (valid for both models: rows in range, blocks of 1..DIM,
    every compute after its preload, mvin sources never written by mvout)."""

    def __init__(self, rng: random.Random):
        self.rng, self.cmds = rng, []
        self.ld = {}  # id -> (stride, shrunk)
        self.a_stride = 1
        self.config_ex()
        for i in range(3):
            self.config_ld(i)
        self.config_st()
        for _ in range(COMMANDS):
            rng.choices([self.mvin, self.compute, self.mvout, self.config_ld, self.config_st,
                         self.config_ex], weights=[6, 6, 3, 1, 1, 1])[0]()

    def block(self):
        return self.rng.randint(1, DIM), self.rng.randint(1, DIM)

    def config_ex(self):
        self.a_stride = self.rng.choice([1, 1, 2])
        self.cmds.append(("config_ex", self.rng.choice([0, 1]), self.a_stride))

    def config_ld(self, mvin_id=None):
        mvin_id = self.rng.randint(0, 2) if mvin_id is None else mvin_id
        shrunk = self.rng.random() < 0.25
        stride = self.rng.choice([16, 20, 32, 48] if shrunk else [16, 20, 32, 64, 80])
        self.ld[mvin_id] = (stride, shrunk)
        self.cmds.append(("config_ld", stride, self.rng.choice(SCALES), int(shrunk), mvin_id))

    def config_st(self):
        self.cmds.append(("config_st", self.rng.choice([16, 24, 64, 80]), self.rng.choice([0, 1]),
                          self.rng.choice(ST_SCALES)))

    def mvin(self):
        rng = self.rng
        mvin_id = rng.randint(0, 2)
        stride, shrunk = self.ld[mvin_id]
        cols, rows = self.block()
        to_acc = rng.random() < 0.4
        if to_acc:
            addr = ACC_BIT | rng.randint(0, ACC_ROWS - rows) | (ACCUMULATE_BIT * rng.randint(0, 1))
            size, region = (1, "in") if shrunk else (4, "acc_in")
        else:
            addr, size, region = rng.randint(0, SP_ROWS - rows), 1, "in"
        limit = IN_BYTES if region == "in" else ACC_IN_BYTES
        span = (rows - 1) * stride + cols * size
        if rng.random() < 0.1 or span > limit:
            region, offset = None, 0  # NULL: zeros
        else:
            offset = rng.randint(0, (limit - span) // size) * size
        self.cmds.append(("mvin", mvin_id, region, offset, addr, cols, rows))

    def compute(self):
        rng = self.rng
        bd_cols, bd_rows = self.block()
        c_cols, c_rows = self.block()
        bd = GARBAGE_ADDR if rng.random() < 0.3 else rng.randint(0, SP_ROWS - bd_rows)
        where = rng.random()
        if where < 0.15:
            c = GARBAGE_ADDR
        elif where < 0.3:
            c = rng.randint(0, SP_ROWS - c_rows)  # to the scratchpad, saturated
        else:
            c = ACC_BIT | rng.randint(0, ACC_ROWS - c_rows) | (ACCUMULATE_BIT * rng.randint(0, 1))
        self.cmds.append(("preload", bd, c, bd_cols, bd_rows, c_cols, c_rows))
        a_cols, a_rows = self.block()
        a = rng.randint(0, SP_ROWS - 1 - (a_rows - 1) * self.a_stride)
        d_cols, d_rows = self.block()
        d = GARBAGE_ADDR if rng.random() < 0.5 else rng.randint(0, SP_ROWS - d_rows)
        self.cmds.append(("compute", rng.random() < 0.6, a, d, a_cols, a_rows, d_cols, d_rows))

    def mvout(self):
        rng = self.rng
        cols, rows = self.block()
        if rng.random() < 0.6:
            addr = ACC_BIT | rng.randint(0, ACC_ROWS - rows) | (FULL_BIT * rng.randint(0, 1))
        else:
            addr = rng.randint(0, SP_ROWS - rows)
        self.cmds.append(("mvout", addr, cols, rows))


# ---- on Spike --------------------------------------------------------------------------------
def c_program(streams, data) -> str:
    def ptr(region, offset):
        return "(void*)0" if region is None else f"(void*)({region} + {offset})"

    lines = []
    for s, stream in enumerate(streams):
        lines.append(f"  /* stream {s} */")
        for cmd in stream.cmds:
            kind, args = cmd[0], cmd[1:]
            if kind == "config_ex":
                lines.append(f"  gemmini_extended_config_ex({args[0]}, 0, 0, {args[1]}, 0, 0);")
            elif kind == "config_ld":
                lines.append(f"  gemmini_extended3_config_ld({args[0]}, {args[1]!r}f, {args[2]}, "
                             f"{args[3]});")
            elif kind == "config_st":
                lines.append(f"  gemmini_extended_config_st({args[0]}, {args[1]}, {args[2]!r}f);")
            elif kind == "mvin":
                mvin_id, region, offset, addr, cols, rows = args
                name = ["gemmini_extended_mvin", "gemmini_extended_mvin2",
                        "gemmini_extended_mvin3"][mvin_id]
                lines.append(f"  {name}({ptr(region, offset)}, {addr:#x}u, {cols}, {rows});")
            elif kind == "mvout":
                addr, cols, rows = args
                lines.append(f"  gemmini_extended_mvout((void*)out, {addr:#x}u, {cols}, {rows});")
            elif kind == "preload":
                lines.append("  gemmini_extended_preload({:#x}u, {:#x}u, {}, {}, {}, {});"
                             .format(*args))
            else:
                preloaded, a, d, a_cols, a_rows, d_cols, d_rows = args
                name = ("gemmini_extended_compute_preloaded" if preloaded else
                        "gemmini_extended_compute_accumulated")
                lines.append(f"  {name}({a:#x}u, {d:#x}u, {a_cols}, {a_rows}, {d_cols}, {d_rows});")
        lines.append(f"  dump({s});")

    def array(name, values, ctype):
        body = ",".join(str(int(v)) for v in values)
        return f"static {ctype} {name}[] __attribute__((aligned(64))) = {{{body}}};"

    return f"""#include <stdio.h>
#include <stdint.h>
#include "include/gemmini.h"
{array("in", data["in"], "int8_t")}
{array("acc_in_words", data["acc_in"], "int32_t")}
#define acc_in ((int8_t*)acc_in_words)
static int8_t out[{OUT_BYTES}] __attribute__((aligned(64)));
static int8_t sp_dump[{SP_ROWS * DIM}] __attribute__((aligned(64)));
static int32_t acc_dump[{ACC_ROWS * DIM}] __attribute__((aligned(64)));
static char text[2 * {max(OUT_BYTES, ACC_ROWS * DIM * 4)} + 1];

static void hex(const char* label, int stream, const void* data, int n) {{
  static const char digits[] = "0123456789abcdef";
  const uint8_t* p = (const uint8_t*)data;
  for (int i = 0; i < n; i++) {{ text[2 * i] = digits[p[i] >> 4]; text[2 * i + 1] = digits[p[i] & 15]; }}
  text[2 * n] = 0;
  printf("%s %d %s\\n", label, stream, text);
}}

static void dump(int stream) {{
  gemmini_fence();
  gemmini_config_st(DIM * sizeof(acc_t));
  for (int r = 0; r < {ACC_ROWS}; r += DIM)
    gemmini_extended_mvout(acc_dump + r * DIM, 0xA0000000u | r, DIM, DIM);
  gemmini_config_st(DIM);
  for (int r = 0; r < {SP_ROWS}; r += DIM)
    gemmini_extended_mvout(sp_dump + r * DIM, r, DIM, DIM);
  gemmini_fence();
  hex("SP", stream, sp_dump, sizeof sp_dump);
  hex("ACC", stream, acc_dump, sizeof acc_dump);
  hex("DRAM", stream, out, sizeof out);
}}

int main(void) {{
  gemmini_flush(0);
{chr(10).join(lines)}
  return 0;
}}
"""


def run_on_spike(streams, data, folder: Path) -> dict:
    toolchain = sdk.find_toolchain()
    toolchain.check_config(GemminiConfig())
    source = folder / "streams.c"
    source.write_text(c_program(streams, data))
    program = toolchain.compile([source], folder / "streams.riscv")
    done = toolchain.run(program, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    dumps = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("SP", "ACC", "DRAM"):
            dumps[(int(parts[1]), parts[0])] = bytes.fromhex(parts[2])
    return dumps


# ---- on the functional model -----------------------------------------------------------------
def run_on_functional_model(streams, data) -> dict:
    fm = FunctionalModel(GemminiConfig())
    fm.reset()
    regions = {"in": data["in"].copy(), "acc_in": data["acc_in"].copy()}
    out = np.zeros(OUT_BYTES, np.int8)
    base = {name: a.ctypes.data for name, a in regions.items()}
    dumps = {}
    for s, stream in enumerate(streams):
        for cmd in stream.cmds:
            kind, args = cmd[0], cmd[1:]
            if kind == "config_ex":
                status = fm.call("extended_config_ex", args[0], 0, 0, args[1], 0, 0)
            elif kind == "config_ld":
                status = fm.call("extended3_config_ld", *args)
            elif kind == "config_st":
                status = fm.call("extended_config_st", *args)
            elif kind == "mvin":
                mvin_id, region, offset, addr, cols, rows = args
                pointer = None if region is None else ctypes.c_void_p(base[region] + offset)
                suffix = ["", "2", "3"][mvin_id]
                status = fm.call(f"extended_mvin{suffix}", pointer, addr, cols, rows)
            elif kind == "mvout":
                status = fm.call("extended_mvout", ctypes.c_void_p(out.ctypes.data), *args)
            elif kind == "preload":
                status = fm.call("extended_preload", *args)
            else:
                name = "extended_compute_preloaded" if args[0] else "extended_compute_accumulated"
                status = fm.call(name, *args[1:])
            assert status == 0, f"stream {s}, {cmd}: {fm.error_message}"
        dumps[(s, "SP")] = np.concatenate([fm.row(r) for r in range(SP_ROWS)]).tobytes()
        dumps[(s, "ACC")] = np.concatenate([fm.row(ACC_BIT | r) for r in range(ACC_ROWS)]
                                           ).tobytes()
        dumps[(s, "DRAM")] = out.tobytes()
    return dumps


@pytest.mark.parametrize("program", range(PROGRAMS))
def test_functional_model_equals_libgemmini_on_random_command_streams(program, tmp_path):
    rng = random.Random(1000 + program)
    nprng = np.random.default_rng(program)
    data = {"in": nprng.integers(-128, 128, IN_BYTES).astype(np.int8),
            "acc_in": nprng.integers(-(1 << 20), 1 << 20, ACC_IN_BYTES // 4).astype(np.int32)}
    streams = [Stream(rng) for _ in range(STREAMS)]
    want = run_on_spike(streams, data, tmp_path)
    got = run_on_functional_model(streams, data)
    assert len(want) == len(got) == 3 * STREAMS
    for key in sorted(want):
        if want[key] != got[key]:
            s, region = key
            w, g = np.frombuffer(want[key], np.uint8), np.frombuffer(got[key], np.uint8)
            first = int(np.flatnonzero(w != g)[0])
            commands = "\n".join(map(str, streams[s].cmds))
            pytest.fail(f"stream {s}: {region} differs first at byte {first} (libgemmini "
                        f"{w[first]}, ours {g[first]}); the stream:\n{commands}")
