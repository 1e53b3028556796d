/* gemmini.h: the Gemmini-style ISA that tvm_cosa's generated C calls, and the host API of the
 * functional model (gemmini_func.c) that executes it on the CPU.
 *
 * Names and argument orders follow Gemmini's own gemmini.h (gemmini_extended_mvin,
 * gemmini_extended_preload, ...). Every call returns 0, or the model's (sticky) error code after
 * an error: the first out-of-range address, capacity overflow or unsupported setting stops the
 * model, and gemmini_error_message() says which command failed and why.
 *
 * The hardware parameters (DIM, scratchpad / accumulator rows, element type) come from
 * gemmini_params.h, which tvm_cosa writes for each GemminiConfig, as Gemmini's generator does.
 */
#ifndef TVM_COSA_GEMMINI_H
#define TVM_COSA_GEMMINI_H

#include <stdint.h>

#include "gemmini_params.h"

/* Private-memory addresses are row numbers. Bit 31 selects the accumulator; on a write to it
 * bit 30 accumulates instead of overwriting; on a mvout from it bit 29 writes raw acc_t values. */
#define GEMMINI_ACC_BIT 0x80000000u
#define GEMMINI_ACCUMULATE_BIT 0x40000000u
#define GEMMINI_FULL_BIT 0x20000000u
#define GEMMINI_ROW_MASK 0x1FFFFFFFu
/* An operand at this address reads as zeros; an output at it is not written. */
#define GARBAGE_ADDR 0xFFFFFFFFu

#define OUTPUT_STATIONARY 0
#define WEIGHT_STATIONARY 1
#define NO_ACTIVATION 0
#define RELU 1
#define MVIN_SCALE_IDENTITY 1.0f
#define ACC_SCALE_IDENTITY 1.0f

/* ---- ISA ------------------------------------------------------------------------------------
 * Names and arguments are those of Gemmini's gemmini.h, where they are macros: the generated C
 * calls them as intrinsics without writing prototypes (isa.py) and is compiled with
 * `-include gemmini.h`, this one or Gemmini's. Addresses arrive as uint32 (bit 31 set). */
int32_t gemmini_flush(int32_t skip);
int32_t gemmini_fence(void);
/* Dataflow and the row stride of A reads (a_stride: A row i is spad row a + i * a_stride).
 * Activation, shift and transposes are not modelled and must be 0. */
int32_t gemmini_extended_config_ex(int32_t dataflow, int32_t act, int32_t sys_shift,
                                   int32_t a_stride, int32_t a_transpose, int32_t b_transpose);
/* DRAM byte stride between the rows of a mvin (id 0), mvin2 (id 1) or mvin3 (id 2), its scale
 * (scratchpad loads and shrunk accumulator loads: round half to even, saturate to elem_t) and
 * `shrunk` (an accumulator mvin reads elem_t values). gemmini_extended_config_ld: id 0. */
int32_t gemmini_extended3_config_ld(int32_t stride_bytes, float scale, int32_t shrunk,
                                    int32_t id);
int32_t gemmini_extended_config_ld(int32_t stride_bytes, float scale);
/* DRAM byte stride between the rows of a mvout; for non-full accumulator reads, the activation
 * (NO_ACTIVATION or RELU) and scale applied on the way to elem_t. gemmini_config_st: neither. */
int32_t gemmini_extended_config_st(int32_t stride_bytes, int32_t act, float scale);
int32_t gemmini_config_st(int32_t stride_bytes);
/* rows x cols elements from DRAM (rows stride_bytes apart) to private memory rows sp_addr...
 * A NULL dram pointer writes zeros. To the accumulator: acc_t values. */
int32_t gemmini_extended_mvin(void* dram, int32_t sp_addr, int32_t cols, int32_t rows);
int32_t gemmini_extended_mvin2(void* dram, int32_t sp_addr, int32_t cols, int32_t rows);
int32_t gemmini_extended_mvin3(void* dram, int32_t sp_addr, int32_t cols, int32_t rows);
/* rows x cols elements from private memory to DRAM. From the accumulator: raw acc_t values with
 * GEMMINI_FULL_BIT, else scaled and activated elem_t values (config_st). */
int32_t gemmini_extended_mvout(void* dram, int32_t sp_addr, int32_t cols, int32_t rows);
/* WS: the next compute_preloaded loads B (bd_rows x bd_cols) into the array; both computes
 * write their result (c_rows x c_cols) to c (the accumulator, or the scratchpad saturated to
 * elem_t). OS: bd is D, the initial value of the PEs. */
int32_t gemmini_extended_preload(int32_t bd, int32_t c, int32_t bd_cols, int32_t bd_rows,
                                 int32_t c_cols, int32_t c_rows);
int32_t gemmini_extended_compute_preloaded(int32_t a, int32_t bd, int32_t a_cols,
                                           int32_t a_rows, int32_t bd_cols, int32_t bd_rows);
/* WS: reuse the weights already in the array. OS: keep accumulating in the PEs. */
int32_t gemmini_extended_compute_accumulated(int32_t a, int32_t bd, int32_t a_cols,
                                             int32_t a_rows, int32_t bd_cols, int32_t bd_rows);

/* ---- CISC loop instructions ----------------------------------------------------------------
 * gemmini_loop_ws: one I x J x K matmul in DIM x DIM blocks (pad_*: the missing rows / columns
 * of the last block), as libgemmini's loop_ws executes it: D (if not NULL) moved into
 * accumulator rows 0.., then for k, j, i: A block (i, k) moved in at j == 0 (if A is not NULL),
 * B block (k, j) at i == 0 (if B is not NULL), preload + compute into accumulator rows
 * (i * J + j) * DIM (overwriting at k == 0 unless ex_accumulate), C block (i, j) moved out at
 * k == K - 1 (if C is not NULL). A sits at scratchpad row 0, B ends at half the scratchpad:
 * the working set must fit half of each memory (double buffering). Strides are in elements; the
 * DRAM row strides of the moves are the configured ones (config_ld ids 0, 1, 2, config_st).
 * full_C = 0 moves C out scaled to elem_t through config_st's scale and activation (the act
 * operand, NO_ACTIVATION or RELU, is not read, as in libgemmini). Modelled: low_D = 0, no
 * transposes or resadd; spad ids 0 / 1 / 2. */
int32_t gemmini_loop_ws(int32_t I, int32_t J, int32_t K, int32_t pad_I, int32_t pad_J,
                        int32_t pad_K, void* A, void* B, void* D, void* C, int32_t A_stride,
                        int32_t B_stride, int32_t D_stride, int32_t C_stride, int32_t A_transpose,
                        int32_t B_transpose, int32_t full_C, int32_t low_D,
                        int32_t ex_accumulate, int32_t act, int32_t a_spad_id,
                        int32_t b_spad_id, int32_t is_resadd);

/* gemmini_loop_conv_ws: one convolution tile (batches x orows x ocols outputs, ochs output
 * channels, the whole reduction over krows x kcols x kchs) as libgemmini's loop_conv_ws runs
 * it: bias rows (or zeros with no_bias) into the accumulator, the input window (irows =
 * orows * stride + dilated krows - 1 rows; rows past irows - upad - dpad / columns past
 * icols - lpad - rpad are zeros) and the weights into the scratchpad (A from row 0, B ending at
 * half of it), every preload / compute accumulating onto the bias, the results moved out through
 * config_st's scale and activation. The accumulator half used alternates between calls that
 * have a bias and an output (libgemmini's static rows). NULL input / weights: reuse what the
 * previous call left. Strides and dims are in elements. Modelled: no pooling (pool_size 0 or
 * no_pool), no transposes, wrot180, downsample, input dilation or depthwise; a_spad_id /
 * b_spad_id 0; max_pixels_per_row 1. */
int32_t gemmini_loop_conv_ws(
    int32_t batch_size, int32_t in_row_dim, int32_t in_col_dim, int32_t in_channels,
    int32_t out_channels, int32_t out_row_dim, int32_t out_col_dim, int32_t pool_out_row_dim,
    int32_t pool_out_col_dim, int32_t stride, int32_t padding, int32_t kernel_dim,
    int32_t kernel_dilation, int32_t pool_size, int32_t pool_stride, int32_t pool_padding,
    int32_t batches, int32_t porows, int32_t pocols, int32_t pochs, int32_t krows, int32_t kcols,
    int32_t kchs, int32_t lpad, int32_t rpad, int32_t upad, int32_t dpad, int32_t plpad,
    int32_t prpad, int32_t pupad, int32_t pdpad, int32_t orows, int32_t ocols, void* weights,
    void* output, void* bias, void* input, int32_t no_bias, int32_t no_pool, int32_t downsample,
    int32_t wrot180, int32_t input_dilated, int32_t activation, int32_t trans_output_1203,
    int32_t trans_weight_1203, int32_t trans_weight_0132, int32_t trans_input_3120,
    int32_t max_pixels_per_row, int32_t in_stride, int32_t weight_stride, int32_t out_stride,
    int32_t dw, int32_t a_spad_id, int32_t b_spad_id);

/* ---- host side of the functional model (not part of the ISA) ------------------------------- */
enum gemmini_counter {
  GEMMINI_CONFIG_EX, GEMMINI_CONFIG_LD, GEMMINI_CONFIG_ST, GEMMINI_MVIN, GEMMINI_MVIN_ACC,
  GEMMINI_MVOUT, GEMMINI_PRELOAD, GEMMINI_COMPUTE_PRELOADED, GEMMINI_COMPUTE_ACCUMULATED,
  GEMMINI_FENCE, GEMMINI_FLUSH,
  GEMMINI_BYTES_IN, GEMMINI_BYTES_IN_ACC, GEMMINI_BYTES_OUT, GEMMINI_MACS,
  GEMMINI_SPAD_ROWS_USED, GEMMINI_ACC_ROWS_USED, /* highest row touched + 1 */
  GEMMINI_CALLS, /* gemmini_begin_op calls */
  GEMMINI_LOOP_WS, /* gemmini_loop_ws calls (6 RoCC instructions each on Gemmini) */
  GEMMINI_LOOP_COMMANDS, /* mvin / preload / compute / mvout the loop unit issued itself
                            (counted in their own counters too, but not issued by the CPU) */
  GEMMINI_LOOP_CONV_WS, /* gemmini_loop_conv_ws calls (7 RoCC instructions each on Gemmini) */
  GEMMINI_NUM_COUNTERS
};
const char* gemmini_counter_name(int32_t counter);
int32_t gemmini_num_counters(void);
/* Clear memories, configuration, counters and the error. */
int32_t gemmini_reset(void);
int32_t gemmini_status(void);
const char* gemmini_error_message(void);
/* Attribute the following commands to an operator id (generated code calls these). end_op
 * reports an error if results were moved out without a fence. */
int32_t gemmini_begin_op(int32_t op_id);
int32_t gemmini_end_op(void);
/* Counters of one operator (op_id) or of everything (op_id = -1); 0 if unknown. */
int64_t gemmini_counter(int32_t op_id, int32_t counter);
int32_t gemmini_num_ops(void);
int32_t gemmini_op_id(int32_t index);
/* DIM, scratchpad rows, accumulator rows, bytes per element, bytes per accumulator value. */
int32_t gemmini_hw_param(int32_t which);
/* Direct access for tests: copy one row of private memory (sp_addr as in mvout) to out. */
int32_t gemmini_peek_row(int32_t sp_addr, void* out);

#endif
