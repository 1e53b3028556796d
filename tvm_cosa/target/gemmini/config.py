"""A Gemmini-style accelerator: its hardware parameters, its CoSA architecture, its C parameters.

`GemminiConfig` is the one description of the hardware. `.architecture()` is the four-level
model the CoSA authors used for Gemmini (weight registers per PE, accumulator, scratchpad, DRAM),
sized from this configuration, so CoSA's tiles respect its real capacities; `.params_header()`
is the `gemmini_params.h` the functional model is built with, as Gemmini's generator writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...architecture import Architecture
from ...architecture_yaml import load_architecture
from ...errors import InputError

DATAFLOWS = ("WS", "OS")
# element type -> (C type of inputs, C type of accumulators, bytes per element, bytes per acc)
DTYPES = {
    "int8": ("int8_t", "int32_t", 1, 4),
    "float32": ("float", "float", 4, 4),
}
ACC_DTYPE = {"int8": "int32", "float32": "float32"}
DOUBLE_BUFFER_TAG = "db"  # in the name of a double_buffer configuration and its architecture
LEVEL_NAMES = ("Registers", "Accumulator", "Scratchpad", "DRAM")


@dataclass(frozen=True)
class GemminiConfig:
    """Gemmini's generator parameters (defaults: its default configuration).

    `dim`: the array is dim x dim PEs. Memories are rows of `dim` elements: the scratchpad holds
    `scratchpad_kib` KiB of inputs/weights, the accumulator `accumulator_kib` KiB of 32-bit sums.
    `dram_bandwidth`: bytes per cycle between DRAM and the chip (CoSA's calibrated 5.75).
    `dtype`: the input/weight type, int8 (int32 accumulation) or float32.
    `double_buffer`: CoSA schedules for half the scratchpad and half the accumulator, the working
    set Gemmini's CISC loop instructions allow (they double-buffer), so that the lowering can
    issue one `loop_ws` per tile of more layers; the hardware (and `gemmini_params.h`) keeps its
    full memories. Named "-db".
    """

    dim: int = 16
    scratchpad_kib: int = 256
    accumulator_kib: int = 64
    dataflow: str = "WS"
    dram_bandwidth: float = 5.75
    dtype: str = "int8"
    scratchpad_banks: int = 4
    accumulator_banks: int = 2
    dram_block_bytes: int = 64
    double_buffer: bool = False

    def __post_init__(self):
        if not isinstance(self.double_buffer, bool):
            raise InputError(f"must be true or false, got {self.double_buffer!r}",
                             source="GemminiConfig", field="double_buffer")
        for name in ("dim", "scratchpad_kib", "accumulator_kib", "scratchpad_banks",
                     "accumulator_banks", "dram_block_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"must be a positive integer, got {value!r}",
                                 source="GemminiConfig", field=name)
        if self.dataflow not in DATAFLOWS:
            raise InputError(f"unknown dataflow {self.dataflow!r}; expected one of {DATAFLOWS}",
                             source="GemminiConfig", field="dataflow")
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of {list(DTYPES)}",
                             source="GemminiConfig", field="dtype")
        if not self.dram_bandwidth > 0:
            raise InputError(f"must be > 0, got {self.dram_bandwidth!r}",
                             source="GemminiConfig", field="dram_bandwidth")
        for name, kib, row_bytes in (("scratchpad_kib", self.scratchpad_kib, self.spad_row_bytes),
                                     ("accumulator_kib", self.accumulator_kib,
                                      self.acc_row_bytes)):
            if (kib * 1024) % row_bytes:
                raise InputError(f"{kib} KiB is not a whole number of {row_bytes}-byte rows "
                                 f"(dim {self.dim})", source="GemminiConfig", field=name)

    # ---- geometry ---------------------------------------------------------------------------
    @property
    def elem_bytes(self) -> int:
        return DTYPES[self.dtype][2]

    @property
    def acc_bytes(self) -> int:
        return DTYPES[self.dtype][3]

    @property
    def acc_dtype(self) -> str:
        return ACC_DTYPE[self.dtype]

    @property
    def spad_row_bytes(self) -> int:
        return self.dim * self.elem_bytes

    @property
    def acc_row_bytes(self) -> int:
        return self.dim * self.acc_bytes

    @property
    def spad_rows(self) -> int:
        return self.scratchpad_kib * 1024 // self.spad_row_bytes

    @property
    def acc_rows(self) -> int:
        return self.accumulator_kib * 1024 // self.acc_row_bytes

    @property
    def scheduled_rows(self) -> tuple[int, int]:
        """Scratchpad and accumulator rows CoSA's tiles may use (half with double_buffer)."""
        share = 2 if self.double_buffer else 1
        return self.spad_rows // share, self.acc_rows // share

    @property
    def name(self) -> str:
        """"gemmini" for the default configuration, else "gemmini-" and what differs from it
        (e.g. "gemmini-float32", "gemmini-8x8-sp64k-acc16k")."""
        d = GemminiConfig()
        parts = []
        if self.dim != d.dim:
            parts.append(f"{self.dim}x{self.dim}")
        for field, fmt in (("scratchpad_kib", "sp{}k"), ("accumulator_kib", "acc{}k"),
                           ("dataflow", "{}"), ("dram_bandwidth", "bw{:g}"),
                           ("scratchpad_banks", "spbanks{}"), ("accumulator_banks", "accbanks{}"),
                           ("dram_block_bytes", "block{}"), ("dtype", "{}")):
            value = getattr(self, field)
            if value != getattr(d, field):
                parts.append(fmt.format(value.lower() if isinstance(value, str) else value))
        if self.double_buffer:
            parts.append(DOUBLE_BUFFER_TAG)
        return "-".join(["gemmini", *parts])

    # ---- CoSA / Timeloop form -----------------------------------------------------------------
    def timeloop_arch(self) -> dict:
        """The architecture in Timeloop 0.3's format (the reference folder's Gemmini file)."""
        elem_bits, acc_bits = 8 * self.elem_bytes, 8 * self.acc_bytes
        pes = self.dim * self.dim
        spad_rows, acc_rows = self.scheduled_rows
        return {"arch": {
            "arithmetic": {"instances": pes, "meshX": self.dim, "word-bits": elem_bits},
            "storage": [
                {"name": "Registers", "entries": 1, "instances": pes, "meshX": self.dim,
                 "word-bits": elem_bits, "n_rdwr_ports": 2, "n_banks": 1},
                {"name": "Accumulator", "entries": acc_rows * self.dim,
                 "depth": acc_rows, "width": self.dim * acc_bits, "instances": 1,
                 "meshX": 1, "word-bits": acc_bits, "network-word-bits": 16,
                 "n_rdwr_ports": 2, "n_banks": self.accumulator_banks},
                {"name": "Scratchpad", "class": "SRAM", "entries": spad_rows * self.dim,
                 "depth": spad_rows, "width": self.dim * elem_bits, "instances": 1,
                 "meshX": 1, "word-bits": elem_bits, "n_rdwr_ports": 1,
                 "n_banks": self.scratchpad_banks},
                {"name": "DRAM", "technology": "DRAM", "instances": 1, "word-bits": elem_bits,
                 "block_size": self.dram_block_bytes // self.elem_bytes,
                 # Timeloop's deprecated `bandwidth` (read + write), in words per cycle
                 "bandwidth": self.dram_bandwidth / self.elem_bytes},
            ]}}

    def timeloop_mapspace(self) -> dict:
        """The bypass pattern: WS keeps weights in the PEs, OS keeps the partial sums there."""
        in_pe = ["Weights"] if self.dataflow == "WS" else ["Outputs"]
        keeps = [("Registers", in_pe), ("Accumulator", ["Outputs"]),
                 ("Scratchpad", ["Inputs", "Weights"]), ("DRAM", ["Weights", "Inputs", "Outputs"])]
        tensors = ("Weights", "Inputs", "Outputs")
        return {"mapspace": {"constraints": [
            {"target": level, "type": "bypass", "keep": list(kept),
             "bypass": [t for t in tensors if t not in kept]} for level, kept in keeps]}}

    def architecture(self) -> Architecture:
        """The tvm_cosa Architecture CoSA schedules for (named `gemmini...`)."""
        arch = load_architecture(self.timeloop_arch(), self.timeloop_mapspace(), name=self.name)
        return self._with_preset_energies(with_array_layout(arch, self.dataflow))

    def _with_preset_energies(self, arch: Architecture) -> Architecture:
        """The preset's per-access energies (Timeloop's, for its memory sizes) when this
        configuration has the preset's memories; otherwise energies stay estimated."""
        from ...architecture_yaml import PRESET_DIR, apply_energy_table, read_yaml

        table = PRESET_DIR / "gemmini.energy.yaml"
        geometry = ("dim", "scratchpad_kib", "accumulator_kib", "dtype", "scratchpad_banks",
                    "accumulator_banks", "dram_block_bytes")
        default = GemminiConfig()
        if not table.is_file() or any(getattr(self, g) != getattr(default, g) for g in geometry):
            return arch
        return apply_energy_table(arch, read_yaml(table), table)

    @classmethod
    def from_architecture(cls, arch: Architecture) -> "GemminiConfig":
        """The configuration an architecture built by `architecture()` (or the preset) models."""
        try:
            acc_level = arch.levels[arch.level_index("Accumulator")]
            spad_level = arch.levels[arch.level_index("Scratchpad")]
            reg_level = arch.levels[arch.level_index("Registers")]
            dram_level = arch.levels[-1]
        except InputError:
            raise InputError(f"architecture {arch.name!r} is not a Gemmini model: it needs levels "
                             f"{list(LEVEL_NAMES)}", source=arch.name) from None
        mx, my = arch.arithmetic.mesh
        if mx != my:
            raise InputError(f"the MAC array is {mx} x {my}; Gemmini's is square",
                             source=arch.name, field="arithmetic")
        dtype = {8: "int8", 32: "float32"}.get(spad_level.word_bits)
        if dtype is None:
            raise InputError(f"scratchpad words of {spad_level.word_bits} bits; expected 8 (int8) "
                             "or 32 (float32)", source=arch.name, field="word_bits")
        elem_bytes = DTYPES[dtype][2]
        # a double-buffered configuration schedules for half of its memories (see its name)
        double = DOUBLE_BUFFER_TAG in arch.name.split("-")
        share = 2 if double else 1
        spad_kib = share * spad_level.entries * elem_bytes / 1024
        acc_kib = share * acc_level.entries * acc_level.word_bits / 8 / 1024
        if spad_kib != int(spad_kib) or acc_kib != int(acc_kib):
            raise InputError(f"memories of {spad_kib} and {acc_kib} KiB are not whole KiB",
                             source=arch.name)
        bandwidth = None
        if dram_level.read_bandwidth is not None:
            bandwidth = (dram_level.read_bandwidth + (dram_level.write_bandwidth or 0)) * elem_bytes
        return cls(dim=mx, scratchpad_kib=int(spad_kib), accumulator_kib=int(acc_kib),
                   dataflow="WS" if "Weights" in reg_level.keeps else "OS",
                   dram_bandwidth=bandwidth or cls.dram_bandwidth, dtype=dtype,
                   scratchpad_banks=spad_level.num_banks, accumulator_banks=acc_level.num_banks,
                   dram_block_bytes=dram_level.block_size * elem_bytes, double_buffer=double)

    # ---- C form -------------------------------------------------------------------------------
    def params_header(self) -> str:
        """`gemmini_params.h` for this configuration."""
        elem_c, acc_c, _, _ = DTYPES[self.dtype]
        kind = "#define ELEM_T_IS_INT8 1" if self.dtype == "int8" else "#define ELEM_T_IS_FLOAT 1"
        return "\n".join([
            f"/* Generated by tvm_cosa for {self.name}. */",
            "#ifndef TVM_COSA_GEMMINI_PARAMS_H",
            "#define TVM_COSA_GEMMINI_PARAMS_H",
            "#include <stdint.h>",
            f"#define DIM {self.dim}",
            f"#define SP_ROWS {self.spad_rows}",
            f"#define ACC_ROWS {self.acc_rows}",
            f"typedef {elem_c} elem_t;",
            f"typedef {acc_c} acc_t;",
            kind,
            "#endif",
            "",
        ])

    def with_dtype(self, dtype: str) -> "GemminiConfig":
        return replace(self, dtype=dtype)


# The columns of each operand's rows in the scratchpad and accumulator (A rows run along the
# reduction, B and C rows along the output channels): under WS, the dimensions the array takes
# on X (inputs) and Y (weights, outputs), so a tile's rows are its words / that spatial factor.
WS_ROW_DIMS = (("Inputs", "reduction"), ("Weights", "output_channel"),
               ("Outputs", "output_channel"))


def with_array_layout(arch: Architecture, dataflow: str = "WS") -> Architecture:
    """What Timeloop's file cannot say about Gemmini: the dimensions the array takes on X and Y,
    and (WS, the dataflow that is lowered) that the bounded levels with rows of several words
    (scratchpad, accumulator) are row-addressed, so CoSA counts their capacity in rows."""
    i = arch.level_index("Accumulator")
    levels = list(arch.levels)
    if dataflow == "WS":
        # Weight-stationary: input channels along X (rows of the array), outputs along Y.
        levels[i] = replace(levels[i], spatial_dims_x=("reduction",),
                            spatial_dims_y=("output_channel",))
        for k, lv in enumerate(levels):
            if lv.entries is not None and lv.block_size > 1:
                levels[k] = replace(lv, row_dims=tuple(
                    (t, role) for t, role in WS_ROW_DIMS if t in lv.keeps))
    else:
        # Output-stationary: output pixels along X, output channels along Y.
        levels[i] = replace(levels[i], spatial_dims_x=("pixel",),
                            spatial_dims_y=("output_channel",))
    return replace(arch, levels=tuple(levels), timeloop_spec=arch.timeloop_spec)


def matching_dtype(operand_dtypes, default: str = "int8") -> str:
    """The element type of the configuration to run operators whose operands have these types:
    int8 when any is int8 (the layers the array exists for), else float32 when any is float32,
    else `default`. Operators of another type fall back to the CPU with the reason."""
    dtypes = {str(d) for d in operand_dtypes}
    for dtype in ("int8", "float32"):
        if dtype in dtypes:
            return dtype
    return default


def config_for(arch) -> GemminiConfig:
    """A GemminiConfig from a config, an Architecture, or a preset / architecture name."""
    if isinstance(arch, GemminiConfig):
        return arch
    if isinstance(arch, Architecture):
        return GemminiConfig.from_architecture(arch)
    if isinstance(arch, str) and arch == "gemmini":
        return GemminiConfig()
    if isinstance(arch, int) and not isinstance(arch, bool):
        return GemminiConfig(dim=arch)
    raise InputError(f"expected a GemminiConfig, a Gemmini Architecture, the preset name "
                     f"'gemmini' or an array width, got {arch!r}")

