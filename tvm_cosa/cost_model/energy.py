"""Per-access energies: the architecture's own table, else Timeloop 019f107's built-in estimate.

Timeloop without Accelergy ("pat" model, `src/pat/pat.cpp`) charges, per *vector* access of a
level (block_size words, read, fill and update alike):

* DRAM: 12.5 pJ per bit of the vector (200 pJ per 16 bits);
* SRAM of `entries` words: width = word_bits x block_size x cluster_size bits, height =
  ceil(entries / block_size) rows; with x = width x height / 8192 (KB),
  y = 1 + (6 - 1) / (100 - 0.5) x (x - 0.5) (linear between Eyeriss' 0.5 KB and 100 KB points),
  energy = y x width / 16, divided by cluster_size (an access serves one instance of the cluster);
  a level with 0 entries costs nothing;
* a MAC: (word_bits / 16)^2 pJ (0.25 pJ for 8-bit words).

Banks and ports do not enter the formula. These numbers are what real Timeloop uses for an
architecture file without energy tables, so the estimate agrees with it; they are still an
estimate of real hardware, and every result computed with them says so (`energy_estimated`).
"""

from __future__ import annotations

import math

ESTIMATE_LABEL = ("estimated: Timeloop 019f107's built-in (pat) energy model; the architecture "
                  "has no per-access energy table")


def sram_vector_energy(entries: int, word_bits: int, block_size: int, cluster_size: int) -> float:
    if entries == 0:
        return 0.0
    width = word_bits * block_size * cluster_size
    height = math.ceil(entries / block_size)
    x = width * height / (8 * 1024)
    slope = (6.0 - 1.0) / (100.0 - 0.5)
    y = slope * (x - 0.5) + 1.0
    return (y * width) / 16 / cluster_size


def dram_vector_energy(word_bits: int, block_size: int) -> float:
    return (200.0 * word_bits * block_size) / 16


def mac_energy(word_bits: int) -> float:
    return 1.0 * (word_bits / 16.0) * (word_bits / 16.0)


def level_energies(level) -> tuple[float, float, bool]:
    """(read pJ, write pJ per vector access, estimated?) of a `MemoryLevel`."""
    if level.read_energy_pJ is not None:
        write = level.write_energy_pJ if level.write_energy_pJ is not None else level.read_energy_pJ
        return float(level.read_energy_pJ), float(write), False
    if level.is_dram:
        e = dram_vector_energy(level.word_bits, level.block_size)
    else:
        e = sram_vector_energy(level.entries, level.word_bits, level.block_size,
                               level.cluster_size)
    return e, e, True


def arithmetic_energy(arithmetic) -> tuple[float, bool]:
    if arithmetic.energy_pJ is not None:
        return float(arithmetic.energy_pJ), False
    return mac_energy(arithmetic.word_bits), True


def energy_table(arch) -> dict:
    """The estimate as an energy table (`{level: {read, write}, arithmetic}`), for preset files."""
    table = {}
    for lv in arch.levels:
        read, write, _ = level_energies(lv)
        table[lv.name] = {"read": read, "write": write}
    table["arithmetic"] = arithmetic_energy(arch.arithmetic)[0]
    return table
