"""Run the C that TVM generates for each Gemmini-lowered operator on Gemmini's own simulator
(Spike with libgemmini), against the real gemmini.h, and compare with the functional model and
onnxruntime running the operator alone on the same inputs.

    compiled = flow.compile_module(import_onnx(model), "gemmini")
    runner = flow.load(compiled.mod, compiled.config)
    operators = capture(runner, compiled.mod, feed)          # inputs / outputs of every call
    results = run_on_spike(operators, compiled.config)       # one program per operator
    print(results_table(results))

For each Gemmini PrimFunc (`gemmini.op_id` attribute), `capture` records the arguments of every
call in a seeded run of the whole model on the functional model (Relax VM instrument). Each
operator becomes one bare-metal program: TVM's `c` target output for that PrimFunc alone
(`__tvm_ffi_<name>`, the packed calling convention), compiled with the SDK's gemmini.h
included first, plus a generated harness (`main`) that holds every call's inputs and the
functional model's outputs as static data (`.incbin`), calls the operator once per call, and
prints per call the number of output elements that differ and a checksum of the output. Every
RoCC instruction is counted on the way (the harness wraps `ROCC_INSTRUCTION_0_R_R`), with the
bytes its mvin / mvout moves. The reference is onnxruntime running the operator alone
(ConvInteger / MatMulInteger) on the captured inputs (numpy for float operands); its checksum is
compared in Python.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import CoSAError
from .config import GemminiConfig
from .sdk import SimulatorError, Toolchain, find_toolchain

OP_ATTR = "gemmini.op_id"
# gemmini.h's RoCC funct codes, for the command counts
FUNCT_NAMES = {0: "config", 1: "mvin2", 2: "mvin", 3: "mvout", 4: "compute_preloaded",
               5: "compute_accumulated", 6: "preload", 7: "flush", 8: "loop_ws",
               9: "loop_ws_config", 10: "loop_ws_config", 11: "loop_ws_config",
               12: "loop_ws_config", 13: "loop_ws_config", 14: "mvin3", 15: "loop_conv_ws",
               16: "loop_conv_ws_config", 17: "loop_conv_ws_config", 18: "loop_conv_ws_config",
               19: "loop_conv_ws_config", 20: "loop_conv_ws_config", 21: "loop_conv_ws_config",
               126: "counter"}
_NP_DTYPES = {"int8": np.int8, "int32": np.int32, "float32": np.float32, "uint8": np.uint8}
_DL_CODES = {"int": 0, "uint": 1, "float": 2}


@dataclass
class Call:
    """One call of an operator in the seeded run: its arguments (inputs, then the output)."""

    inputs: list
    output: np.ndarray  # as the functional model computed it


@dataclass
class Operator:
    """A Gemmini-lowered PrimFunc and the calls the model made of it."""

    name: str
    func: object  # tvm.tirx.PrimFunc
    op_id: int
    info: dict
    calls: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.info.get('kind', '')} {self.info.get('shape', '')}".strip() or self.name


@dataclass
class Result:
    operator: Operator
    ok: bool
    spike_vs_functional: list  # mismatching elements per call
    spike_vs_reference: list  # bool per call: the checksum of Spike's output equals the reference's
    functional_vs_reference: list  # mismatching elements per call
    commands: dict  # RoCC instructions by name (all calls)
    bytes_moved: dict  # {"in": ..., "out": ...} by mvin / mvout (all calls)
    seconds: float
    message: str = ""


# ---- capture -------------------------------------------------------------------------------
def gemmini_functions(mod) -> dict:
    """name -> PrimFunc of the Gemmini-lowered PrimFuncs of a compiled module."""
    from tvm import tirx

    return {gv.name_hint: f for gv, f in mod.functions.items()
            if isinstance(f, tirx.PrimFunc) and f.attrs is not None and OP_ATTR in f.attrs}


def capture(runner, mod, feed: dict, max_calls: Optional[int] = None) -> list[Operator]:
    """Run the model once on the functional model (`runner`, a flow.GemminiModule) and record
    the arguments of every call of each Gemmini operator (at most `max_calls` per operator)."""
    from .lowering import OP_REGISTRY

    funcs = gemmini_functions(mod)
    ops = {name: Operator(name, f, int(f.attrs[OP_ATTR]), OP_REGISTRY.get(int(f.attrs[OP_ATTR]),
                                                                           {}))
           for name, f in funcs.items()}
    pending = {}

    def instrument(func, symbol, before_run, ret_value, *args):
        op = ops.get(str(symbol))
        if op is None or (max_calls is not None and len(op.calls) >= max_calls):
            return 0
        arrays = [a.numpy() for a in args]
        if before_run:
            pending[op.name] = arrays[:-1]
        else:
            op.calls.append(Call(pending.pop(op.name), arrays[-1]))
        return 0

    runner.vm.set_instrument(instrument)
    try:
        runner(feed)
    finally:
        runner.vm.set_instrument(None)
    return [op for op in ops.values() if op.calls]


# ---- the reference of one call ---------------------------------------------------------------
def reference(op: Operator, inputs: list, out_dtype) -> np.ndarray:
    """The operator on `inputs` by onnxruntime (ConvInteger / MatMulInteger, for int8 operands)
    or else numpy (int64 / float64), cast to the output type. A requantized operator (inputs,
    weights, [bias]): that int32 result plus the bias, requantized in numpy as onnxruntime
    does (float32 product, round half to even, saturate; requant.Requant.apply)."""
    requant = op.info.get("requant")
    if requant:
        from dataclasses import replace

        from .requant import Requant

        plain = replace(op, info={k: v for k, v in op.info.items() if k != "requant"})
        acc = reference(plain, inputs[:2], np.int32)
        if requant["bias"]:
            channel_axis = 1 if op.info.get("attrs", {}).get("layout") == "NCHW" else -1
            shape = [1] * acc.ndim
            shape[channel_axis] = -1
            acc = acc + np.asarray(inputs[2], np.int32).reshape(shape)
        return Requant(**requant).apply(acc).astype(out_dtype)
    if all(np.asarray(a).dtype == np.int8 for a in inputs):
        got = onnxruntime_reference(op, inputs)
        if got is not None:
            return got.astype(out_dtype)
    return numpy_reference(op, inputs, out_dtype)


def onnxruntime_reference(op: Operator, inputs: list):
    """The int8 operator as a one-node ONNX graph (ConvInteger in NCHW / OIHW with its strides,
    pads, dilations and groups; MatMulInteger) run by onnxruntime; None for another operator."""
    import onnxruntime
    from onnx import TensorProto, helper

    kind, attrs = op.info.get("kind"), op.info.get("attrs")
    x, w = (np.asarray(a) for a in inputs)
    if kind == "conv2d" and attrs:
        if attrs["layout"] == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        w = np.transpose(w, [attrs["kernel_layout"].index(c) for c in "OIHW"])
        top, left, bottom, right = attrs["padding"]
        node = helper.make_node("ConvInteger", ["x", "w"], ["y"], strides=list(attrs["strides"]),
                                pads=[top, left, bottom, right],
                                dilations=list(attrs["dilation"]), group=attrs["groups"])
    elif kind == "matmul":
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    else:
        return None
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    graph = helper.make_graph([node], op.name, [
        helper.make_tensor_value_info("x", TensorProto.INT8, list(x.shape)),
        helper.make_tensor_value_info("w", TensorProto.INT8, list(w.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x, "w": w})
    if kind == "conv2d" and attrs["layout"] == "NHWC":
        y = y.transpose(0, 2, 3, 1)
    return y


def numpy_reference(op: Operator, inputs: list, out_dtype) -> np.ndarray:
    """The operator on `inputs` in numpy (int64 / float64), cast to the output type."""
    kind, attrs = op.info.get("kind"), op.info.get("attrs")
    if kind == "matmul":
        wide = np.int64 if np.issubdtype(inputs[0].dtype, np.integer) else np.float64
        return np.matmul(inputs[0].astype(wide), inputs[1].astype(wide)).astype(out_dtype)
    if kind == "conv2d" and attrs:
        return _conv_reference(*inputs, **attrs).astype(out_dtype)
    raise CoSAError(f"no reference for operator {op.name} ({kind})")


def _conv_reference(x, w, *, layout, kernel_layout, strides, padding, dilation, groups):
    wide = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
    if layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    w = np.transpose(w, [kernel_layout.index(c) for c in "HWIO"]).astype(wide)
    top, left, bottom, right = padding
    x = np.pad(x.astype(wide), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, cg, ko = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, ko), wide)
    kg = ko // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = x[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                          j * dw:j * dw + sw * (ow - 1) + 1:sw, g * cg:(g + 1) * cg]
                out[..., g * kg:(g + 1) * kg] += np.tensordot(
                    patch, w[i, j, :, g * kg:(g + 1) * kg], axes=([3], [0]))
    return out.transpose(0, 3, 1, 2) if layout == "NCHW" else out


def checksum(array: np.ndarray) -> int:
    """The harness's checksum of an array's bytes as 32-bit words (sum of word * (index *
    2654435761 + 1), modulo 2**64); arrays are padded to whole words with zeros."""
    raw = np.ascontiguousarray(array).view(np.uint8).ravel()
    raw = np.concatenate([raw, np.zeros((-len(raw)) % 4, np.uint8)])
    words = raw.view("<u4").astype(np.uint64)
    weights = np.arange(len(words), dtype=np.uint64) * np.uint64(2654435761) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int((words * weights).sum(dtype=np.uint64))


# ---- the program -----------------------------------------------------------------------------
SHIM = r"""/* Included before everything else: gemmini.h with every RoCC instruction counted. */
#if !defined(TVM_COSA_SPIKE_SHIM_H) && !defined(__ASSEMBLER__)
#define TVM_COSA_SPIKE_SHIM_H
#include <stdint.h>
#include "rocc-software/src/xcustom.h"
void tvm_cosa_count_rocc(uint64_t funct, uint64_t rs1, uint64_t rs2);
#undef ROCC_INSTRUCTION_0_R_R
#define ROCC_INSTRUCTION_0_R_R(x, rs1, rs2, func7)                                             \
  {                                                                                          \
    uint64_t _tvm_cosa_rs1 = (uint64_t)(rs1), _tvm_cosa_rs2 = (uint64_t)(rs2);               \
    tvm_cosa_count_rocc(func7, _tvm_cosa_rs1, _tvm_cosa_rs2);                                \
    asm volatile(".insn r " STR(CAT(CUSTOM_, x)) ", " STR(0x3) ", " STR(func7) ", x0, %0, %1" \
                 :                                                                           \
                 : "r"(_tvm_cosa_rs1), "r"(_tvm_cosa_rs2));                                  \
  }
#include "include/gemmini.h"
#endif
"""

HARNESS = r"""/* Generated by tvm_cosa: runs {name} on Spike for {num_calls} recorded call(s). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tvm/ffi/c_api.h"

int32_t __tvm_ffi_{name}(void* self, void* args, int32_t num_args, void* result);

/* ---- what TVM's generated C needs from a runtime ---- */
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes,
                               int dtype_code_hint, int dtype_bits_hint) {{
  (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;
  return aligned_alloc(64, (nbytes + 63) / 64 * 64);
}}
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {{
  (void)device_type; (void)device_id; free(ptr); return 0;
}}
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {{
  printf("ERROR %s: ", kind);
  for (int32_t i = 0; i < n; i++) printf("%s", parts[i]);
  printf("\n");
}}
/* host-side helpers of the functional model: nothing to do on the real Gemmini */
int32_t gemmini_begin_op(int32_t op_id) {{ (void)op_id; return 0; }}
int32_t gemmini_end_op(void) {{ return 0; }}
int32_t gemmini_status(void) {{ return 0; }}

void tvm_cosa_print_counts(void);  /* tvm_cosa_count.c */

/* ---- the recorded calls: inputs and the functional model's outputs (data.S) ---- */
{externs}
static DLTensor tensors[{num_args}];
static int64_t shapes[{num_args}][8];

static uint64_t checksum(const void* data, uint64_t nbytes) {{
  const uint8_t* p = (const uint8_t*)data;
  uint64_t sum = 0;
  for (uint64_t w = 0; w * 4 < nbytes; w++) {{
    uint32_t word = 0;
    for (int b = 0; b < 4 && w * 4 + b < nbytes; b++) word |= (uint32_t)p[w * 4 + b] << (8 * b);
    sum += (uint64_t)word * (w * 2654435761ull + 1);
  }}
  return sum;
}}

static void set_tensor(int i, void* data, int ndim, const int64_t* shape, uint8_t code,
                       uint8_t bits) {{
  memcpy(shapes[i], shape, ndim * sizeof(int64_t));
  tensors[i].data = data;
  tensors[i].device.device_type = kDLCPU;
  tensors[i].device.device_id = 0;
  tensors[i].ndim = ndim;
  tensors[i].dtype.code = code;
  tensors[i].dtype.bits = bits;
  tensors[i].dtype.lanes = 1;
  tensors[i].shape = shapes[i];
  tensors[i].strides = NULL;
  tensors[i].byte_offset = 0;
}}

int main(void) {{
  int failures = 0;
  TVMFFIAny args[{num_args}], result;
{setup}
  for (int call = 0; call < {num_calls}; call++) {{
{per_call}
    for (int i = 0; i < {num_args}; i++) {{
      memset(&args[i], 0, sizeof args[i]);
      args[i].type_index = kTVMFFIDLTensorPtr;
      args[i].v_ptr = &tensors[i];
    }}
    memset(output, 0x5A, {out_bytes});  /* elements the operator does not write show up */
    memset(&result, 0, sizeof result);
    int32_t status = __tvm_ffi_{name}(NULL, args, {num_args}, &result);
    uint64_t mismatches = 0;
    int64_t first = -1;
    for (uint64_t e = 0; e < {out_elems}; e++)
      if (memcmp((const char*)output + e * {out_elem_bytes}, (const char*)expected + e * {out_elem_bytes}, {out_elem_bytes})) {{
        if (first < 0) first = (int64_t)e;
        mismatches++;
      }}
    printf("CALL %d status %d mismatches %llu first %lld checksum %llu\n", call, (int)status,
           (unsigned long long)mismatches, (long long)first,
           (unsigned long long)checksum(output, {out_bytes}));
    failures += status != 0 || mismatches != 0;
  }}
  tvm_cosa_print_counts();
  return failures ? 1 : 0;
}}
"""


COUNTER = r"""/* Counts every RoCC instruction a program issues (the shim routes them here) and the DRAM
 * bytes that its mvin / mvout move, including those the CISC loop instructions issue inside
 * Gemmini (loop_ws, loop_conv_ws: the same traversal as libgemmini's, counted from their
 * configuration). One method for generated code and for gemmini.h's own tiled kernels. */
#include <stdint.h>
#include <stdio.h>
#include "include/gemmini.h"

static uint64_t rocc_count[128];
static uint64_t bytes_in, bytes_out, inexact;
static int load_shrunk[4];
static uint64_t ws[6][2];    /* loop_ws configuration: bounds, AB, DC, strides (rs1, rs2) */
static uint64_t conv[7][2];  /* loop_conv_ws configuration 1..6 */

#define FIELD(x, shift, bits) (((x) >> (shift)) & ((1ull << (bits)) - 1))
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void count_loop_ws(uint64_t rs1, uint64_t rs2) {
  int64_t I = FIELD(ws[1][1], 0, 16), J = FIELD(ws[1][1], 16, 16), K = FIELD(ws[1][1], 32, 16);
  int64_t pi = FIELD(ws[1][0], 0, 16), pj = FIELD(ws[1][0], 16, 16), pk = FIELD(ws[1][0], 32, 16);
  int64_t rows_i = I * DIM - pi, cols_j = J * DIM - pj, rows_k = K * DIM - pk;
  int full_c = (rs1 >> 1) & 1, low_d = (rs1 >> 2) & 1, resadd = (rs2 >> 2) & 1;
  uint64_t a = ws[2][0], b = ws[2][1], d = ws[3][0], c = ws[3][1];
  if (resadd) {
    bytes_in += 2 * rows_i * cols_j;
    if (c) bytes_out += rows_i * cols_j * (full_c ? sizeof(acc_t) : sizeof(elem_t));
    return;
  }
  if (d) bytes_in += rows_i * cols_j * (low_d ? sizeof(elem_t) : sizeof(acc_t));
  if (a) bytes_in += rows_i * rows_k;
  if (b) bytes_in += rows_k * cols_j;
  if (c) bytes_out += rows_i * cols_j * (full_c ? sizeof(acc_t) : sizeof(elem_t));
}

static void count_loop_conv_ws(uint64_t rs1, uint64_t rs2) {
  int no_bias = rs1 & 1, transposed = FIELD(rs1, 2, 4) != 0, dw = (rs1 >> 6) & 1;
  int no_pool = rs2 & 1, downsample = (rs2 >> 1) & 1, input_dilated = (rs2 >> 2) & 1;
  int64_t stride = FIELD(conv[1][1], 48, 8);
  int64_t kernel_dilation = FIELD(conv[4][0], 0, 8);
  int64_t batches = FIELD(conv[2][1], 48, 16), porows = FIELD(conv[2][1], 32, 16);
  int64_t pocols = FIELD(conv[2][1], 16, 16), pochs = FIELD(conv[2][1], 0, 16);
  int64_t krows = FIELD(conv[3][0], 48, 16), kcols = FIELD(conv[3][0], 32, 16);
  int64_t kchs = FIELD(conv[3][0], 16, 16), lpad = FIELD(conv[3][0], 0, 16);
  int64_t rpad = FIELD(conv[3][1], 48, 16), upad = FIELD(conv[3][1], 32, 16);
  int64_t dpad = FIELD(conv[3][1], 24, 8);
  int64_t orows = FIELD(conv[4][0], 48, 16), ocols = FIELD(conv[4][1], 0, 16);
  uint64_t weights = conv[5][0], output = conv[5][1], bias = conv[6][0], input = conv[6][1];
  int64_t ochs = pochs;
  if (transposed || dw || downsample || input_dilated) inexact++;  /* counted as the plain case */
  int64_t dkrows = krows + (kernel_dilation - 1) * (krows - 1);
  int64_t dkcols = kcols + (kernel_dilation - 1) * (kcols - 1);
  int64_t irows_unpadded = orows * stride + dkrows - 1 - upad - dpad;
  int64_t icols_unpadded = ocols * stride + dkcols - 1 - lpad - rpad;
  if (bias && !no_bias) bytes_in += batches * orows * ocols * ochs * sizeof(acc_t);
  if (input) {  /* rows of the padded input window that are not padding, all channels */
    for (int64_t icol = -lpad; icol < icols_unpadded + rpad;) {
      int64_t n = min64(icols_unpadded - icol, DIM);
      if (icol < 0) n = min64(-icol, DIM);
      else if (icol >= icols_unpadded) n = min64(icols_unpadded + rpad - icol, DIM);
      if (icol >= 0 && icol < icols_unpadded)
        bytes_in += (uint64_t)(batches * irows_unpadded * n * kchs);
      icol += n;
    }
  }
  if (weights) bytes_in += krows * kcols * kchs * ochs;
  if (output && no_pool) bytes_out += batches * orows * ocols * ochs;
  else if (output) bytes_out += batches * porows * pocols * pochs;
}

void tvm_cosa_count_rocc(uint64_t funct, uint64_t rs1, uint64_t rs2) {
  rocc_count[funct & 127]++;
  uint64_t rows = FIELD(rs2, 48, 16), cols = FIELD(rs2, 32, 16);
  uint32_t addr = (uint32_t)rs2;
  int acc = (addr >> 31) & 1, full = (addr >> 29) & 1;
  if (funct == k_CONFIG && (rs1 & 3) == 1) load_shrunk[(rs1 >> 3) & 3] = (rs1 >> 2) & 1;
  if (funct == k_MVIN || funct == k_MVIN2 || funct == k_MVIN3) {
    int id = funct == k_MVIN ? 0 : (funct == k_MVIN2 ? 1 : 2);
    if (rs1 != 0) bytes_in += rows * cols * (acc && !load_shrunk[id] ? sizeof(acc_t) : sizeof(elem_t));
  } else if (funct == k_MVOUT) {
    bytes_out += rows * cols * (acc && full ? sizeof(acc_t) : sizeof(elem_t));
  } else if (funct >= k_LOOP_WS_CONFIG_BOUNDS && funct <= k_LOOP_WS_CONFIG_STRIDES_DC) {
    ws[funct - k_LOOP_WS_CONFIG_BOUNDS + 1][0] = rs1;
    ws[funct - k_LOOP_WS_CONFIG_BOUNDS + 1][1] = rs2;
  } else if (funct == k_LOOP_WS) {
    count_loop_ws(rs1, rs2);
  } else if (funct >= k_LOOP_CONV_WS_CONFIG_1 && funct <= k_LOOP_CONV_WS_CONFIG_6) {
    conv[funct - k_LOOP_CONV_WS_CONFIG_1 + 1][0] = rs1;
    conv[funct - k_LOOP_CONV_WS_CONFIG_1 + 1][1] = rs2;
  } else if (funct == k_LOOP_CONV_WS) {
    count_loop_conv_ws(rs1, rs2);
  }
}

void tvm_cosa_print_counts(void) {
  for (int f = 0; f < 128; f++)
    if (rocc_count[f]) printf("ROCC %d %llu\n", f, (unsigned long long)rocc_count[f]);
  printf("BYTES %llu %llu %llu\n", (unsigned long long)bytes_in, (unsigned long long)bytes_out,
         (unsigned long long)inexact);
}
"""


def write_counter(folder: Path) -> list[Path]:
    """The shim header (included first: every RoCC instruction counted) and the counter's C
    source in `folder`; returns the sources to compile with the program."""
    (folder / "tvm_cosa_spike.h").write_text(SHIM)
    (folder / "tvm_cosa_count.c").write_text(COUNTER)
    return [folder / "tvm_cosa_count.c"]


def parse_counts(stdout: str) -> tuple[dict, dict]:
    """(RoCC instructions by name, {"in", "out", "inexact"}) printed by tvm_cosa_print_counts."""
    commands, moved = {}, {}
    for line in stdout.splitlines():
        if line.startswith("ROCC "):
            _, funct, n = line.split()
            name = FUNCT_NAMES.get(int(funct), f"funct{funct}")
            commands[name] = commands.get(name, 0) + int(n)
        elif line.startswith("BYTES "):
            _, bytes_in, bytes_out, inexact = line.split()
            moved = {"in": int(bytes_in), "out": int(bytes_out), "inexact": int(inexact)}
    return commands, moved


def _dl_dtype(dtype) -> tuple[int, int]:
    dtype = np.dtype(dtype)
    kind = {"i": "int", "u": "uint", "f": "float"}[dtype.kind]
    return _DL_CODES[kind], dtype.itemsize * 8


def operator_c_source(op: Operator) -> str:
    """TVM's c target output for the operator's PrimFunc alone (packed API, `__tvm_ffi_<name>`)."""
    import tvm

    func = op.func.with_attr("global_symbol", op.name)
    lib = tvm.compile(tvm.IRModule({op.name: func}), target="c")
    return getattr(lib, "mod", lib).inspect_source()


def tvm_include_dirs() -> list[str]:
    import tvm.libinfo
    import tvm_ffi.libinfo

    found = tvm.libinfo.find_include_path()
    dirs = ([found] if isinstance(found, str) else list(found)) + [
        tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()]
    return [d for i, d in enumerate(dirs) if d and d not in dirs[:i]]


def write_program(op: Operator, folder: Path) -> list[Path]:
    """The operator's C, the harness, the shim and the data of its calls in `folder`; returns
    the sources to compile."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "operator.c").write_text(operator_c_source(op))
    counter = write_counter(folder)
    first = op.calls[0]
    num_args = len(first.inputs) + 1
    asm, externs, setup, per_call = [".section .data"], [], [], []
    for c, call in enumerate(op.calls):
        for a, array in enumerate(call.inputs + [call.output]):
            label = f"call{c}_arg{a}" if a < len(call.inputs) else f"call{c}_expected"
            path = folder / f"{label}.bin"
            np.ascontiguousarray(array).tofile(path)
            asm += [".balign 64", f".global {label}", f"{label}:", f'.incbin "{path.name}"']
            externs.append(f"extern char {label}[];")
    out = first.output
    externs.append(f"static char output[{out.nbytes}] __attribute__((aligned(64)));")
    for a, array in enumerate(first.inputs + [out]):
        code, bits = _dl_dtype(array.dtype)
        shape = ", ".join(str(int(n)) for n in array.shape) or "0"
        setup.append(f"  static const int64_t shape{a}[] = {{{shape}}};")
        data = "output" if a == len(first.inputs) else f"call0_arg{a}"
        setup.append(f"  set_tensor({a}, {data}, {array.ndim}, shape{a}, {code}, {bits});")
    table = ", ".join(f"call{c}_expected" for c in range(len(op.calls)))
    per_call.append(f"    static char* const expected_of[] = {{{table}}};")
    per_call.append("    const char* expected = expected_of[call];")
    for a in range(len(first.inputs)):
        inputs = ", ".join(f"call{c}_arg{a}" for c in range(len(op.calls)))
        per_call.append(f"    static char* const arg{a}_of[] = {{{inputs}}};")
        per_call.append(f"    tensors[{a}].data = arg{a}_of[call];")
    (folder / "data.S").write_text("\n".join(asm) + "\n")
    (folder / "harness.c").write_text(HARNESS.format(
        name=op.name, num_calls=len(op.calls), num_args=num_args, externs="\n".join(externs),
        setup="\n".join(setup), per_call="\n".join(per_call), out_bytes=out.nbytes,
        out_elems=out.size, out_elem_bytes=out.itemsize))
    return [folder / "operator.c", folder / "harness.c", folder / "data.S", *counter]


def compile_options(folder: Path) -> list[str]:
    return ["-include", str(folder / "tvm_cosa_spike.h"), *[f"-I{d}" for d in tvm_include_dirs()],
            "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-but-set-variable",
            f"-I{folder}"]


_LINE = re.compile(r"^CALL (\d+) status (-?\d+) mismatches (\d+) first (-?\d+) checksum (\d+)$")


def run_operator(op: Operator, toolchain: Toolchain, folder: Path,
                 timeout: Optional[float] = None) -> Result:
    """Build and run one operator's program on Spike; compare with the functional model's and
    the reference's outputs."""
    started = time.perf_counter()
    out_dtype = op.calls[0].output.dtype
    functional_vs_reference, want_sums = [], []
    for call in op.calls:
        ref = reference(op, call.inputs, out_dtype)
        functional_vs_reference.append(int((ref != call.output).sum()))
        want_sums.append(checksum(ref))
    empty = Result(op, False, [], [], functional_vs_reference, {}, {}, 0.0)
    try:
        sources = write_program(op, folder)
        program = toolchain.compile(sources, folder / f"{op.name}.riscv", compile_options(folder))
        done = toolchain.run(program, timeout=timeout)
    except (SimulatorError, OSError) as err:
        empty.message = str(err)
        empty.seconds = time.perf_counter() - started
        return empty
    except Exception as err:  # noqa: BLE001 - subprocess.TimeoutExpired and the like
        empty.message = f"{type(err).__name__}: {err}"
        empty.seconds = time.perf_counter() - started
        return empty
    vs_functional, vs_reference = [], []
    commands, moved = parse_counts(done.stdout)
    for line in done.stdout.splitlines():
        m = _LINE.match(line.strip())
        if m:
            call, status, mismatches = int(m[1]), int(m[2]), int(m[3])
            vs_functional.append(mismatches if status == 0 else -1)
            vs_reference.append(int(m[5]) == want_sums[call])
    ok = (done.returncode == 0 and len(vs_functional) == len(op.calls)
          and all(v == 0 for v in vs_functional) and all(vs_reference)
          and all(v == 0 for v in functional_vs_reference))
    message = "" if ok else _failure_message(done, vs_functional, vs_reference,
                                             functional_vs_reference, len(op.calls))
    return Result(op, ok, vs_functional, vs_reference, functional_vs_reference, commands, moved,
                  time.perf_counter() - started, message)


def _failure_message(done, vs_functional, vs_reference, functional_vs_reference, calls) -> str:
    if len(vs_functional) < calls:
        tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
        return f"spike exited with {done.returncode} after {len(vs_functional)} of {calls} " \
               "calls: " + " | ".join(tail)
    parts = []
    if any(v != 0 for v in vs_functional):
        parts.append(f"differs from the functional model (elements per call: {vs_functional})")
    if not all(vs_reference):
        parts.append("checksum differs from the reference's")
    if any(functional_vs_reference):
        parts.append(f"functional model differs from the reference ({functional_vs_reference})")
    return "; ".join(parts)


def run_on_spike(operators: list[Operator], config: GemminiConfig, *, toolchain=None, sdk=None,
                 spike=None, jobs: int = 2, workdir=None, timeout: Optional[float] = 3600,
                 progress=None) -> list[Result]:
    """Every operator on Spike (`jobs` at a time). The SDK's gemmini_params.h must describe
    `config` (InputError otherwise). `workdir` keeps the programs (default: a temporary folder,
    removed)."""
    toolchain = toolchain or find_toolchain(sdk, spike)
    toolchain.check_config(config)
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="tvm_cosa_spike_")
        workdir = tmp
    root = Path(workdir)
    try:
        def one(op):
            result = run_operator(op, toolchain, root / op.name, timeout)
            if progress:
                progress(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, operators))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- reporting -------------------------------------------------------------------------------
def results_table(results: list[Result]) -> str:
    header = ("operator", "shape", "calls", "RoCC/call", "in B/call", "out B/call", "spike=func",
              "spike=ort", "func=ort", "time s", "result")
    rows = [header]
    for r in results:
        n = len(r.operator.calls)  # every call issues the same commands
        rows.append((r.operator.name, r.operator.label, str(n), str(sum(r.commands.values()) // n),
                     str(r.bytes_moved["in"] // n) if r.bytes_moved else "-",
                     str(r.bytes_moved["out"] // n) if r.bytes_moved else "-",
                     _all_zero(r.spike_vs_functional, len(r.operator.calls)),
                     _all_true(r.spike_vs_reference, len(r.operator.calls)),
                     _all_zero(r.functional_vs_reference, len(r.operator.calls)),
                     f"{r.seconds:.1f}", "exact" if r.ok else "MISMATCH"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if not r.ok:
            lines.append(f"{r.operator.name}: {r.message}")
    return "\n".join(lines)


def summary(results: list[Result], seconds: Optional[float] = None) -> str:
    good = sum(r.ok for r in results)
    calls = sum(len(r.operator.calls) for r in results)
    text = (f"Spike: {good} of {len(results)} Gemmini operators ({calls} calls) bit-exact against "
            "the functional model and onnxruntime (ConvInteger / MatMulInteger on the same inputs"
            + ("; requantized operators: + bias, requantized in numpy as onnxruntime does)"
               if any(r.operator.info.get("requant") for r in results) else ")"))
    return text + (f" in {seconds:.1f} s" if seconds is not None else "")


def _all_zero(values, n) -> str:
    if len(values) < n:
        return "-"
    return "yes" if all(v == 0 for v in values) else "NO"


def _all_true(values, n) -> str:
    if len(values) < n:
        return "-"
    return "yes" if all(values) else "NO"
