"""The coding check's test runner: the program under test can run its own code, but it cannot decide the outcome.

This module is stdlib only: its source is the program the sandbox runs (``RUNNER_SOURCE``), and the host imports
it for ``split_tests`` and ``read_verdict``, so both sides count the tests the same way.

How a verdict is reached (inside the sandbox, as the unprivileged uid):
- The runner (never imports the solution) reads ``tests.py`` and deletes it, makes itself non-dumpable (a process
  of the same uid can then neither ptrace it nor read its memory or fds through /proc), and splits the tests into
  units: every top-level ``assert`` and every ``test_*`` function is one test.
- Each unit runs in a fresh interpreter that imports ``solution.py`` as the module ``solution`` (so an
  ``if __name__ == "__main__"`` block does not run) and then runs the unit with every ``assert`` rewritten into a
  report of its operands' values. Operands that are literals (the expected values) are never sent to that
  process: it cannot copy the answer from the test, only compute it.
- The runner compares the reported values itself, as plain data (exact builtin types, decoded from JSON):
  an object whose ``__eq__`` always says True arrives as an opaque value that equals nothing.
- A unit passes only when its process reported every assert of the unit, every comparison held, and the unit
  ran to its end. Early exits (``sys.exit``, ``os._exit``, atexit, a fork that exits 0, killing the parent) end
  the unit before its reports, so it fails. Printing a success line prints to a file nobody reads as a verdict.
- After each unit every other process of the uid is killed (``kill(-1)``), so nothing carries over.
- The verdict is one JSON line on the runner's stdout, which no unit process holds, carrying a nonce that the
  host sent on the runner's stdin before any unit started.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

REPORT_FN = "__synth_report__"
MAX_REPORT_BYTES = 1_000_000
_LIT = "lit"
_CHILD = "child"


class SplitError(ValueError):
    """The tests file cannot be split into tests (a syntax error, or no test at all)."""


@dataclass
class AssertPlan:
    """One assert: how each operand is obtained (a literal kept by the runner, or reported) and the operators."""

    line: int
    source: str
    operands: list[tuple[str, Any]]  # ("lit", value) or ("child", index into the reported list)
    ops: list[str]  # comparison operator names; [] means "the single operand must be truthy"


@dataclass
class TestUnit:
    name: str
    line: int
    code: str  # what the unit's process runs, after the solution is imported (no expected literals in it)
    asserts: list[AssertPlan] = field(default_factory=list)


_OPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


class _Rewrite(ast.NodeTransformer):
    """``assert A op B`` -> ``__synth_report__(k, [non-literal operands])``; literals stay with the runner."""

    def __init__(self) -> None:
        self.plans: list[AssertPlan] = []

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        test = node.test
        if isinstance(test, ast.Compare) and all(type(op) in _OPS for op in test.ops):
            nodes, ops = [test.left, *test.comparators], [_OPS[type(op)] for op in test.ops]
        else:
            nodes, ops = [test], []
        operands: list[tuple[str, Any]] = []
        sent: list[ast.expr] = []
        for operand in nodes:
            is_lit, value = _literal(operand)
            if is_lit:
                operands.append((_LIT, value))
            else:
                operands.append((_CHILD, len(sent)))
                sent.append(operand)
        index = len(self.plans)
        self.plans.append(AssertPlan(node.lineno, ast.unparse(test), operands, ops))
        call = ast.Call(
            func=ast.Name(id=REPORT_FN, ctx=ast.Load()),
            args=[ast.Constant(index), ast.List(elts=sent, ctx=ast.Load())],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(value=call), node)


def split_tests(source: str) -> list[TestUnit]:
    """Every top-level ``assert`` and every top-level ``test_*`` function of ``source``, as separate units.

    Other top-level statements (imports, assignments, helpers) are set-up: a top-level assert gets the set-up
    written before it, a test function all of it. Raises SplitError when there is nothing to run.
    """
    try:
        tree = ast.parse(source, filename="tests.py")
    except SyntaxError as exc:
        raise SplitError(f"the tests do not parse: {exc}") from exc
    body = tree.body

    def is_test_fn(stmt: ast.stmt) -> bool:
        return isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test_")

    setup_all = [s for s in body if not isinstance(s, ast.Assert) and not is_test_fn(s)]
    units: list[TestUnit] = []
    for position, stmt in enumerate(body):
        rewrite = _Rewrite()
        if isinstance(stmt, ast.Assert):
            before = [s for s in body[:position] if not isinstance(s, ast.Assert) and not is_test_fn(s)]
            new = rewrite.visit(ast.parse(ast.unparse(stmt)).body[0])
            module = ast.Module(body=[*before, new], type_ignores=[])
            name = f"assert at line {stmt.lineno}"
        elif is_test_fn(stmt):
            assert isinstance(stmt, ast.FunctionDef)
            new = rewrite.visit(ast.parse(ast.unparse(stmt)).body[0])
            call = ast.Expr(ast.Call(func=ast.Name(id=stmt.name, ctx=ast.Load()), args=[], keywords=[]))
            module = ast.Module(body=[*setup_all, new, call], type_ignores=[])
            name = stmt.name
        else:
            continue
        ast.fix_missing_locations(module)
        units.append(TestUnit(name=name, line=stmt.lineno, code=ast.unparse(module), asserts=rewrite.plans))
    if not units:
        raise SplitError("the tests have no top-level assert and no test_* function: nothing would be checked")
    return units


# --- values: what a unit's process reports, decoded by the runner into plain data only ---------------------


class Opaque:
    """A reported value that was not plain data (a custom class, a generator): it equals nothing."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name} object (not plain data)>"


def decode(value: Any, depth: int = 0) -> Any:
    """Tagged JSON (see the unit program's ``enc``) -> plain Python values; anything unknown is Opaque."""
    if depth > 60:
        return Opaque("too deep")
    if value is None or type(value) in (bool, int, str, float):
        return value
    if type(value) is list:
        return [decode(v, depth + 1) for v in value]
    if type(value) is dict and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$float" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag == "$tuple" and type(inner) is list:
            return tuple(decode(v, depth + 1) for v in inner)
        if tag in ("$set", "$frozenset") and type(inner) is list:
            items = [decode(v, depth + 1) for v in inner]
            try:
                return set(items) if tag == "$set" else frozenset(items)
            except TypeError:
                return Opaque(tag[1:])
        if tag == "$dict" and type(inner) is list:
            out = {}
            for pair in inner:
                if type(pair) is not list or len(pair) != 2:
                    return Opaque("dict")
                try:
                    out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
                except TypeError:
                    return Opaque("dict")
            return out
        if tag == "$bytes" and type(inner) is str:
            try:
                return bytes.fromhex(inner)
            except ValueError:
                return Opaque("bytes")
        if tag == "$complex" and type(inner) is list and len(inner) == 2:
            return complex(float(inner[0]), float(inner[1]))
        if tag == "$opaque" and type(inner) is str:
            return Opaque(inner[:80])
    return Opaque("malformed report")


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op in ("is", "is not"):
        # Values crossed a process boundary: identity is only meaningful for the singletons.
        same = (a is b) if any(x is None or type(x) is bool for x in (a, b)) else (type(a) is type(b) and a == b)
        return same if op == "is" else not same
    if op == "in":
        return bool(a in b)
    if op == "not in":
        return bool(a not in b)
    raise ValueError(f"unknown operator {op}")


def judge_assert(plan: AssertPlan, reported: list[Any]) -> str | None:
    """None when the assert holds for the reported values, else why it failed."""
    values = []
    for kind, ref in plan.operands:
        if kind == _LIT:
            values.append(ref)
        elif type(ref) is int and 0 <= ref < len(reported):
            values.append(reported[ref])
        else:
            return f"AssertionError: {plan.source} (the test did not report this operand)"
    try:
        if not plan.ops:
            value = values[0]
            if isinstance(value, Opaque):
                return f"AssertionError: {plan.source}: the value is a {value.type_name}, not plain data"
            held = bool(value)
        else:
            held = all(_compare(op, values[i], values[i + 1]) for i, op in enumerate(plan.ops))
    except Exception as exc:  # e.g. 1 < "a": the comparison itself fails, so the assert does
        return f"{type(exc).__name__} comparing {plan.source}: {exc}"
    if held:
        return None
    got = [v for (kind, _), v in zip(plan.operands, values, strict=True) if kind == _CHILD]
    shown = ", ".join(repr(v)[:200] for v in got)
    return f"AssertionError: {plan.source} (got {shown})" if shown else f"AssertionError: {plan.source}"


def judge_unit(unit: TestUnit, lines: list[str]) -> tuple[bool, str]:
    """Decide one unit from its process's report lines: every assert reported and held, and the unit finished."""
    reported: dict[int, list[list[Any]]] = {}
    finished, error = False, None
    for line in lines:
        try:
            msg = json.loads(line)
        except ValueError:
            return False, "the test process wrote something that is not a report"
        if type(msg) is not dict:
            return False, "the test process wrote something that is not a report"
        kind = msg.get("kind")
        if kind == "assert" and type(msg.get("index")) is int and type(msg.get("values")) is list:
            reported.setdefault(msg["index"], []).append([decode(v) for v in msg["values"]])
        elif kind == "finished":
            finished = True
        elif kind == "error":
            error = str(msg.get("error", "unknown error"))[:1500]
    for index, plan in enumerate(unit.asserts):
        for values in reported.get(index, []):
            why = judge_assert(plan, values)
            if why is not None:
                return False, f"line {plan.line}: {why}"
    if error is not None:
        return False, error
    missing = [plan for index, plan in enumerate(unit.asserts) if index not in reported]
    if missing:
        return False, f"line {missing[0].line}: never reached: {missing[0].source} (the test ended early)"
    if not finished:
        return False, "the test did not run to its end (the process exited or was killed before it finished)"
    return True, "passed"


# --- the program each unit runs in (a fresh interpreter; its source holds no expected value) -------------

UNIT_SOURCE = r"""
import builtins, importlib.util, json, math, os, sys, traceback
_type, _len, _repr, _isinstance, _str = type, len, repr, isinstance, str
_write, _dumps = os.write, json.dumps
_report_fd = int(sys.argv[1])
_spec = json.loads(sys.stdin.readline())
sys.stdin.close()
_clean_builtins = dict(builtins.__dict__)


def _send(obj):
    data = (_dumps(obj) + "\n").encode()
    if _len(data) > 1_000_000:
        data = (_dumps({"kind": "error", "error": "a reported value is over 1 MB"}) + "\n").encode()
    while data:
        data = data[_write(_report_fd, data):]


def _enc(v, depth=0):
    t = _type(v)
    if depth > 50:
        return {"$opaque": "too deep"}
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if math.isfinite(v) else {"$float": _repr(v)}
    if t is list:
        return [_enc(x, depth + 1) for x in v]
    if t is tuple:
        return {"$tuple": [_enc(x, depth + 1) for x in v]}
    if t is set or t is frozenset:
        return {"$" + t.__name__: [_enc(x, depth + 1) for x in v]}
    if t is dict:
        return {"$dict": [[_enc(k, depth + 1), _enc(x, depth + 1)] for k, x in v.items()]}
    if t is bytes:
        return {"$bytes": v.hex()}
    if t is complex:
        return {"$complex": [v.real, v.imag]}
    return {"$opaque": t.__module__ + "." + t.__qualname__}


def __synth_report__(index, values):
    try:
        encoded = [_enc(v) for v in values]
    except Exception as exc:
        encoded = [{"$opaque": "unencodable: " + _type(exc).__name__}]
    _send({"kind": "assert", "index": index, "values": encoded})


try:
    _loader_spec = importlib.util.spec_from_file_location("solution", os.path.abspath("solution.py"))
    _module = importlib.util.module_from_spec(_loader_spec)
    sys.modules["solution"] = _module
    _loader_spec.loader.exec_module(_module)
    # The tests see the solution's names, but never its dunders or names that shadow builtins (a solution
    # must not replace `sorted` or `AssertionError` for the tests), and they get the builtins as they were
    # before the solution ran, whatever it patched.
    _ns = {k: v for k, v in vars(_module).items() if not k.startswith("__") and k not in _clean_builtins}
    _ns["__builtins__"] = _clean_builtins
    _ns["__name__"] = "tests"
    _ns["__synth_report__"] = __synth_report__
    exec(compile(_spec["code"], "tests.py", "exec"), _ns)
except BaseException as exc:
    _send({"kind": "error", "error": "".join(traceback.format_exception_only(_type(exc), exc)).strip()[-1500:]})
    os._exit(1)
_send({"kind": "finished"})
os._exit(0)
"""


def read_verdict(stdout: str, nonce: str) -> dict[str, Any] | None:
    """The runner's verdict from its stdout: the last line, a JSON object carrying ``nonce``; else None."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        verdict = json.loads(lines[-1])
    except ValueError:
        return None
    if type(verdict) is not dict or verdict.get("nonce") != nonce or type(verdict.get("tests")) is not list:
        return None
    return verdict


# --- the runner (the sandbox's main program) --------------------------------------------------------------


def _make_undumpable() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/mem or fd for the uid
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def _kill_others() -> None:
    import contextlib
    import signal
    import time

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one (and root's launcher)
    for _ in range(500):  # reap them; SIGKILL can't be caught, so this ends at once in practice
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def _run_unit(unit: TestUnit, deadline: float) -> tuple[bool, str, str]:
    import select
    import subprocess
    import tempfile
    import time

    r, w = os.pipe()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", UNIT_SOURCE, str(w)],
            stdin=subprocess.PIPE, stdout=out, stderr=out, pass_fds=(w,), close_fds=True,
        )  # fmt: skip
        os.close(w)
        assert proc.stdin is not None
        try:
            proc.stdin.write((json.dumps({"code": unit.code}) + "\n").encode())
            proc.stdin.close()
        except OSError:
            pass
        chunks, size, timed_out, exited = [], 0, False, False
        while size <= 4 * MAX_REPORT_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            # Reading stops when the unit's process ends, not at EOF: something it forked may hold the pipe
            # open, and it is killed below instead of being waited for.
            ready, _, _ = select.select([r], [], [], 0 if exited else min(left, 0.05))
            if not ready:
                if exited:
                    break
                exited = proc.poll() is not None
                continue
            data = os.read(r, 65536)
            if not data:
                break
            size += len(data)
            chunks.append(data)
        os.close(r)
        if not timed_out and proc.poll() is None:  # it closed the pipe; give it a moment to exit
            try:
                proc.wait(timeout=max(0.0, min(2.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                timed_out = True
        _kill_others()  # the unit's process, and whatever it forked, are gone before the next unit starts
        out.seek(0)
        output = out.read(4000).decode("utf-8", "replace")
    if timed_out:
        return False, "timed out (the time for the tests ran out before this one finished)", output
    lines = b"".join(chunks).decode("utf-8", "replace").splitlines()
    ok, detail = judge_unit(unit, lines)
    return ok, detail, output


def main() -> None:
    import time

    started = time.monotonic()
    nonce = sys.stdin.readline().strip()
    sys.stdin.close()
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    deadline = started + budget
    _make_undumpable()
    with open("tests.py", encoding="utf-8") as fh:
        source = fh.read()
    os.unlink("tests.py")  # the units must not read the expected values from the file
    out = sys.stdout
    try:
        units = split_tests(source)
    except SplitError as exc:
        sys.stderr.write(f"{exc}\n")
        out.write(json.dumps({"nonce": nonce, "tests": [], "error": str(exc)}) + "\n")
        return
    results = []
    for unit in units:
        if time.monotonic() >= deadline:
            results.append({"name": unit.name, "line": unit.line, "passed": False, "detail": "not run: no time left"})
            continue
        ok, detail, output = _run_unit(unit, deadline)
        results.append({"name": unit.name, "line": unit.line, "passed": ok, "detail": detail})
        if not ok:
            sys.stderr.write(f"FAILED {unit.name}: {detail}\n")
            if output.strip():
                sys.stderr.write(f"  output of {unit.name}: {output.strip()[-1500:]}\n")
    out.write(json.dumps({"nonce": nonce, "tests": results}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
