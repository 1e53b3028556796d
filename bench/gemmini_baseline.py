#!/usr/bin/env python3
"""CoSA's schedules against Gemmini's own tiling heuristics, on the 24 ResNet-50 layers.

Per layer, on the default Gemmini configuration (16x16, 256 KiB scratchpad, 64 KiB accumulator):
- CoSA: `tvm_cosa.scheduler.schedule`;
- Gemmini: gemmini.h's tiled_conv_auto / tiled_matmul_auto (target/gemmini/baseline.py), as a
  Mapping (tiles rounded to divisors; the `rounded` column lists where);
both on the layer with its channels padded to multiples of 16 (as Gemmini's rows hold them; only
conv1's 3 input channels and the FC's 1000 outputs change). Compared by the cost model
(`tvm_cosa.cost_model.evaluate`: cycles, energy) and, unless --no-run, by running both schedules
lowered onto the Gemmini ISA on the functional model with seeded int8 data (commands issued,
bytes moved between DRAM and the chip; outputs checked against numpy, exactly).

Target: CoSA at least 1.2x fewer modelled cycles than Gemmini's heuristics (geometric mean).

    python bench/gemmini_baseline.py              # cost model and functional model (~1 min)
    python bench/gemmini_baseline.py --no-run     # cost model only
    python bench/gemmini_baseline.py --spike      # also both on Gemmini's own simulator

With --spike (Spike + libgemmini, SDK and cross compiler found as by `tvm-cosa verify
--simulator spike`), each layer also runs on Spike twice: the C TVM generates for CoSA's
lowered schedule (target/gemmini/spike.py's harness), and Gemmini's own library, gemmini.h's
tiled_conv_auto (tiled_matmul_auto for the fully-connected layer, int32 output) called on the
same data. Both programs are counted by one method: every RoCC instruction the CPU issues goes
through the same counting shim, which also adds up the DRAM bytes of each mvin / mvout, including
those that Gemmini's CISC loop instructions (loop_ws, loop_conv_ws) issue inside the
accelerator (libgemmini's traversal, from their configuration). Gemmini's conv kernels write
int8 (scaled, saturated) outputs where ours write raw int32 sums, so their output bytes are a
quarter; both outputs are checked against numpy.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa import Problem, assert_valid  # noqa: E402
from tvm_cosa.cost_model import evaluate  # noqa: E402
from tvm_cosa.scheduler import schedule  # noqa: E402
from tvm_cosa.target.gemmini.baseline import baseline_mapping  # noqa: E402
from tvm_cosa.target.gemmini.config import GemminiConfig  # noqa: E402
from tvm_cosa.target.gemmini.plan import pad_channels  # noqa: E402

WORKLOADS = ROOT / "tests" / "data" / "workloads" / "resnet50"
TARGET = 1.2
COMMANDS = ("config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
            "compute_preloaded", "compute_accumulated", "fence", "flush")


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


# ---- running a layer on the functional model ------------------------------------------------
def conv_module(problem: Problem):
    """A valid (unpadded) NHWC / HWIO int8 conv2d whose Problem is `problem`."""
    from tvm import relax

    s, p = problem.size, problem.param
    h = (s["Q"] - 1) * p["Hstride"] + (s["S"] - 1) * p["Hdilation"] + 1
    w = (s["P"] - 1) * p["Wstride"] + (s["R"] - 1) * p["Wdilation"] + 1
    xs, ws = (s["N"], h, w, s["C"]), (s["S"], s["R"], s["C"], s["K"])
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(xs, "int8"))
    k = relax.Var("w", relax.TensorType(ws, "int8"))
    with bb.function("main", [x, k]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(
                x, k, strides=(p["Hstride"], p["Wstride"]),
                dilation=(p["Hdilation"], p["Wdilation"]), data_layout="NHWC",
                kernel_layout="HWIO", out_dtype="int32"))
            gv = bb.emit_output(y)
        bb.emit_func_output(gv)
    return bb.get(), xs, ws


def conv_reference(x, w, stride, dilation):
    n, h, wd, c = x.shape
    kh, kw, _, k = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, oh, ow, k), np.int64)
    x, w = x.astype(np.int64), w.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            out += np.einsum("nhwc,ck->nhwk", patch, w[i, j])
    return out


def run_on_functional_model(problem, mappings: dict, arch, config, folder, seed=0) -> dict:
    """name -> counters of each mapping's run; raises if an output differs from numpy."""
    import tvm
    from tvm import relax, tirx

    from tvm_cosa.relax.extract import extract
    from tvm_cosa.target.gemmini import codegen
    from tvm_cosa.target.gemmini.lowering import lower

    mod, xs, ws = conv_module(problem)
    (op,) = extract(mod)
    legal = relax.transform.LegalizeOps()(mod)
    (gv,) = [g for g, f in legal.functions.items() if isinstance(f, tirx.PrimFunc)]
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, xs, dtype=np.int8)
    w = rng.integers(-128, 128, ws, dtype=np.int8)
    p = problem.param
    ref = conv_reference(x, w, (p["Hstride"], p["Wstride"]), (p["Hdilation"], p["Wdilation"]))
    counts = {}
    for name, mapping in mappings.items():
        lowered = tvm.IRModule(dict(legal.functions))
        lowered[gv] = lower(legal[gv], op, mapping, arch)
        path = codegen.export(lowered, config, Path(folder) / f"{uuid.uuid4().hex}.so")
        vm, fm = codegen.load(path, config)
        fm.reset()
        out = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
        fm.check()
        if not np.array_equal(out.astype(np.int64), ref):
            raise AssertionError(f"{problem.name} ({name}): output differs from numpy")
        counts[name] = fm.counters()
    return counts


# ---- both on Spike --------------------------------------------------------------------------
GEMMINI_CONV = r"""#include <stdio.h>
#include <string.h>
#include <stdint.h>
void tvm_cosa_print_counts(void);
extern elem_t x_data[], w_data[], expected[];
static elem_t output[{out_elems}] __attribute__((aligned(64)));
int main(void) {{
  gemmini_flush(0);
  tiled_conv_auto(1, {in_rows}, {in_cols}, {in_ch}, {out_ch}, {out_rows}, {out_cols}, {stride},
                  1, 1, 0, {kernel}, false, false, false, false, false,
                  x_data, w_data, NULL, output, NO_ACTIVATION, ACC_SCALE_IDENTITY, 0, 0, 0, WS);
  gemmini_fence();
  int bad = 0;
  for (int i = 0; i < {out_elems}; i++) bad += output[i] != expected[i];
  printf("MISMATCHES %d\n", bad);
  tvm_cosa_print_counts();
  return bad != 0;
}}
"""

GEMMINI_MATMUL = r"""#include <stdio.h>
#include <string.h>
#include <stdint.h>
void tvm_cosa_print_counts(void);
extern elem_t x_data[], w_data[];
extern acc_t expected[];
static acc_t output[{out_elems}] __attribute__((aligned(64)));
int main(void) {{
  gemmini_flush(0);
  tiled_matmul_auto({M}, {N}, {K}, x_data, w_data, NULL, output, {K}, {N}, {N}, {N},
                    MVIN_SCALE_IDENTITY, MVIN_SCALE_IDENTITY, MVIN_SCALE_IDENTITY, NO_ACTIVATION,
                    ACC_SCALE_IDENTITY, 0, false, false, false, true, false, 3, WS);
  gemmini_fence();
  int bad = 0;
  for (int i = 0; i < {out_elems}; i++) bad += output[i] != expected[i];
  printf("MISMATCHES %d\n", bad);
  tvm_cosa_print_counts();
  return bad != 0;
}}
"""


def layer_data(problem, seed=0):
    """Seeded int8 input (NHWC, unpadded: padding is folded into the layer) and weights
    (HWIO), and the exact int64 output."""
    _, xs, ws = conv_module(problem)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, xs, dtype=np.int8)
    w = rng.integers(-128, 128, ws, dtype=np.int8)
    p = problem.param
    return x, w, conv_reference(x, w, (p["Hstride"], p["Wstride"]), (p["Hdilation"],
                                                                      p["Wdilation"]))


def is_matmul(problem) -> bool:
    s = problem.size
    return s["R"] == s["S"] == s["P"] == s["Q"] == 1


def ours_on_spike(problem, mapping, arch, toolchain, folder):
    """CoSA's schedule lowered and generated as C by TVM, run on Spike: (commands, bytes)."""
    from tvm import relax, tirx

    from tvm_cosa.relax.extract import extract
    from tvm_cosa.target.gemmini import spike
    from tvm_cosa.target.gemmini.lowering import lower

    mod, _, _ = conv_module(problem)
    (op,) = extract(mod)
    legal = relax.transform.LegalizeOps()(mod)
    (gv,) = [g for g, f in legal.functions.items() if isinstance(f, tirx.PrimFunc)]
    func = lower(legal[gv], op, mapping, arch)
    x, w, ref = layer_data(problem)
    p = problem.param
    info = {"kind": "conv2d", "shape": problem.name, "attrs": {
        "layout": "NHWC", "kernel_layout": "HWIO", "strides": (p["Hstride"], p["Wstride"]),
        "padding": (0, 0, 0, 0), "dilation": (p["Hdilation"], p["Wdilation"]), "groups": 1}}
    operator = spike.Operator("layer", func, 0, info, [spike.Call([x, w], ref.astype(np.int32))])
    result = spike.run_operator(operator, toolchain, Path(folder) / "ours")
    if not result.ok:
        raise AssertionError(f"{problem.name} (CoSA on Spike): {result.message}")
    return sum(result.commands.values()), result.bytes_moved


def gemmini_on_spike(problem, toolchain, folder):
    """gemmini.h's tiled_conv_auto (tiled_matmul_auto for a fully-connected layer) on the same
    data on Spike: (commands, bytes)."""
    from tvm_cosa.target.gemmini import spike

    folder = Path(folder) / "gemmini"
    folder.mkdir(parents=True, exist_ok=True)
    x, w, ref = layer_data(problem)
    s, p = problem.size, problem.param
    if is_matmul(problem):
        expected = ref.reshape(-1).astype(np.int32)
        source = GEMMINI_MATMUL.format(M=s["N"], N=s["K"], K=s["C"], out_elems=expected.size)
    else:
        expected = np.clip(ref, -128, 127).astype(np.int8)  # scale 1, saturated to int8
        source = GEMMINI_CONV.format(
            in_rows=x.shape[1], in_cols=x.shape[2], in_ch=s["C"], out_ch=s["K"],
            out_rows=ref.shape[1], out_cols=ref.shape[2], stride=p["Hstride"], kernel=s["R"],
            out_elems=expected.size)
    asm = [".section .data"]
    for label, array in (("x_data", x), ("w_data", w), ("expected", expected)):
        np.ascontiguousarray(array).tofile(folder / f"{label}.bin")
        asm += [".balign 64", f".global {label}", f"{label}:", f'.incbin "{label}.bin"']
    (folder / "data.S").write_text("\n".join(asm) + "\n")
    (folder / "main.c").write_text(source)
    sources = [folder / "main.c", folder / "data.S", *spike.write_counter(folder)]
    program = toolchain.compile(sources, folder / "gemmini.riscv",
                                ["-include", str(folder / "tvm_cosa_spike.h"), f"-I{folder}",
                                 "-Wno-unused-function", "-Wno-unused-variable"])
    done = toolchain.run(program, timeout=3600)
    if done.returncode != 0:
        raise AssertionError(f"{problem.name} (gemmini.h on Spike) failed: "
                             f"{(done.stdout + done.stderr)[-500:]}")
    commands, moved = spike.parse_counts(done.stdout)
    return sum(commands.values()), moved


# ---- the table ------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=Path, default=WORKLOADS,
                    help="folder of CoSA-format layer YAML files")
    ap.add_argument("--solver", default="auto")
    ap.add_argument("--no-run", action="store_true", help="cost model only")
    ap.add_argument("--spike", action="store_true",
                    help="also run CoSA's code and gemmini.h's tiled kernels on Spike")
    ap.add_argument("--limit", type=int, default=None, help="only the first N layers")
    args = ap.parse_args()
    toolchain = None
    if args.spike:
        from tvm_cosa.target.gemmini import sdk

        toolchain = sdk.find_toolchain()
        toolchain.check_config(GemminiConfig())

    config = GemminiConfig()
    arch = config.architecture()
    files = sorted(args.layers.glob("*.yaml"))[:args.limit]
    if not files:
        sys.exit(f"no layer files in {args.layers}")
    header = (f"{'layer':20s} {'shape':28s} {'CoSA cyc':>10s} {'Gemmini cyc':>11s} {'x':>6s} "
              f"{'CoSA uJ':>8s} {'Gem uJ':>8s}")
    if not args.no_run:
        header += f" {'CoSA cmds':>9s} {'Gem cmds':>9s} {'CoSA MB':>8s} {'Gem MB':>8s}"
    if toolchain:
        header += (f" | Spike: {'CoSA cmds':>9s} {'gemmini.h':>9s} {'CoSA MB':>8s} "
                   f"{'gemmini.h MB':>12s}")
    print(header + "  Gemmini tiles (rounded)")
    cyc_ratio, byte_ratio, cmd_ratio = [], [], []
    totals = {"cosa": [0, 0], "gemmini": [0, 0]}
    spike_totals = {"cosa": [0, 0, 0, 0], "gemmini": [0, 0, 0, 0]}
    spike_cmd_ratio, spike_in_ratio = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gemmini_bench_") as folder:
        for f in files:
            problem = pad_channels(Problem.from_yaml(f), config.dim)
            mappings = {"cosa": schedule(problem, arch, solver=args.solver),
                        "gemmini": baseline_mapping(problem, arch)}
            for m in mappings.values():
                assert_valid(m, problem, arch)
            ev = {k: evaluate(m, problem, arch) for k, m in mappings.items()}
            ratio = ev["gemmini"].cycles / ev["cosa"].cycles
            cyc_ratio.append(ratio)
            s = problem.size
            shape = (f"{s['S']}x{s['R']}/{problem.param['Hstride']} {s['C']}->{s['K']} "
                     f"{s['Q']}x{s['P']}")
            line = (f"{f.stem:20s} {shape:28s} {ev['cosa'].cycles:10.0f} "
                    f"{ev['gemmini'].cycles:11.0f} {ratio:6.2f} {ev['cosa'].energy_pJ / 1e6:8.1f} "
                    f"{ev['gemmini'].energy_pJ / 1e6:8.1f}")
            if not args.no_run:
                counts = run_on_functional_model(problem, mappings, arch, config, folder)
                cmds = {k: sum(c[n] for n in COMMANDS) for k, c in counts.items()}
                moved = {k: c["bytes_in"] + c["bytes_in_acc"] + c["bytes_out"]
                         for k, c in counts.items()}
                for k in totals:
                    totals[k][0] += cmds[k]
                    totals[k][1] += moved[k]
                byte_ratio.append(moved["gemmini"] / moved["cosa"])
                cmd_ratio.append(cmds["gemmini"] / cmds["cosa"])
                line += (f" {cmds['cosa']:9d} {cmds['gemmini']:9d} {moved['cosa'] / 1e6:8.2f} "
                         f"{moved['gemmini'] / 1e6:8.2f}")
            if toolchain:
                with tempfile.TemporaryDirectory(prefix="gemmini_spike_") as layer_dir:
                    ours = ours_on_spike(problem, mappings["cosa"], arch, toolchain, layer_dir)
                    theirs = gemmini_on_spike(problem, toolchain, layer_dir)
                for name, (cmds, moved) in (("cosa", ours), ("gemmini", theirs)):
                    spike_totals[name][0] += cmds
                    spike_totals[name][1] += moved["in"] + moved["out"]
                    spike_totals[name][2] += moved["in"]
                    spike_totals[name][3] += moved.get("inexact", 0)
                spike_cmd_ratio.append(theirs[0] / ours[0])
                spike_in_ratio.append(theirs[1]["in"] / ours[1]["in"])
                line += (f" | Spike: {ours[0]:9d} {theirs[0]:9d} "
                         f"{(ours[1]['in'] + ours[1]['out']) / 1e6:8.2f} "
                         f"{(theirs[1]['in'] + theirs[1]['out']) / 1e6:12.2f}")
            info = mappings["gemmini"].info
            rounded = f" ({info['rounded']})" if info["rounded"] else ""
            print(f"{line}  {info['gemmini_tiles']}{rounded}", flush=True)

    g = geomean(cyc_ratio)
    print(f"\nmodelled cycles, Gemmini heuristics / CoSA: geometric mean {g:.2f}x over "
          f"{len(cyc_ratio)} layers (min {min(cyc_ratio):.2f}x, max {max(cyc_ratio):.2f}x)")
    if not args.no_run:
        print(f"functional model, Gemmini / CoSA: bytes moved geomean {geomean(byte_ratio):.2f}x "
              f"(total {totals['gemmini'][1] / 1e6:.1f} MB vs {totals['cosa'][1] / 1e6:.1f} MB); "
              f"commands geomean {geomean(cmd_ratio):.2f}x (total {totals['gemmini'][0]} vs "
              f"{totals['cosa'][0]}); every output equal to numpy")
    if toolchain:
        c, gm = spike_totals["cosa"], spike_totals["gemmini"]
        print(f"Spike, gemmini.h's tiled_conv_auto / tiled_matmul_auto vs CoSA's generated code "
              f"(same counting shim): RoCC commands issued by the CPU {gm[0]} vs {c[0]} "
              f"(geomean ratio {geomean(spike_cmd_ratio):.3f}x); DRAM bytes read {gm[2] / 1e6:.1f} "
              f"MB vs {c[2] / 1e6:.1f} MB (geomean ratio {geomean(spike_in_ratio):.2f}x); bytes "
              f"moved in + out {gm[1] / 1e6:.1f} MB vs {c[1] / 1e6:.1f} MB (gemmini.h writes "
              f"int8 conv outputs, ours int32); loop instructions with features counted as the "
              f"plain case: {gm[3]}; every output equal to numpy")
    verdict = "PASS" if g >= TARGET else "FAIL"
    print(f"target: CoSA >= {TARGET}x fewer modelled cycles (geomean): {g:.2f}x {verdict}  "
          f"[{time.perf_counter() - started:.0f} s]")
    return 0 if g >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
