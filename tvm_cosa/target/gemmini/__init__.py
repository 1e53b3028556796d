"""A Gemmini-style target: a DIM x DIM weight-stationary systolic array driven by its own ISA.

- config: `GemminiConfig` (DIM, scratchpad / accumulator sizes, dataflow, element type) ->
  the CoSA `Architecture` (the preset `gemmini` for the defaults) and `gemmini_params.h`;
- plan, lowering: `lower(prim_func, op, mapping, arch)`, the CoSAPass hook that turns a scheduled
  conv2d / matmul into TIR calling the ISA (mvin, preload, compute, mvout, config, fence, flush);
- runtime/: gemmini.h (the ISA and host API) and gemmini_func.c (its functional model);
  functional: building it with gcc and driving it through ctypes;
- codegen: building a lowered Relax module with TVM's c target against the functional model,
  and `emit_c` (the C sources and a Makefile);
- prepare: Relax rewrites that put more of a model on the array (int8 casts, channel padding,
  NHWC / HWIO), and `GemminiPrepare`, the module pass doing them before CoSAPass;
- vm: TVM's standard build (`tvm.compile` + `relax.VirtualMachine`) of a lowered module, the
  functional model attached by CoSAPass as an external library (and a guard library that
  turns a JIT without it into a Python error);
- flow: the steps every user of the target takes (prepare, schedule, build with the c target,
  run on the functional model, compare), shared by `tvm-cosa verify` / `compile` and the
  examples; baseline: Gemmini's own tiling heuristics as Mappings.

Importing this package does not import TVM.
"""

from .config import GemminiConfig, config_for
from .prepare import GemminiPrepare

__all__ = ["GemminiConfig", "GemminiPrepare", "config_for"]
