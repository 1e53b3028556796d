"""CoSAPass: schedule every conv2d and matmul of a Relax module with CoSA and lower it to TIR.

    mod = tvm.transform.Sequential([CoSAPass("gemmini")])(mod)
    print(pass_.report)

What the pass does to the module:
1. extract: one `OpInfo` per conv2d / matmul call (and per unsupported multiply-accumulate op);
2. solve each unique shape once (`problem.key()`), in `jobs` worker processes, one solver thread
   each; the persistent cache answers shapes solved before (same architecture, objective and
   solver version);
3. check each schedule (Timeloop when installed, the built-in model otherwise);
4. lower (when `lower=True`): each scheduled call is legalized with TVM's own legalizer and its
   PrimFunc replaced by the scheduled one (`lower_generic`, or the target's lowering for a Gemmini
   architecture). Other operators are left untouched for the build pipeline to legalize.

A layer that cannot be scheduled (infeasible, solver failure, check failure, lowering failure)
keeps TVM's default schedule, raises a `FallbackWarning` and is marked `fallback` with the reason
in `pass_.report`. The pass never fails the compile for one layer.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import tvm
import tvm_ffi
from tvm import relax

from ..architecture import Architecture
from ..errors import CoSAError, InputError
from ..mapping import Mapping
from ..scheduler import Objective
from ..solvers import solver_version  # a module name, so tests can stand in a version
from . import solve as solve_mod
from .cache import ScheduleCache, answers, cache_key, solve_quality
from .extract import CONV2D, MATMUL, OpInfo, count_other_ops, extract, op_info
from .lowering import LoweringError, canonical_matmul_shapes, lower_generic, mark_scheduled
from .names import c_identifiers
from .report import (FALLBACK, SCHEDULED, UNSUPPORTED, LayerRecord, Report,
                     module_exactness_notes, module_notes)

CHECK_BACKENDS = ("auto", "timeloop", "builtin")
KNOWN_SOLVERS = ("auto", "highs", "gurobi")


class FallbackWarning(UserWarning):
    """A layer keeps TVM's default schedule (the report says why)."""


# ---- arguments ------------------------------------------------------------------------------
def resolve_arch(arch) -> Architecture:
    """An Architecture, a preset name ("gemmini", "simba"), a path to an architecture YAML, or a
    target configuration with an `architecture()` method (e.g. a GemminiConfig)."""
    if isinstance(arch, Architecture):
        return arch
    if callable(getattr(arch, "architecture", None)):
        return resolve_arch(arch.architecture())
    if isinstance(arch, (str, os.PathLike)):
        from ..architecture_yaml import load_architecture

        return load_architecture(arch)
    raise InputError(f"arch must be an Architecture, a preset name (gemmini, simba) or a path to "
                     f"an architecture YAML, got {type(arch).__name__} {arch!r}", field="arch")


def _check_choice(value, choices, name):
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}", field=name)


def _positive_or_none(value, name, kind=float):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"{name} must be a positive number or None, got {value!r}", field=name)
    return kind(value)


# ---- target hooks ---------------------------------------------------------------------------
MATCHED_PRESETS = ("gemmini",)  # preset names whose element type follows the module


def matched_architecture(spec, arch: Architecture, ops) -> tuple:
    """(the Architecture to schedule for, a note saying how it was chosen).

    Given the preset name "gemmini", the Gemmini configuration whose element type matches the
    module's conv2d / matmul operands (the preset is int8; a float32 model gets
    GemminiConfig(dtype="float32"), whose capacities are in float32 words). Anything else, an
    Architecture object in particular, is used as it is."""
    if not (isinstance(spec, str) and spec in MATCHED_PRESETS):
        return arch, ""
    from ..target.gemmini.config import GemminiConfig, matching_dtype

    base = GemminiConfig()
    operand_dtypes = sorted({op.dtype for op in ops if op.supported})
    dtype = matching_dtype(operand_dtypes, default=base.dtype)
    if dtype == base.dtype:
        return arch, f"preset {spec} ({dtype})" if operand_dtypes else ""
    return (GemminiConfig(dtype=dtype).architecture(),
            f"preset {spec} matched to the module's {dtype} operands: "
            f"GemminiConfig(dtype={dtype!r})")


def architecture_dtype(arch: Architecture) -> str:
    """The operand type a target architecture computes ("" when it does not say)."""
    if target_lowering(arch) is None:
        return ""
    from ..target.gemmini.config import GemminiConfig

    try:
        return GemminiConfig.from_architecture(arch).dtype
    except CoSAError:
        return ""


def target_lowering(arch):
    """The lowering function of `arch`'s target, or None to use `lower_generic`.

    Architectures whose name starts with "gemmini" use
    `tvm_cosa.target.gemmini.lowering.lower(prim_func, op, mapping, arch)` when that module is
    importable. It may raise NotImplementedError for an operator it does not cover; the pass then
    uses `lower_generic` and records the reason in the report's `lowering` field.
    """
    if not arch.name.lower().startswith("gemmini"):
        return None
    try:
        module = importlib.import_module("tvm_cosa.target.gemmini.lowering")
    except ImportError:
        return None
    return getattr(module, "lower", None)


def lower_op(prim_func, op, mapping, arch):
    """(scheduled PrimFunc, lowering name, note). Raises LoweringError."""
    target = target_lowering(arch)
    note = ""
    if target is not None:
        try:
            return mark_scheduled(target(prim_func, op, mapping, arch)), "gemmini", ""
        except NotImplementedError as err:
            note = f"gemmini lowering does not cover this op ({err}); generic lowering used"
        except Exception as err:  # noqa: BLE001 - report it and keep the default
            raise LoweringError(f"gemmini lowering failed: {type(err).__name__}: {err}") from err
    return lower_generic(prim_func, op, mapping, arch), "generic", note


# ---- per-shape results ----------------------------------------------------------------------
@dataclass
class _Result:
    """What the pass knows about one unique shape."""

    mapping: Optional[Mapping] = None
    error: Optional[tuple] = None  # (kind, message)
    evaluation: Optional[dict] = None
    solve_time_s: float = 0.0
    cached: bool = False
    records: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mapping is not None and self.error is None


@tvm.transform.module_pass(opt_level=0, name="CoSAPass")
class CoSAPass:
    """Schedule every conv2d and matmul of a Relax module for `arch` with CoSA.

    arch: an Architecture, a preset name ("gemmini", "simba"), a path to an architecture YAML, or
    a GemminiConfig. The preset name "gemmini" follows the module's element type: float32
    conv2d / matmul operands are scheduled and lowered for GemminiConfig(dtype="float32") (see
    `matched_architecture`); an Architecture is used as it is (layers of another type then keep
    the generic lowering, and the report says why).
    solver: "auto", "highs" or "gurobi". objective: a `tvm_cosa.scheduler.Objective` or None (the
    scheduler's default). check: "auto" (Timeloop when installed, else the built-in model),
    "timeloop", "builtin", or None to skip checking. cache: None (default directory,
    $TVM_COSA_CACHE or ~/.cache/tvm_cosa), a directory, or False. lower: apply the schedules to
    TIR (False: only extract, solve and report). jobs: worker processes for solving.
    uneven: let the MILP choose each tensor's tile boundaries (`schedule(..., uneven=True)`);
    the generic TIR lowering puts each tensor's cache stage at its own loop, and so does the
    Gemmini lowering (each tensor's mvin / mvout at its own boundary).
    polish: the exact-model polish after each solve (`schedule(..., polish=)`; False saves
    about 0.02 s per layer on Gemmini's 16x16 array, 0.07 s on simba).
    After the pass has run, `report` holds the per-layer `Report` and `arch` the architecture
    the module was scheduled for.
    """

    def __init__(self, arch, solver="auto", objective=None, check="auto", cache=None,
                 lower=True, jobs=2, time_limit=None, mip_gap=None, verify_build=True,
                 progress=None, uneven=False, polish=True):
        self.arch_spec = arch
        self.requested_arch = resolve_arch(arch)
        self.arch = self.requested_arch  # after a run: the architecture that run scheduled for
        _check_choice(solver, KNOWN_SOLVERS, "solver")
        if check is not None:
            _check_choice(check, CHECK_BACKENDS, "check")
        if objective is not None and not callable(getattr(objective, "key", None)):
            raise InputError(f"objective must be a tvm_cosa.scheduler.Objective or None, got "
                             f"{objective!r}", field="objective")
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise InputError(f"jobs must be a positive integer, got {jobs!r}", field="jobs")
        self.objective = objective if objective is not None else Objective()
        self.solver, self.check = solver, check
        self.cache = ScheduleCache(cache)
        self.lower, self.jobs, self.verify_build = bool(lower), jobs, bool(verify_build)
        self.time_limit = _positive_or_none(time_limit, "time_limit")
        self.mip_gap = _positive_or_none(mip_gap, "mip_gap")
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        if not isinstance(uneven, bool):
            raise InputError(f"uneven must be True or False, got {uneven!r}", field="uneven")
        self.uneven = uneven
        if not isinstance(polish, bool):
            raise InputError(f"polish must be True or False, got {polish!r}", field="polish")
        self.polish = polish
        self.report: Optional[Report] = None

    def transform_module(self, mod, ctx):
        return _Compilation(self).run(mod)


class _Compilation:
    """One run of the pass on one module."""

    def __init__(self, options: CoSAPass):
        self.o = options
        self.arch = options.requested_arch
        self.arch_note = ""
        self.results: dict = {}  # problem key -> _Result
        self.lowered: dict = {}  # operator index -> (lowering name, note) or error message
        self.kernels: dict = {}  # operator index -> name of the scheduled PrimFunc it calls
        self.timings: dict = {}

    # ---- driver ---------------------------------------------------------------------------
    def run(self, mod):
        start = time.perf_counter()
        hits0, misses0 = self.o.cache.hits, self.o.cache.misses
        self.objective_key = self.o.objective.key()
        mod = c_identifiers(mod)  # model names reach the C of the PrimFuncs legalized from here
        if self.o.uneven:  # another schedule space: its own cache entries
            self.objective_key += ("uneven",)
        if not self.o.polish:  # the MILP's schedules as solved: their own cache entries
            self.objective_key += ("no-polish",)
        self.notes = module_notes(mod)  # e.g. GemminiPrepare's layout fallbacks
        try:
            self.solver_version = solver_version(self.o.solver)
        except CoSAError as err:  # e.g. gurobi asked for but missing: each layer will say so
            self.solver_version = f"unavailable: {err}"
        ops = extract(mod)
        self.arch, self.arch_note = matched_architecture(self.o.arch_spec, self.arch, ops)
        self.o.arch = self.arch
        self.arch_dtype = architecture_dtype(self.arch)
        other_ops = count_other_ops(mod)
        records = [self._record(op) for op in ops]
        self._group(ops, records)
        self.timings["extract_s"] = time.perf_counter() - start

        t = time.perf_counter()
        self._solve_all(ops)
        self.timings["solve_s"] = time.perf_counter() - t

        if self.o.lower:
            t = time.perf_counter()
            mod = self._lower_module(mod)
            self.timings["lower_s"] = time.perf_counter() - t
        self._finish_records()
        self.timings["total_s"] = time.perf_counter() - start
        self.o.report = Report(
            arch=self.arch.name, arch_dtype=self.arch_dtype,
            arch_note=self.arch_note, solver=self.o.solver,
            objective=str(getattr(self.o.objective, "name", self.o.objective)),
            check=str(self.o.check), records=records,
            other_ops=other_ops,
            timings={k: round(v, 4) for k, v in self.timings.items()},
            cache={"hits": self.o.cache.hits - hits0, "misses": self.o.cache.misses - misses0,
                   "path": str(self.o.cache.path) if self.o.cache.enabled else None},
            exactness_notes=module_exactness_notes(mod),
            notes=self.notes)
        return mod

    def _record(self, op: OpInfo) -> LayerRecord:
        rec = LayerRecord(index=op.index, op=op.kind, shape=op.shape_text(),
                          status=UNSUPPORTED if not op.supported else SCHEDULED,
                          reason=op.reason, name=op.name,
                          layout=op.layout if op.kind == "conv2d" else "", dtype=op.dtype,
                          arch=self.arch.name, arch_dtype=self.arch_dtype)
        if op.supported:
            rec.macs = op.problem.macs
            rec.problem = " ".join(f"{d}={n}" for d, n in op.problem.sizes)
        return rec

    def _group(self, ops, records):
        """Identical shapes share one _Result; later ones point at the first in the report."""
        first: dict = {}
        for op, rec in zip(ops, records):
            if not op.supported:
                continue
            key = op.problem.key()
            if key in first:
                rec.same_as = first[key]
            else:
                first[key] = op.index
                self.results[key] = _Result()
            self.results[key].records.append(rec)
        self.problems = {op.problem.key(): op.problem for op in ops if op.supported}
        self.ops = ops

    # ---- solving --------------------------------------------------------------------------
    def _cache_key(self, problem) -> str:
        return cache_key(problem, self.arch, self.objective_key, self.o.solver,
                         self.solver_version)

    def _solve_all(self, ops):
        todo = []
        for key, result in self.results.items():
            entry = self.o.cache.get(self._cache_key(self.problems[key]), accept=self._answers)
            if entry is not None and self._use_cached(result, entry, self.problems[key]):
                continue
            todo.append(key)
        for key, out in self._run_workers(todo):
            result = self.results[key]
            result.solve_time_s = out["solve_time_s"]
            result.error = out["error"]
            result.evaluation = out["evaluation"]
            if out["mapping"] is not None:
                result.mapping = Mapping.from_dict(out["mapping"])
                if result.error is None:
                    self.o.cache.put(self._cache_key(self.problems[key]),
                                     {"mapping": out["mapping"], "evaluation": out["evaluation"],
                                      "check": self.o.check, "solve_time_s": out["solve_time_s"],
                                      "quality": solve_quality(result.mapping.info,
                                                               self.o.time_limit),
                                      "problem": str(self.problems[key]),
                                      "arch": self.arch.name})

    def _answers(self, entry: dict) -> bool:
        """A cached schedule solved at least as hard as this compile asks (time limit, gap)."""
        return answers(entry.get("quality"), self.o.time_limit, self.o.mip_gap)

    def _use_cached(self, result: _Result, entry: dict, problem) -> bool:
        """Take a cached mapping; re-check it when it was checked with another backend."""
        try:
            mapping = Mapping.from_dict(entry["mapping"])
        except (KeyError, TypeError, ValueError):
            return False
        from ..validity import is_valid

        if not is_valid(mapping, problem, self.arch):
            return False
        evaluation = entry.get("evaluation")
        reusable = evaluation is not None and self.o.check in ("auto", evaluation.get("backend"))
        if self.o.check and not reusable:
            evaluation, error = solve_mod.check_layer(mapping, problem, self.arch, self.o.check)
            if error:
                result.error = error
        result.mapping, result.evaluation, result.cached = mapping, evaluation, True
        result.solve_time_s = 0.0
        return True

    def _run_workers(self, keys):
        """Yield (key, worker output) for each shape, solving in `jobs` processes."""
        if not keys:
            return
        kwargs = dict(objective=self.o.objective, solver=self.o.solver, check=self.o.check,
                      time_limit=self.o.time_limit, mip_gap=self.o.mip_gap,
                      uneven=self.o.uneven, polish=self.o.polish)
        bar = _progress(len(keys), self.o.progress, f"CoSA on {self.arch.name}")
        jobs = min(self.o.jobs, len(keys))
        if jobs == 1:
            for key in keys:
                yield key, solve_mod.solve_layer(self.problems[key], self.arch, **kwargs)
                bar.update()
            bar.close()
            return
        with cf.ProcessPoolExecutor(jobs, mp_context=_mp_context()) as pool:
            futures = {pool.submit(solve_mod.solve_layer, self.problems[k], self.arch, **kwargs): k
                       for k in keys}
            for fut in cf.as_completed(futures):
                key = futures[fut]
                try:
                    out = fut.result()
                except Exception as err:  # noqa: BLE001 - a dead worker is a solver failure
                    out = {"mapping": None, "evaluation": None, "solve_time_s": 0.0,
                           "error": (solve_mod.SOLVER, f"worker failed: {err!r}")}
                bar.update()
                yield key, out
        bar.close()

    # ---- lowering -------------------------------------------------------------------------
    def _lower_module(self, mod):
        mutator = _ScheduledLegalizer(mod, self)
        mod = mutator.run()
        if any(isinstance(o, tuple) and o[0] == "gemmini" for o in self.lowered.values()):
            try:
                mod = _with_target_runtime(mod, self.arch)
            except CoSAError as err:  # e.g. no C compiler: the module is still whole
                note = (f"the Gemmini functional model could not be attached ({err}); build "
                        f"with tvm_cosa.target.gemmini.flow.load or codegen.emit_c")
                self.notes.append(note)
                warnings.warn(f"CoSAPass: {note}", FallbackWarning, stacklevel=2)
        return mod

    def lower_call(self, gvar_func, ops, kernel=""):
        """The scheduled PrimFunc shared by the calls `ops`, or None (they keep the default);
        the outcome is recorded per operator for the report."""
        op = ops[0]
        try:
            func, name, note = lower_op(gvar_func, op, self.results[op.problem.key()].mapping,
                                        self.arch)
            if self.o.verify_build and name == "generic":
                self._build_check(func)
            outcome = (name, note)
        except LoweringError as err:
            func, outcome = None, f"lowering failure: {err}"
        except Exception as err:  # noqa: BLE001 - the build of the scheduled function failed
            func, outcome = None, (f"lowering failure: llvm build failed: {type(err).__name__}: "
                                   f"{str(err).strip().splitlines()[-1][:200]}")
        for o in ops:
            self.lowered[o.index] = outcome
            if func is not None:
                self.kernels[o.index] = kernel
        if func is None:
            warnings.warn(f"CoSAPass: {len(ops)} layer(s) {op.shape_text()} ({op.kind}) keep "
                          f"TVM's default schedule: {outcome}", FallbackWarning, stacklevel=2)
        return func

    def index_of(self, info: OpInfo, position: int) -> OpInfo:
        """`info` with the index extraction gave the call at `position` (same module order)."""
        if position < len(self.ops) and self.ops[position].problem is not None and \
                self.ops[position].problem.key() == info.problem.key():
            info.index = position
        else:  # order differs: any operator of the same shape stands for it
            info.index = self.results[info.problem.key()].records[0].index
        return info

    def _build_check(self, func):
        """Compile the scheduled PrimFunc alone for llvm, so a bad schedule falls back per layer
        instead of failing the model's build; functions that built before are skipped."""
        key = f"{tvm_ffi.structural_hash(func):016x}-tvm{tvm.__version__}"
        if self.o.cache.has_built(key):
            return
        tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                    target="llvm")
        self.o.cache.mark_built(key)

    def wants(self, op: Optional[OpInfo]) -> bool:
        if op is None or not op.supported:
            return False
        result = self.results.get(op.problem.key())
        return result is not None and result.ok

    # ---- report ---------------------------------------------------------------------------
    def _finish_records(self):
        for key, result in self.results.items():
            problem = self.problems[key]
            bound = _lower_bound(problem, self.arch)
            for rec in result.records:
                rec.lower_bound_cycles = bound
                rec.cached = result.cached
                rec.solve_time_s = result.solve_time_s if rec.same_as is None else 0.0
                if result.mapping is not None:
                    rec.schedule = result.mapping.short(self.arch)
                    rec.solver = str(result.mapping.info.get("solver", self.o.solver))
                    rec.solver_status = str(result.mapping.info.get("status", "ok"))
                elif result.error:
                    rec.solver_status = "failed"
                ev = result.evaluation or {}
                rec.cycles, rec.energy_pJ = ev.get("cycles"), ev.get("energy_pJ")
                rec.utilization = ev.get("utilization")
                rec.energy_estimated = ev.get("energy_estimated")
                rec.check_backend = ev.get("backend", "")
                lowered = self.lowered.get(rec.index)
                rec.kernel = self.kernels.get(rec.index, "")
                if result.error is not None:
                    kind, message = result.error
                    rec.status, rec.reason = FALLBACK, f"{kind}: {message}"
                elif isinstance(lowered, str):
                    rec.status, rec.reason = FALLBACK, lowered
                elif lowered is not None:
                    rec.lowering, rec.reason = lowered
            if result.error is not None:
                first = result.records[0]
                warnings.warn(f"CoSAPass: {len(result.records)} layer(s) {first.shape} "
                              f"({first.op}) keep TVM's default schedule: {first.reason}",
                              FallbackWarning, stacklevel=2)


@relax.expr_functor.mutator
class _ScheduledLegalizer(relax.PyExprMutator):
    """Legalize exactly the scheduled conv2d / matmul calls with TVM's own legalizer, then swap
    each resulting PrimFunc for the scheduled one. The link from call to PrimFunc is the GlobalVar
    the legalizer returns, so no binding names are involved; identical PrimFuncs are deduplicated
    by the BlockBuilder and scheduled once."""

    def __init__(self, mod, compilation: _Compilation):
        super().__init__(mod)
        self.mod_ = mod
        self.compilation = compilation
        self.legalizers = {name: tvm.ir.Op.get(name).get_attr("FLegalize")
                           for name in (CONV2D, MATMUL)}
        self.pending: dict = {}  # GlobalVar name -> [OpInfo of the calls using it]
        self.position = 0  # multiply-accumulate calls seen so far, in extraction order

    def run(self):
        for gvar, func in list(self.mod_.functions.items()):
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        mod = self.builder_.get()
        for name, ops in self.pending.items():
            gvar = mod.get_global_var(name)
            scheduled = self.compilation.lower_call(mod[gvar], ops, name)
            if scheduled is not None:
                mod[gvar] = scheduled
        return mod

    def visit_call_(self, call):
        info = op_info(call)
        new_call = super().visit_call_(call)
        if info is None:
            return new_call
        self.position += 1
        if not self.compilation.wants(info):
            return new_call
        info = self.compilation.index_of(info, self.position - 1)
        new_call = self.builder_.normalize(new_call)
        out_shape = None
        if info.kind == "matmul":
            new_call, out_shape = self._canonical_matmul(new_call, info)
        legalized = self.legalizers[info.op](self.builder_, new_call)
        if not isinstance(legalized, relax.Call) or legalized.op != tvm.ir.Op.get(
                "relax.call_tir"):
            return new_call if out_shape is None else relax.op.reshape(
                self.builder_.emit(new_call), out_shape)
        self.pending.setdefault(legalized.args[0].name_hint, []).append(info)
        if out_shape is None:
            return legalized
        return relax.op.reshape(self.builder_.emit(legalized), out_shape)

    def _canonical_matmul(self, call, info):
        """Reshape the operands so each Problem dimension has one axis: (M, K) x (K, N), or
        (B, M, K) x (B, K, N) (see lowering.canonical_matmul_shapes). Returns (call, shape to
        reshape the result back to, or None when the call already has those shapes)."""
        a_shape, w_shape, out_shape = canonical_matmul_shapes(info)
        if (info.shapes["input"], info.shapes["weight"]) == (a_shape, w_shape):
            return call, None
        a, w = call.args
        a = self.builder_.emit(relax.op.reshape(a, a_shape))
        w = w if info.shapes["weight"] == w_shape else self.builder_.emit(
            relax.op.reshape(w, w_shape))
        canonical = relax.op.matmul(a, w, out_dtype=call.attrs.out_dtype or None)
        return self.builder_.normalize(canonical), info.shapes["output"]


# ---- helpers --------------------------------------------------------------------------------
def _with_target_runtime(mod, arch):
    """The module with what TVM's standard build needs to run the target's calls: for Gemmini,
    its functional model as an external library (tvm.compile + VirtualMachine just work)."""
    from ..target.gemmini.config import config_for
    from ..target.gemmini.vm import attach_functional_model

    return attach_functional_model(mod, config_for(arch))


def _lower_bound(problem, arch) -> Optional[float]:
    try:
        from ..cost_model import lower_bound_cycles

        return float(lower_bound_cycles(problem, arch))
    except Exception:  # noqa: BLE001 - the bound is informative; the report leaves it blank
        return None


def _mp_context():
    """fork on Linux (fast: the worker only runs the scheduler, no TVM); spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods and sys.platform.startswith(
        "linux") else "spawn")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, enabled, desc):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="layer", leave=False)


__all__ = ["CoSAPass", "FallbackWarning", "resolve_arch", "target_lowering", "lower_op",
           "matched_architecture", "architecture_dtype"]
