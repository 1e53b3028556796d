"""Area estimate of an architecture, composed the way Timeloop 019f107 composes its area.

Timeloop's model (`src/model/buffer.cpp`, `arithmetic.cpp`, `topology.cpp`) gives

* each storage level an area per instance of `SRAMArea(height, width, banks, ports) /
  cluster_size`, with width = word_bits x block_size x cluster_size bits and height =
  ceil(entries / block_size) rows (0 for DRAM and for a level of 0 entries), or the file's
  `cluster-area` / cluster_size;
* the MAC array `MultiplierArea(word_bits, word_bits)` per MAC (or the file's `area`);
* a total of sum(level area x instances) + MAC area x MAC instances.

Its built-in technology functions (`src/pat/pat.cpp`) return 0 for every area, so Timeloop alone
prints "Area: 0.00 mm^2" for every architecture (as in tests/data/timeloop-reference). We keep the
composition and put numbers into the per-component functions, from published 45 nm data:

* storage of at most REGISTER_MAX_BITS bits per instance is flip-flops: Aladdin's 45 nm register,
  5.98 um^2 per bit (Accelergy's library plug-in, `library/aladdin/aladdin_register.csv`);
* larger storage is SRAM: a 45 nm 6T bit cell of 0.346 um^2 (Intel 45 nm, Mistry et al., IEDM
  2007) at 50 % array efficiency (decoders, sense amplifiers, I/O), 0.692 um^2 per bit;
  banks and ports do not change it (as in pat's SRAMEnergy);
* a MAC is a word_bits x word_bits multiplier and a 2 x word_bits adder: Aladdin's 45 nm 32x32
  multiplier (6350 um^2) scaled by bits_a x bits_b / 32^2 (pat scales multiplier energy the same
  way) and its 32-bit adder (278 um^2) scaled by width / 32.

The result is an estimate for comparing configurations with each other, not a layout number; every
output carries `AREA_LABEL`. `timeloop_overrides(arch)` writes the same per-component numbers as
Timeloop's `cluster-area` / `area` overrides, so real Timeloop reproduces the total
(tests/test_sweep_area.py checks it when timeloop-model is installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AREA_LABEL = ("estimate: Timeloop 019f107's area composition with 45 nm per-component numbers "
              "(Aladdin registers and MACs, 6T SRAM); Timeloop's own built-in areas are 0")

REGISTER_UM2_PER_BIT = 5.98
REGISTER_MAX_BITS = 1024  # a storage instance this small is built from flip-flops
SRAM_BITCELL_UM2 = 0.346
SRAM_ARRAY_EFFICIENCY = 0.5
SRAM_UM2_PER_BIT = SRAM_BITCELL_UM2 / SRAM_ARRAY_EFFICIENCY
MULTIPLIER_32X32_UM2 = 6350.0
ADDER_32_UM2 = 278.0


def sram_area(height: int, width: int) -> float:
    """um^2 of a `height` x `width`-bit storage array (Timeloop's SRAMArea arguments)."""
    bits = height * width
    per_bit = REGISTER_UM2_PER_BIT if bits <= REGISTER_MAX_BITS else SRAM_UM2_PER_BIT
    return bits * per_bit


def multiplier_area(bits_a: int, bits_b: int) -> float:
    return MULTIPLIER_32X32_UM2 * bits_a * bits_b / (32 * 32)


def adder_area(bits: int) -> float:
    return ADDER_32_UM2 * bits / 32


def mac_area(word_bits: int) -> float:
    """A multiplier and an accumulating adder twice as wide as the operands."""
    return multiplier_area(word_bits, word_bits) + adder_area(2 * word_bits)


def level_instance_area(level) -> float:
    """um^2 of one instance of a storage level (Timeloop's storage_area)."""
    if level.is_dram or not level.entries:
        return 0.0
    width = level.word_bits * level.block_size * level.cluster_size
    height = math.ceil(level.entries / level.block_size)
    return sram_area(height, width) / level.cluster_size


@dataclass
class AreaEstimate:
    total_um2: float
    per_level_um2: dict = field(default_factory=dict)  # level (and MAC array) name -> um^2
    label: str = AREA_LABEL

    @property
    def total_mm2(self) -> float:
        return self.total_um2 / 1e6


def estimate_area(arch) -> AreaEstimate:
    """The area estimate of an `Architecture` (all instances of every level and of the MACs)."""
    parts = {arch.arithmetic.name: mac_area(arch.arithmetic.word_bits) * arch.arithmetic.instances}
    for level in arch.levels:
        parts[level.name] = level_instance_area(level) * level.instances
    return AreaEstimate(total_um2=sum(parts.values()), per_level_um2=parts)


def timeloop_overrides(arch) -> dict:
    """{"arithmetic": {"area": um^2 per MAC}, level name: {"cluster-area": um^2 per cluster}}:
    the per-component numbers in the keys timeloop-model reads, so Timeloop's total is ours."""
    out = {"arithmetic": {"area": mac_area(arch.arithmetic.word_bits)}}
    for level in arch.levels:
        out[level.name] = {"cluster-area": level_instance_area(level) * level.cluster_size}
    return out
