/* Functional model of the Gemmini-style ISA in gemmini.h: row-addressed scratchpad and
 * accumulator of the configured sizes, Gemmini's arithmetic (elem_t x elem_t summed into acc_t,
 * overwrite or accumulate), and counters of commands and bytes per operator.
 * Semantics follow libgemmini (gemmini.cc, Gemmini's model inside Spike), checked command for
 * command by tests/test_functional_vs_libgemmini.py; what is not modelled is an error, not
 * silent: every address is range-checked, and an unsupported setting stops the model. */
#include "gemmini.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_OPS 4096

static elem_t spad[SP_ROWS][DIM];
static acc_t acc[ACC_ROWS][DIM];
static acc_t pe[DIM][DIM];  /* WS: the weights in the array; OS: the partial sums */

static struct {
  int configured;
  int dataflow;
  int a_stride;
  int32_t load_stride[3];
  int load_configured[3];
  float load_scale[3];  /* mvin scale (scratchpad, and shrunk accumulator loads) */
  int load_shrunk[3];   /* accumulator mvin reads elem_t instead of acc_t */
  int32_t store_stride;
  int store_act;
  int store_configured;        /* mvout from the accumulator (not full): activation and scale */
  float store_scale;
  uint32_t preload_bd, preload_c;
  int preload_bd_rows, preload_bd_cols, preload_c_rows, preload_c_cols;
  int preloaded;      /* a preload waits for its compute */
  int pending_mvout;  /* results moved out since the last fence */
  uintptr_t pending_lo, pending_hi;  /* DRAM bytes they wrote (bounding range) */
  int status;
  char message[512];
  int current_op;     /* 1 + index into op_ids; 0: no operator */
  uint32_t conv_d_row, conv_c_row;  /* loop_conv_ws's accumulator half (libgemmini's statics) */
} st;

static int64_t totals[GEMMINI_NUM_COUNTERS];
static int64_t op_counters[MAX_OPS][GEMMINI_NUM_COUNTERS];
static int32_t op_ids[MAX_OPS];
static int num_ops;

static const char* counter_names[GEMMINI_NUM_COUNTERS] = {
  "config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
  "compute_preloaded", "compute_accumulated", "fence", "flush",
  "bytes_in", "bytes_in_acc", "bytes_out", "macs", "spad_rows_used", "acc_rows_used", "calls",
  "loop_ws", "loop_commands", "loop_conv_ws",
};

/* ---- bookkeeping ------------------------------------------------------------------------- */
static int fail(const char* cmd, const char* fmt, ...) {
  if (st.status == 0) {
    va_list ap;
    int n = snprintf(st.message, sizeof st.message, "%s: ", cmd);
    va_start(ap, fmt);
    vsnprintf(st.message + n, sizeof st.message - n, fmt, ap);
    va_end(ap);
    st.status = 1;
  }
  return st.status;
}

static void count(int counter, int64_t n) {
  totals[counter] += n;
  if (st.current_op > 0) op_counters[st.current_op - 1][counter] += n;
}

static void watermark(int counter, int64_t row_end) {
  if (totals[counter] < row_end) totals[counter] = row_end;
  if (st.current_op > 0 && op_counters[st.current_op - 1][counter] < row_end)
    op_counters[st.current_op - 1][counter] = row_end;
}

/* Wrapping int32 arithmetic, as the hardware's adders (signed overflow is undefined in C). */
static inline acc_t acc_add(acc_t a, acc_t b) {
#ifdef ELEM_T_IS_INT8
  return (acc_t)(int32_t)((uint32_t)a + (uint32_t)b);
#else
  return a + b;
#endif
}

static inline acc_t mac(acc_t sum, elem_t a, acc_t b) {
#ifdef ELEM_T_IS_INT8
  return (acc_t)(int32_t)((uint32_t)sum + (uint32_t)((int32_t)a * b));
#else
  return sum + (acc_t)a * b;
#endif
}

/* libgemmini's ROUND_NEAR_EVEN of gemmini_params.h: round half to even through long long. */
static float round_near_even(float x) {
  long long i = (long long)x;
  long long next = x < 0 ? (long long)x - 1 : (long long)x + 1;
  float rem = x - (float)i;
  rem = rem < 0 ? -rem : rem;
  return rem < 0.5f ? (float)i : (rem > 0.5f ? (float)next : (i % 2 == 0 ? (float)i : (float)next));
}

/* MVIN_SCALE / ACC_SCALE then saturation to elem_t, as libgemmini's mvin_scale / acc_scale. */
static elem_t scale_to_elem(acc_t x, float scale) {
#ifdef ELEM_T_IS_INT8
  float y = round_near_even((float)x * scale);
  int32_t v = y > 127 ? 127 : (y < -128 ? -128 : (int32_t)y);
  return (elem_t)v;
#else
  return (elem_t)(x * scale);
#endif
}

/* A result written to the scratchpad: saturated to elem_t (libgemmini's sys_shift by 0). */
static elem_t saturate(acc_t x) {
#ifdef ELEM_T_IS_INT8
  return (elem_t)(x > 127 ? 127 : (x < -128 ? -128 : x));
#else
  return (elem_t)x;
#endif
}

static int check_block(const char* cmd, int cols, int rows) {
  if (cols < 1 || cols > DIM || rows < 1 || rows > DIM)
    return fail(cmd, "a block of %d rows x %d columns; each must be in 1..%d", rows, cols, DIM);
  return 0;
}

/* Range of rows [row, row + (rows - 1) * stride] inside the memory the address selects. */
static int check_rows(const char* cmd, const char* what, uint32_t addr, int rows, int stride) {
  int is_acc = (addr & GEMMINI_ACC_BIT) != 0;
  uint32_t row = addr & GEMMINI_ROW_MASK;
  int64_t last = (int64_t)row + (int64_t)(rows - 1) * stride;
  int64_t limit = is_acc ? ACC_ROWS : SP_ROWS;
  if (last >= limit)
    return fail(cmd, "%s rows %u..%lld are outside the %s (%lld rows)", what, row,
                (long long)last, is_acc ? "accumulator" : "scratchpad", (long long)limit);
  watermark(is_acc ? GEMMINI_ACC_ROWS_USED : GEMMINI_SPAD_ROWS_USED, last + 1);
  return 0;
}

/* ---- configuration ----------------------------------------------------------------------- */
int32_t gemmini_flush(int32_t skip) {
  (void)skip;
  if (st.status) return st.status;
  count(GEMMINI_FLUSH, 1);
  return 0;
}

int32_t gemmini_fence(void) {
  if (st.status) return st.status;
  count(GEMMINI_FENCE, 1);
  st.pending_mvout = 0;
  st.pending_lo = st.pending_hi = 0;
  return 0;
}

int32_t gemmini_extended_config_ex(int32_t dataflow, int32_t act, int32_t sys_shift,
                                   int32_t a_stride, int32_t a_transpose, int32_t b_transpose) {
  const char* cmd = "config_ex";
  if (st.status) return st.status;
  if (dataflow != OUTPUT_STATIONARY && dataflow != WEIGHT_STATIONARY)
    return fail(cmd, "dataflow %d; expected %d (OS) or %d (WS)", dataflow, OUTPUT_STATIONARY,
                WEIGHT_STATIONARY);
  if (act != NO_ACTIVATION || sys_shift != 0 || a_transpose || b_transpose)
    return fail(cmd, "activation, shift and transposes are not modelled; pass 0");
  if (a_stride < 1 || a_stride > 0xFFFF)
    return fail(cmd, "A stride %d; expected 1..65535", a_stride);
  st.configured = 1;
  st.dataflow = dataflow;
  st.a_stride = a_stride;
  count(GEMMINI_CONFIG_EX, 1);
  return 0;
}

int32_t gemmini_extended3_config_ld(int32_t stride_bytes, float scale, int32_t shrunk,
                                    int32_t id) {
  if (st.status) return st.status;
  if (id < 0 || id > 2) return fail("config_ld", "mvin id %d; expected 0, 1 or 2", id);
  /* stride 0 is legal: every row reads the same DRAM row (a repeated bias) */
  if (stride_bytes < 0) return fail("config_ld", "stride %d bytes; must be >= 0", stride_bytes);
  st.load_stride[id] = stride_bytes;
  st.load_configured[id] = 1;
  st.load_scale[id] = scale;
  st.load_shrunk[id] = shrunk != 0;
  count(GEMMINI_CONFIG_LD, 1);
  return 0;
}

int32_t gemmini_extended_config_ld(int32_t stride_bytes, float scale) {
  return gemmini_extended3_config_ld(stride_bytes, scale, 0, 0);
}

int32_t gemmini_extended_config_st(int32_t stride_bytes, int32_t act, float scale) {
  if (st.status) return st.status;
  if (stride_bytes < 0) return fail("config_st", "stride %d bytes; must be >= 0", stride_bytes);
  if (act != NO_ACTIVATION && act != RELU)
    return fail("config_st", "activation %d; only none (0) and ReLU (1) are modelled", act);
  st.store_stride = stride_bytes;
  st.store_act = act;
  st.store_scale = scale;
  st.store_configured = 1;
  count(GEMMINI_CONFIG_ST, 1);
  return 0;
}

int32_t gemmini_config_st(int32_t stride_bytes) {
  return gemmini_extended_config_st(stride_bytes, NO_ACTIVATION, 1.0f);
}

/* ---- data movement ----------------------------------------------------------------------- */
static int32_t mvin(int id, void* dram, int32_t sp_addr, int32_t cols, int32_t rows) {
  static const char* names[3] = {"mvin", "mvin2", "mvin3"};
  const char* cmd = names[id];
  uint32_t addr = (uint32_t)sp_addr;
  if (st.status) return st.status;
  if (addr == GARBAGE_ADDR) return fail(cmd, "destination is GARBAGE_ADDR");
  if (check_block(cmd, cols, rows) || check_rows(cmd, "destination", addr, rows, 1))
    return st.status;
  if (dram != NULL && !st.load_configured[id])
    return fail(cmd, "no row stride configured (call gemmini_extended3_config_ld(stride, scale, "
                     "shrunk, %d))", id);
  uint32_t row = addr & GEMMINI_ROW_MASK;
  const char* base = (const char*)dram;
  if (base != NULL && st.pending_mvout) {
    /* the DMA does not order a mvin after a mvout of the same memory: a fence must */
    size_t size = (addr & GEMMINI_ACC_BIT) && !st.load_shrunk[id] ? sizeof(acc_t) : sizeof(elem_t);
    uintptr_t lo = (uintptr_t)base, hi = lo + (size_t)(rows - 1) * st.load_stride[id] + cols * size;
    if (lo < st.pending_hi && st.pending_lo < hi)
      return fail(cmd, "reads DRAM that a mvout wrote since the last fence; call gemmini_fence() "
                       "first");
  }
  if (addr & GEMMINI_ACC_BIT) {
    int accumulate = (addr & GEMMINI_ACCUMULATE_BIT) != 0;
    int shrunk = st.load_shrunk[id];  /* elem_t values, scaled; else acc_t values, unscaled */
    size_t size = shrunk ? sizeof(elem_t) : sizeof(acc_t);
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        acc_t v = 0;
        if (base && shrunk) {
          elem_t e;
          memcpy(&e, base + (size_t)i * st.load_stride[id] + j * size, sizeof e);
          v = scale_to_elem(e, st.load_scale[id]);
        } else if (base) {
          memcpy(&v, base + (size_t)i * st.load_stride[id] + j * size, sizeof v);
        }
        acc[row + i][j] = accumulate ? acc_add(acc[row + i][j], v) : v;
      }
    count(GEMMINI_MVIN_ACC, 1);
    count(GEMMINI_BYTES_IN_ACC, base ? (int64_t)rows * cols * size : 0);
  } else {
    if (addr & (GEMMINI_ACCUMULATE_BIT | GEMMINI_FULL_BIT))
      return fail(cmd, "scratchpad address 0x%08x has accumulator flags set", addr);
    for (int i = 0; i < rows; i++) {
      if (!base) {
        memset(spad[row + i], 0, cols * sizeof(elem_t));
        continue;
      }
      memcpy(spad[row + i], base + (size_t)i * st.load_stride[id], cols * sizeof(elem_t));
      if (st.load_scale[id] != 1.0f)
        for (int j = 0; j < cols; j++) spad[row + i][j] = scale_to_elem(spad[row + i][j], st.load_scale[id]);
    }
    count(GEMMINI_MVIN, 1);
    count(GEMMINI_BYTES_IN, base ? (int64_t)rows * cols * sizeof(elem_t) : 0);
  }
  return 0;
}

int32_t gemmini_extended_mvin(void* d, int32_t a, int32_t c, int32_t r) { return mvin(0, d, a, c, r); }
int32_t gemmini_extended_mvin2(void* d, int32_t a, int32_t c, int32_t r) { return mvin(1, d, a, c, r); }
int32_t gemmini_extended_mvin3(void* d, int32_t a, int32_t c, int32_t r) { return mvin(2, d, a, c, r); }

int32_t gemmini_extended_mvout(void* dram, int32_t sp_addr, int32_t cols, int32_t rows) {
  const char* cmd = "mvout";
  uint32_t addr = (uint32_t)sp_addr;
  if (st.status) return st.status;
  if (dram == NULL) return fail(cmd, "NULL destination");
  if (addr == GARBAGE_ADDR) return fail(cmd, "source is GARBAGE_ADDR");
  if (check_block(cmd, cols, rows) || check_rows(cmd, "source", addr, rows, 1)) return st.status;
  if (!st.store_configured) return fail(cmd, "no row stride configured (call gemmini_config_st)");
  uint32_t row = addr & GEMMINI_ROW_MASK;
  char* base = (char*)dram;
  size_t elem_size;
  if ((addr & GEMMINI_ACC_BIT) && (addr & GEMMINI_FULL_BIT)) {  /* raw acc_t values */
    for (int i = 0; i < rows; i++)
      memcpy(base + (size_t)i * st.store_stride, acc[row + i], cols * sizeof(acc_t));
    elem_size = sizeof(acc_t);
  } else if (addr & GEMMINI_ACC_BIT) {  /* scaled to elem_t, then the activation */
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        elem_t e = scale_to_elem(acc[row + i][j], st.store_scale);
        if (st.store_act == RELU && e < 0) e = 0;
        memcpy(base + (size_t)i * st.store_stride + j * sizeof(elem_t), &e, sizeof e);
      }
    elem_size = sizeof(elem_t);
  } else {
    for (int i = 0; i < rows; i++)
      memcpy(base + (size_t)i * st.store_stride, spad[row + i], cols * sizeof(elem_t));
    elem_size = sizeof(elem_t);
  }
  uintptr_t lo = (uintptr_t)base, hi = lo + (size_t)(rows - 1) * st.store_stride + cols * elem_size;
  if (!st.pending_mvout || lo < st.pending_lo) st.pending_lo = lo;
  if (!st.pending_mvout || hi > st.pending_hi) st.pending_hi = hi;
  st.pending_mvout = 1;
  count(GEMMINI_MVOUT, 1);
  count(GEMMINI_BYTES_OUT, (int64_t)rows * cols * elem_size);
  return 0;
}

/* ---- execution --------------------------------------------------------------------------- */
int32_t gemmini_extended_preload(int32_t bd, int32_t c, int32_t bd_cols, int32_t bd_rows,
                                 int32_t c_cols, int32_t c_rows) {
  const char* cmd = "preload";
  if (st.status) return st.status;
  if (!st.configured) return fail(cmd, "no dataflow configured (call gemmini_extended_config_ex)");
  if (check_block(cmd, bd_cols, bd_rows) || check_block(cmd, c_cols, c_rows)) return st.status;
  if ((uint32_t)bd != GARBAGE_ADDR) {
    if ((uint32_t)bd & GEMMINI_ACC_BIT)
      return fail(cmd, "preloading from the accumulator is not modelled");
    if (check_rows(cmd, "B/D", (uint32_t)bd, bd_rows, 1)) return st.status;
  }
  if ((uint32_t)c != GARBAGE_ADDR) {
    if (!((uint32_t)c & GEMMINI_ACC_BIT) && ((uint32_t)c & (GEMMINI_ACCUMULATE_BIT | GEMMINI_FULL_BIT)))
      return fail(cmd, "scratchpad result address 0x%08x has accumulator flags set", (uint32_t)c);
    if (check_rows(cmd, "C", (uint32_t)c, c_rows, 1)) return st.status;
  }
  st.preload_bd = (uint32_t)bd;
  st.preload_c = (uint32_t)c;
  st.preload_bd_rows = bd_rows;
  st.preload_bd_cols = bd_cols;
  st.preload_c_rows = c_rows;
  st.preload_c_cols = c_cols;
  st.preloaded = 1;
  count(GEMMINI_PRELOAD, 1);
  return 0;
}

static acc_t spad_value(uint32_t base, int i, int j, int rows, int cols, int stride) {
  if (base == GARBAGE_ADDR || i >= rows || j >= cols) return 0;
  return (acc_t)spad[base + (uint32_t)(i * stride)][j];
}

static int32_t compute(int preload, int32_t a, int32_t bd, int32_t a_cols, int32_t a_rows,
                       int32_t bd_cols, int32_t bd_rows) {
  const char* cmd = preload ? "compute_preloaded" : "compute_accumulated";
  uint32_t a_addr = (uint32_t)a, bd_addr = (uint32_t)bd;
  if (st.status) return st.status;
  if (!st.preloaded) return fail(cmd, "no preload before this compute");
  if (check_block(cmd, a_cols, a_rows) || check_block(cmd, bd_cols, bd_rows)) return st.status;
  if (a_addr != GARBAGE_ADDR) {
    if (a_addr & GEMMINI_ACC_BIT) return fail(cmd, "A from the accumulator is not modelled");
    if (check_rows(cmd, "A", a_addr, a_rows, st.a_stride)) return st.status;
  }
  if (bd_addr != GARBAGE_ADDR) {
    if (bd_addr & GEMMINI_ACC_BIT) return fail(cmd, "B/D from the accumulator is not modelled");
    if (check_rows(cmd, "B/D", bd_addr, bd_rows, 1)) return st.status;
  }
  st.preloaded = 0;
  acc_t out[DIM][DIM];
  if (st.dataflow == WEIGHT_STATIONARY) {
    if (preload)  /* load the weights B into the array */
      for (int k = 0; k < DIM; k++)
        for (int j = 0; j < DIM; j++)
          pe[k][j] = spad_value(st.preload_bd, k, j, st.preload_bd_rows, st.preload_bd_cols, 1);
    for (int i = 0; i < DIM; i++)
      for (int j = 0; j < DIM; j++) {
        acc_t sum = spad_value(bd_addr, i, j, bd_rows, bd_cols, 1);  /* D (bias) */
        for (int k = 0; k < DIM; k++)
          sum = mac(sum, (elem_t)spad_value(a_addr, i, k, a_rows, a_cols, st.a_stride), pe[k][j]);
        out[i][j] = sum;
      }
    count(GEMMINI_MACS, (int64_t)a_rows * a_cols * st.preload_c_cols);
  } else {  /* output stationary: D was preloaded into the PEs, B comes with the compute */
    if (preload)
      for (int i = 0; i < DIM; i++)
        for (int j = 0; j < DIM; j++)
          pe[i][j] = spad_value(st.preload_bd, i, j, st.preload_bd_rows, st.preload_bd_cols, 1);
    for (int i = 0; i < DIM; i++)
      for (int j = 0; j < DIM; j++) {
        acc_t sum = pe[i][j];
        for (int k = 0; k < DIM; k++)
          sum = mac(sum, (elem_t)spad_value(a_addr, i, k, a_rows, a_cols, st.a_stride),
                    spad_value(bd_addr, k, j, bd_rows, bd_cols, 1));
        pe[i][j] = out[i][j] = sum;
      }
    count(GEMMINI_MACS, (int64_t)a_rows * a_cols * bd_cols);
  }
  if (st.preload_c != GARBAGE_ADDR && (st.preload_c & GEMMINI_ACC_BIT)) {
    uint32_t row = st.preload_c & GEMMINI_ROW_MASK;
    int accumulate = (st.preload_c & GEMMINI_ACCUMULATE_BIT) != 0;
    for (int i = 0; i < st.preload_c_rows; i++)
      for (int j = 0; j < st.preload_c_cols; j++)
        acc[row + i][j] = accumulate ? acc_add(acc[row + i][j], out[i][j]) : out[i][j];
  } else if (st.preload_c != GARBAGE_ADDR) {  /* to the scratchpad: saturated to elem_t */
    uint32_t row = st.preload_c & GEMMINI_ROW_MASK;
    for (int i = 0; i < st.preload_c_rows; i++)
      for (int j = 0; j < st.preload_c_cols; j++) spad[row + i][j] = saturate(out[i][j]);
  }
  count(preload ? GEMMINI_COMPUTE_PRELOADED : GEMMINI_COMPUTE_ACCUMULATED, 1);
  return 0;
}

int32_t gemmini_extended_compute_preloaded(int32_t a, int32_t bd, int32_t a_cols, int32_t a_rows,
                                           int32_t bd_cols, int32_t bd_rows) {
  return compute(1, a, bd, a_cols, a_rows, bd_cols, bd_rows);
}

int32_t gemmini_extended_compute_accumulated(int32_t a, int32_t bd, int32_t a_cols,
                                             int32_t a_rows, int32_t bd_cols, int32_t bd_rows) {
  return compute(0, a, bd, a_cols, a_rows, bd_cols, bd_rows);
}

/* ---- host side --------------------------------------------------------------------------- */
const char* gemmini_counter_name(int32_t counter) {
  return counter >= 0 && counter < GEMMINI_NUM_COUNTERS ? counter_names[counter] : "";
}

int32_t gemmini_num_counters(void) { return GEMMINI_NUM_COUNTERS; }

int32_t gemmini_reset(void) {
  memset(spad, 0, sizeof spad);
  memset(acc, 0, sizeof acc);
  memset(pe, 0, sizeof pe);
  memset(&st, 0, sizeof st);
  memset(totals, 0, sizeof totals);
  memset(op_counters, 0, sizeof op_counters);
  num_ops = 0;
  return 0;
}

int32_t gemmini_status(void) { return st.status; }

const char* gemmini_error_message(void) { return st.status ? st.message : ""; }

static int find_op(int32_t op_id) {
  for (int i = 0; i < num_ops; i++)
    if (op_ids[i] == op_id) return i;
  return -1;
}

int32_t gemmini_begin_op(int32_t op_id) {
  if (st.status) return st.status;
  int i = find_op(op_id);
  if (i < 0) {
    if (num_ops == MAX_OPS) return fail("begin_op", "more than %d operators", MAX_OPS);
    i = num_ops++;
    op_ids[i] = op_id;
  }
  st.current_op = i + 1;
  count(GEMMINI_CALLS, 1);
  return 0;
}

int32_t gemmini_end_op(void) {
  if (st.status) return st.status;
  if (st.pending_mvout)
    return fail("end_op", "results were moved out without a gemmini_fence() before the CPU "
                          "reads them");
  st.current_op = 0;
  return 0;
}

int64_t gemmini_counter(int32_t op_id, int32_t counter) {
  if (counter < 0 || counter >= GEMMINI_NUM_COUNTERS) return 0;
  if (op_id == -1) return totals[counter];
  int i = find_op(op_id);
  return i < 0 ? 0 : op_counters[i][counter];
}

int32_t gemmini_num_ops(void) { return num_ops; }

int32_t gemmini_op_id(int32_t index) { return index >= 0 && index < num_ops ? op_ids[index] : -1; }

int32_t gemmini_hw_param(int32_t which) {
  switch (which) {
    case 0: return DIM;
    case 1: return SP_ROWS;
    case 2: return ACC_ROWS;
    case 3: return (int32_t)sizeof(elem_t);
    case 4: return (int32_t)sizeof(acc_t);
#ifdef ELEM_T_IS_INT8
    case 5: return 0;
#else
    case 5: return 1;
#endif
    default: return -1;
  }
}

int32_t gemmini_peek_row(int32_t sp_addr, void* out) {
  uint32_t addr = (uint32_t)sp_addr, row = addr & GEMMINI_ROW_MASK;
  if (addr & GEMMINI_ACC_BIT) {
    if (row >= ACC_ROWS) return 1;
    memcpy(out, acc[row], sizeof acc[row]);
  } else {
    if (row >= SP_ROWS) return 1;
    memcpy(out, spad[row], sizeof spad[row]);
  }
  return 0;
}

/* ---- CISC loops (libgemmini's loop_ws, gemmini.cc) ---------------------------------------- */
static int64_t commands_so_far(void) {
  static const int commands[] = {GEMMINI_MVIN, GEMMINI_MVIN_ACC, GEMMINI_MVOUT, GEMMINI_PRELOAD,
                                 GEMMINI_COMPUTE_PRELOADED, GEMMINI_COMPUTE_ACCUMULATED};
  int64_t n = 0;
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) n += totals[commands[i]];
  return n;
}

int32_t gemmini_loop_ws(int32_t I, int32_t J, int32_t K, int32_t pad_I, int32_t pad_J,
                        int32_t pad_K, void* A, void* B, void* D, void* C, int32_t A_stride,
                        int32_t B_stride, int32_t D_stride, int32_t C_stride, int32_t A_transpose,
                        int32_t B_transpose, int32_t full_C, int32_t low_D,
                        int32_t ex_accumulate, int32_t act, int32_t a_spad_id,
                        int32_t b_spad_id, int32_t is_resadd) {
  const char* cmd = "loop_ws";
  if (st.status) return st.status;
  if (I < 1 || J < 1 || K < 1 || I > 0xFFFF || J > 0xFFFF || K > 0xFFFF)
    return fail(cmd, "bounds I=%d J=%d K=%d; each must be in 1..65535 blocks", I, J, K);
  if (pad_I < 0 || pad_I >= DIM || pad_J < 0 || pad_J >= DIM || pad_K < 0 || pad_K >= DIM)
    return fail(cmd, "padding %d, %d, %d; each must be in 0..%d", pad_I, pad_J, pad_K, DIM - 1);
  /* act is not read: like libgemmini, a scaled mvout (full_C = 0) applies config_st's scale and
   * activation */
  if (low_D || (act != NO_ACTIVATION && act != RELU) || A_transpose || B_transpose || is_resadd)
    return fail(cmd, "only low_D = 0, no activation or ReLU, no transposes or resadd are "
                     "modelled");
  if (st.dataflow != WEIGHT_STATIONARY || !st.configured)
    return fail(cmd, "needs the weight-stationary dataflow configured (config_ex)");
  /* libgemmini stops the simulation here; the model reports it */
  int64_t spad_rows = ((int64_t)I * K + (int64_t)K * J) * DIM, acc_rows = (int64_t)I * J * DIM;
  if (spad_rows > SP_ROWS / 2 || acc_rows > ACC_ROWS / 2)
    return fail(cmd, "bounds too large for double buffering: %lld scratchpad rows (at most %d), "
                     "%lld accumulator rows (at most %d)", (long long)spad_rows, SP_ROWS / 2,
                (long long)acc_rows, ACC_ROWS / 2);
  uint32_t a_start = a_spad_id == 2 ? SP_ROWS / 2 : 0;
  uint32_t b_start = (b_spad_id == 2 ? SP_ROWS : SP_ROWS / 2) - (uint32_t)(K * J * DIM);
  const uint32_t d_start = GEMMINI_ACC_BIT;
  const uint32_t c_start = GEMMINI_ACC_BIT | GEMMINI_ACCUMULATE_BIT | (full_C ? GEMMINI_FULL_BIT : 0);
  const size_t c_size = full_C ? sizeof(acc_t) : sizeof(elem_t);
  count(GEMMINI_LOOP_WS, 1);
  int64_t before = commands_so_far();
  char *a = (char*)A, *b = (char*)B, *d = (char*)D, *c = (char*)C;
  if (d != NULL)
    for (int i = 0; i < I; i++)
      for (int j = 0; j < J; j++) {
        int rows = DIM - (i == I - 1 ? pad_I : 0), cols = DIM - (j == J - 1 ? pad_J : 0);
        mvin(2, d + ((size_t)i * D_stride + j) * DIM * sizeof(acc_t),
             (int32_t)(d_start + (uint32_t)((i * J + j) * DIM)), cols, rows);
      }
  for (int k = 0; k < K && !st.status; k++)
    for (int j = 0; j < J && !st.status; j++)
      for (int i = 0; i < I && !st.status; i++) {
        uint32_t a_addr = a_start + (uint32_t)((i * K + k) * DIM);
        uint32_t b_addr = b_start + (uint32_t)((k * J + j) * DIM);
        uint32_t c_addr = c_start + (uint32_t)((i * J + j) * DIM);
        int a_rows = DIM - (i == I - 1 ? pad_I : 0), a_cols = DIM - (k == K - 1 ? pad_K : 0);
        int b_rows = a_cols, b_cols = DIM - (j == J - 1 ? pad_J : 0);
        if (j == 0 && a != NULL)
          mvin(0, a + ((size_t)i * A_stride + k) * DIM * sizeof(elem_t), (int32_t)a_addr, a_cols,
               a_rows);
        if (i == 0 && b != NULL)
          mvin(1, b + ((size_t)k * B_stride + j) * DIM * sizeof(elem_t), (int32_t)b_addr, b_cols,
               b_rows);
        uint32_t out_addr = (!ex_accumulate && k == 0) ? c_addr & ~GEMMINI_ACCUMULATE_BIT : c_addr;
        gemmini_extended_preload(i == 0 ? (int32_t)b_addr : (int32_t)GARBAGE_ADDR,
                                 (int32_t)out_addr, b_cols, b_rows, b_cols, a_rows);
        compute(i == 0, (int32_t)a_addr, (int32_t)GARBAGE_ADDR, a_cols, a_rows, DIM, DIM);
        if (c != NULL && k == K - 1)
          gemmini_extended_mvout(c + ((size_t)i * C_stride + j) * DIM * c_size,
                                 (int32_t)c_addr, b_cols, a_rows);
      }
  count(GEMMINI_LOOP_COMMANDS, commands_so_far() - before);
  return st.status;
}

/* A loop_conv_ws move of `cols` columns (more than DIM allowed): one mvin per DIM columns, the
 * blocks `block_stride` rows apart (libgemmini's config_ld spad stride), DRAM rows `stride`
 * bytes apart; NULL moves zeros. */
static int32_t loop_mvin(int id, const char* dram, uint32_t addr, int cols, int rows,
                         int block_stride, int32_t stride, size_t elem) {
  st.load_stride[id] = stride;
  st.load_configured[id] = 1;
  st.load_scale[id] = 1.0f;
  st.load_shrunk[id] = 0;
  for (int c = 0; c < cols && !st.status; c += DIM) {
    int n = cols - c < DIM ? cols - c : DIM;
    mvin(id, dram ? (void*)(dram + (size_t)c * elem) : NULL,
         (int32_t)(addr + (uint32_t)((c / DIM) * block_stride)), n, rows);
  }
  return st.status;
}

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
    int32_t dw, int32_t a_spad_id, int32_t b_spad_id) {
  const char* cmd = "loop_conv_ws";
  (void)batch_size; (void)out_channels; (void)pool_out_row_dim; (void)pool_out_col_dim;
  (void)padding; (void)pool_stride; (void)pool_padding; (void)porows; (void)pocols;
  (void)plpad; (void)prpad; (void)pupad; (void)pdpad; (void)activation;
  if (st.status) return st.status;
  if ((!no_pool && pool_size > 1) || downsample || wrot180 || input_dilated || trans_output_1203 ||
      trans_weight_1203 || trans_weight_0132 || trans_input_3120 || dw || a_spad_id ||
      b_spad_id || max_pixels_per_row > 1)
    return fail(cmd, "only no pooling, transposes, wrot180, downsample, input dilation, "
                     "depthwise, spad ids or pixels per row are modelled");
  if (st.dataflow != WEIGHT_STATIONARY || !st.configured)
    return fail(cmd, "needs the weight-stationary dataflow configured (config_ex)");
  if (batches < 1 || orows < 1 || ocols < 1 || pochs < 1 || krows < 1 || kcols < 1 || kchs < 1 ||
      stride < 1 || kernel_dilation < 1 || lpad < 0 || rpad < 0 || upad < 0 || dpad < 0)
    return fail(cmd, "bounds batches=%d orows=%d ocols=%d ochs=%d krows=%d kcols=%d kchs=%d "
                     "stride=%d dilation=%d pads %d %d %d %d", batches, orows, ocols, pochs,
                krows, kcols, kchs, stride, kernel_dilation, lpad, rpad, upad, dpad);
  const int ochs = pochs;
  const int dkrows = krows + (kernel_dilation - 1) * (krows - 1);
  const int dkcols = kcols + (kernel_dilation - 1) * (kcols - 1);
  const int irows = orows * stride + dkrows - 1, icols = ocols * stride + dkcols - 1;
  const int irows_unpadded = irows - upad - dpad, icols_unpadded = icols - lpad - rpad;
  const int och_blocks = (ochs + DIM - 1) / DIM, ich_blocks = (kchs + DIM - 1) / DIM;
  const int64_t b_rows = (int64_t)och_blocks * kcols * krows * kchs;
  const int64_t a_rows = (int64_t)ich_blocks * batches * irows * icols;
  const int64_t c_rows = (int64_t)och_blocks * batches * orows * ocols;
  /* libgemmini does not check; overlapping regions would silently corrupt each other */
  if (a_rows + b_rows > SP_ROWS / 2 || c_rows > ACC_ROWS / 2)
    return fail(cmd, "tile too large for double buffering: %lld + %lld scratchpad rows (at most "
                     "%d), %lld accumulator rows (at most %d)", (long long)a_rows,
                (long long)b_rows, SP_ROWS / 2, (long long)c_rows, ACC_ROWS / 2);
  const uint32_t a_start = 0, b_start = (uint32_t)(SP_ROWS / 2 - b_rows);
  const uint32_t d_start = GEMMINI_ACC_BIT | st.conv_d_row;
  const uint32_t c_start = GEMMINI_ACC_BIT | GEMMINI_ACCUMULATE_BIT | st.conv_c_row;
  if (bias != NULL) st.conv_d_row = (st.conv_d_row + ACC_ROWS / 2) % ACC_ROWS;
  if (output != NULL) st.conv_c_row = (st.conv_c_row + ACC_ROWS / 2) % ACC_ROWS;
  count(GEMMINI_LOOP_CONV_WS, 1);
  int64_t before = commands_so_far();
  const char* in = (const char*)input;
  const char* w = (const char*)weights;
  char* out = (char*)output;
  if (bias != NULL) {  /* one bias row repeated (DRAM stride 0), or zeros */
    for (int b = 0; b < batches; b++)
      for (int orow = 0; orow < orows; orow++)
        for (int ocol = 0; ocol < ocols; ocol += DIM) {
          int I = ocols - ocol > DIM ? DIM : ocols - ocol;
          uint32_t addr = d_start + (uint32_t)(b * orows * ocols + orow * ocols + ocol);
          loop_mvin(2, no_bias ? NULL : (const char*)bias, addr, ochs, I,
                    batches * orows * ocols, 0, sizeof(acc_t));
        }
  }
  if (in != NULL) {
    const int spad_stride = batches * irows * icols;
    for (int b = 0; b < batches && !st.status; b++)
      for (int irow = -upad; irow < irows_unpadded + dpad; irow++)
        for (int icol = -lpad; icol < icols_unpadded + rpad;) {
          int I = icols_unpadded - icol > DIM ? DIM : icols_unpadded - icol;
          if (icol < 0) I = -icol > DIM ? DIM : -icol;
          else if (icol >= icols_unpadded)
            I = icols_unpadded + rpad - icol > DIM ? DIM : icols_unpadded + rpad - icol;
          int zeros = irow < 0 || irow >= irows_unpadded || icol < 0 || icol >= icols_unpadded;
          uint32_t addr = a_start + (uint32_t)(b * irows * icols + (irow + upad) * icols +
                                               (icol + lpad));
          const char* src = zeros ? NULL : in + ((size_t)(b * in_row_dim * in_col_dim +
                                                          irow * in_col_dim + icol) * in_stride);
          loop_mvin(0, src, addr, kchs, I, spad_stride, in_stride * (int32_t)sizeof(elem_t),
                    sizeof(elem_t));
          icol += I;
        }
  }
  if (w != NULL) {
    for (int krow = 0; krow < krows && !st.status; krow++)
      for (int kcol = 0; kcol < kcols; kcol++)
        for (int kch = 0; kch < kchs; kch += DIM) {
          int K = kchs - kch > DIM ? DIM : kchs - kch;
          uint32_t addr = b_start + (uint32_t)(krow * kcols * kchs + kcol * kchs + kch);
          const char* src = w + ((size_t)(krow * kernel_dim * in_channels + kcol * in_channels +
                                          kch) * weight_stride) * sizeof(elem_t);
          loop_mvin(1, src, addr, ochs, K, krows * kcols * kchs,
                    weight_stride * (int32_t)sizeof(elem_t), sizeof(elem_t));
        }
  }
  for (int och = 0; och < ochs && !st.status; och += DIM)
    for (int krow = 0; krow < krows; krow++)
      for (int kcol = 0; kcol < kcols; kcol++)
        for (int kch = 0; kch < kchs; kch += DIM) {
          int new_weights = 1;
          for (int b = 0; b < batches; b++)
            for (int orow = 0; orow < orows; orow++)
              for (int ocol = 0; ocol < ocols; ocol += DIM) {
                int irow = orow * stride + krow * kernel_dilation;
                int icol = ocol * stride + kcol * kernel_dilation;
                uint32_t c_addr = c_start + (uint32_t)((och / DIM) * batches * orows * ocols +
                                                       b * orows * ocols + orow * ocols + ocol);
                int I = ocols - ocol > DIM ? DIM : ocols - ocol;
                int J = ochs - och > DIM ? DIM : ochs - och;
                int K = kchs - kch > DIM ? DIM : kchs - kch;
                uint32_t a_addr = a_start + (uint32_t)((kch / DIM) * batches * irows * icols +
                                                       b * irows * icols + irow * icols + icol);
                uint32_t b_addr = b_start + (uint32_t)((och / DIM) * krows * kcols * kchs +
                                                       krow * kcols * kchs + kcol * kchs + kch);
                gemmini_extended_preload(new_weights ? (int32_t)b_addr : (int32_t)GARBAGE_ADDR,
                                         (int32_t)c_addr, J, K, J, I);
                compute(new_weights, (int32_t)a_addr, (int32_t)GARBAGE_ADDR, K, I, J, I);
                new_weights = 0;
              }
        }
  if (out != NULL && !st.status) {
    for (int b = 0; b < batches; b++)
      for (int orow = 0; orow < orows; orow++)
        for (int ocol = 0; ocol < ocols; ocol += DIM) {
          int I = ocols - ocol > DIM ? DIM : ocols - ocol;
          for (int och = 0; och < ochs; och += DIM) {
            int J = ochs - och > DIM ? DIM : ochs - och;
            uint32_t c_addr = c_start + (uint32_t)((och / DIM) * batches * orows * ocols +
                                                   b * orows * ocols + orow * ocols + ocol);
            gemmini_extended_mvout(out + ((size_t)(b * out_row_dim * out_col_dim +
                                                   orow * out_col_dim + ocol) * out_stride + och) *
                                             sizeof(elem_t),
                                   (int32_t)c_addr, J, I);
          }
        }
  }
  count(GEMMINI_LOOP_COMMANDS, commands_so_far() - before);
  return st.status;
}
