/* The Gemmini ISA symbols for a process that JIT-compiles a lowered module without linking
 * its functional model (relax.VirtualMachine(executable.mod, ...) instead of the Executable).
 *
 * tvm_cosa loads this library process-wide (RTLD_GLOBAL) when it lowers an operator for
 * Gemmini, so that LLVM's JIT finds the symbols instead of killing the process. Every command
 * fails: gemmini_status() is non-zero, so the generated code's check raises a Python error,
 * and the first call says on stderr what to do. Modules built the standard way link their own
 * functional model (protected symbols), so they never reach these. */
#include <stdint.h>
#include <stdio.h>

static const char HINT[] =
    "tvm_cosa: this module calls the Gemmini ISA but was JIT-compiled without the functional "
    "model. Run it as relax.VirtualMachine(tvm.compile(mod, target='llvm'), tvm.cpu()) (the "
    "Executable links the model), or build it with tvm_cosa.target.gemmini.flow.load(mod, "
    "config).";

static int warned;

static int32_t refuse(void) {
  if (!warned) {
    fprintf(stderr, "%s\n", HINT);
    warned = 1;
  }
  return 1;
}

int32_t gemmini_flush(int32_t skip) { (void)skip; return refuse(); }
int32_t gemmini_fence(void) { return refuse(); }
int32_t gemmini_extended_config_ex(int32_t a, int32_t b, int32_t c, int32_t d, int32_t e,
                                   int32_t f) {
  (void)a; (void)b; (void)c; (void)d; (void)e; (void)f;
  return refuse();
}
int32_t gemmini_extended_config_ld(int32_t s, int32_t id) { (void)s; (void)id; return refuse(); }
int32_t gemmini_extended3_config_ld(int32_t s, float scale, int32_t shrunk, int32_t id) {
  (void)s; (void)scale; (void)shrunk; (void)id;
  return refuse();
}
int32_t gemmini_extended_config_st(int32_t s, int32_t act, float scale) {
  (void)s; (void)act; (void)scale;
  return refuse();
}
int32_t gemmini_config_st(int32_t s) { (void)s; return refuse(); }
/* loop_ws's 23 operands are never read: the call only has to resolve and fail */
int32_t gemmini_loop_ws(void) { return refuse(); }
/* nor loop_conv_ws's 52 */
int32_t gemmini_loop_conv_ws(void) { return refuse(); }
#define MOVE(name) \
  int32_t name(void* d, int32_t a, int32_t c, int32_t r) { \
    (void)d; (void)a; (void)c; (void)r; return refuse(); }
MOVE(gemmini_extended_mvin)
MOVE(gemmini_extended_mvin2)
MOVE(gemmini_extended_mvin3)
MOVE(gemmini_extended_mvout)
#define SIX(name) \
  int32_t name(int32_t a, int32_t b, int32_t c, int32_t d, int32_t e, int32_t f) { \
    (void)a; (void)b; (void)c; (void)d; (void)e; (void)f; return refuse(); }
SIX(gemmini_extended_preload)
SIX(gemmini_extended_compute_preloaded)
SIX(gemmini_extended_compute_accumulated)
int32_t gemmini_begin_op(int32_t op_id) { (void)op_id; return refuse(); }
int32_t gemmini_end_op(void) { return refuse(); }
int32_t gemmini_status(void) { return refuse(); }
const char* gemmini_error_message(void) { return HINT; }
