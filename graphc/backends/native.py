"""The native CPU tier: a plan's kernels compiled to C and called on NumPy arrays.

Takes the nodes of a plan that have C (fused bodies and elementwise ops from backends/csource.py,
ops' own ``c_kernel``), builds them with the machine's C compiler into one plain shared library per
plan, cached on disk under a hash of everything that went into it, and wraps each kernel, through
a small CPython module built once per machine (GLUE), as a callable with the NumPy backend's
calling convention. Calls whose arrays are not what the plan promised (a non-contiguous feed) and
values a kernel declines go to the node's NumPy kernel, which raises its usual errors.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import NativeWarning
from ..ops.fused import product_out
from ..ops.linalg import gemm
from . import blas, csource

# Work (ops of a fused body, multiply-adds of a convolution ... per element) before a C kernel
# splits its rows over the thread pool: handing a range to a thread and waiting for it costs
# 60-150 us on these shared machines, about what 16M operations take in C.
NATIVE_PARALLEL_MIN = 1 << 24
# With native=None (the default), a plan whose C kernels do less work than this (operations per
# call) stays NumPy: compiling its library costs ~0.1 s once per machine, which a small graph
# (most tests, a toy model) never wins back. W1's batch-1 MLP does ~100K.
NATIVE_MIN_WORK = 1 << 14
RELEASE_GIL_MIN = 1 << 12  # elements below which a C kernel keeps the GIL (releasing costs ~0.1 us)

FLAGS = ("-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
         "-fPIC", "-shared")  # fmt: skip
# Tried in order: vector math (glibc's libmvec) on this CPU's instruction set, then portable C.
VARIANTS = ((("-march=native",), ("-lmvec", "-lm"), True), ((), ("-lm",), False))


# The cache is kept under this size ($GRAPHC_CACHE_MAX_MB): a build that takes it past it deletes
# the entries used longest ago (a test-suite run builds ~12 MB; a model's plans, a few).
CACHE_MAX_MB = 256


def cache_max_bytes() -> int:
    value = os.environ.get("GRAPHC_CACHE_MAX_MB", "")
    if not value:
        return CACHE_MAX_MB << 20
    try:
        mb = float(value)
    except ValueError:
        mb = math.nan
    if math.isfinite(mb) and mb >= 0:
        return int(mb * (1 << 20))
    warnings.warn(f"GRAPHC_CACHE_MAX_MB must be a number of megabytes, 0 or more: got {value!r}; "
                  f"the cache is kept under {CACHE_MAX_MB} MB", NativeWarning, stacklevel=2)  # fmt: skip
    return CACHE_MAX_MB << 20


def cache_dir() -> Path:
    """Where built modules are kept: $GRAPHC_CACHE_DIR, else $XDG_CACHE_HOME/graphc, else
    ~/.cache/graphc."""
    if os.environ.get("GRAPHC_CACHE_DIR"):
        return Path(os.environ["GRAPHC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphc"


class Toolchain:
    """The C compiler, the Python headers and the cache directory, probed once per process.

    ``unavailable`` says why native kernels cannot be built here (None: they can).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.loaded: dict = {}  # name -> ctypes.CDLL or module (kept: kernels point into them)
        self.glue = None  # the CPython module that calls kernels (see GLUE)
        self.variant = 0  # index into VARIANTS still worth trying
        self.failed: str | None = None  # why the compiler failed (then no more C in this process)
        self.unavailable = self._probe()

    def _probe(self) -> str | None:
        self.cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not self.cc:
            return "no C compiler (cc or $CC)"
        self.include = sysconfig.get_paths()["include"]
        if not Path(self.include, "Python.h").is_file():
            return f"no Python headers (Python.h) in {self.include}"
        self.suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        try:
            version = subprocess.run([self.cc, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return f"C compiler {self.cc} does not run: {e}"
        self.dir = cache_dir()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = self.dir.stat()
        except OSError as e:
            return f"cache directory {self.dir}: {e}"
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return f"cache directory {self.dir} is not private to this user (owner or mode)"
        self.identity = "\n".join([self.cc, version.stdout.split("\n")[0], sys.version, self.suffix,
                                   platform.machine(), _cpu_identity(), " ".join(FLAGS)])  # fmt: skip
        return None

    def kernels(self, specs: list, fallbacks: list) -> list | None:
        """For each spec, the (rows, whole) callables of its C kernel (see GLUE), one library for
        them all, loaded from the cache when it was built before; ``fallbacks`` run the calls the
        C functions do not take. None when the compiler fails: then a NativeWarning says why, and
        from then on this process runs NumPy kernels only (``failed``)."""
        with self.lock:
            glue = self._glue()
            lib = self._library(module_source(specs)) if glue is not None else None
            if lib is None:
                return None
            found = blas.gemm() if any(csource.is_gemm(s.node) for s in specs) else None
            if found is not None and found.sgemm is not None:  # (until set, BLAS kernels decline calls)
                lib.graphc_set_gemm(ctypes.c_void_p(found.sgemm), ctypes.c_void_p(found.dgemm))
            return [glue.kernel(ctypes.cast(getattr(lib, s.name), ctypes.c_void_p).value, s.name, s.lens,
                                s.formats, s.function.rows, max(s.function.row_size, 1), RELEASE_GIL_MIN,
                                functools.partial(np.empty, s.node.types[0].shape, s.node.types[0].dtype), fb)
                    for s, fb in zip(specs, fallbacks)]  # fmt: skip

    def _glue(self):
        """The CPython module that calls kernels on arrays (built once per machine)."""
        if self.glue is None and not self.failed:
            # (built against this NumPy's headers: its version is part of the text, so of the key)
            text = f"/* NumPy {np.__version__} */\n{GLUE}"
            loaded, error = self._built(text, (), (), python=True)
            if error is not None:
                return self._fail([error])
            self.glue = loaded
        return self.glue

    def _library(self, source: str):
        """The shared library of a plan's kernels, with vector math where this machine has it."""
        errors = []
        for variant in range(self.variant, len(VARIANTS)):
            if self.failed:
                return None
            arch, libs, vector_math = VARIANTS[variant]
            text = (csource.vector_math_declarations() if vector_math else "") + source
            lib, error = self._built(text, arch, libs, python=False)
            if error is not None:
                errors.append(error)
                continue
            self.variant = variant  # (a machine without libmvec or -march=native: portable C)
            return lib
        return self._fail(errors)

    def _fail(self, errors: list):
        said = errors[-1] if errors else "?"
        self.failed = f"the C compiler failed: {said.splitlines()[0]}"
        warnings.warn(f"native kernels: {self.failed}; kernels run as NumPy from now on. "
                      f"The compiler said:\n{said}", NativeWarning, stacklevel=3)  # fmt: skip

    def _built(self, text: str, arch, libs, python: bool):
        """(the loaded library or module, None) built from ``text``, compiled unless the cache has
        it, or (None, the compiler's error). A cached file that does not load (damaged on disk)
        is built again. A Python module's init function is named after its file."""
        key = hashlib.sha256(f"{self.identity}\n{arch}{libs}{python}\n{text}".encode()).hexdigest()[:32]
        name = f"graphc_{key}"
        if name in self.loaded:
            return self.loaded[name], None
        path = self.dir / f"{name}{self.suffix if python else '.so'}"
        flags = [*arch, f"-I{self.include}", f"-I{np.get_include()}"] if python else list(arch)
        for attempt in range(2):
            if not path.exists():
                error = self._compile(text.replace("PyInit_MODULE", f"PyInit_{name}"), path, flags, libs)
                if error is not None:
                    return None, error
                self._trim(keep=name)
            else:
                _touch(path)  # (its time of last use, for _trim)
            try:
                self.loaded[name] = _load(name, path) if python else ctypes.CDLL(str(path))
                return self.loaded[name], None
            except (OSError, ImportError) as e:
                if attempt:
                    return None, f"{path} does not load: {e}"
                path.unlink(missing_ok=True)  # damaged: build it again
        raise AssertionError("unreachable")

    def _trim(self, keep: str) -> None:
        """Delete the entries used longest ago (a library and its source) while the cache is over
        ``cache_max_bytes()``; never ``keep`` or what this process has loaded. Another process
        that has one loaded keeps it (Linux keeps an unlinked file's mapping); one about to load
        it builds it again."""
        entries: dict = {}  # name -> [last use, bytes, paths]
        try:
            for p in self.dir.iterdir():
                if p.name.startswith("graphc_"):
                    st = p.stat()
                    e = entries.setdefault(p.name.split(".")[0], [0.0, 0, []])
                    e[0], e[1] = max(e[0], st.st_mtime), e[1] + st.st_size
                    e[2].append(p)
        except OSError:
            return  # (a cache that cannot be listed is not trimmed; building still works)
        total, limit = sum(e[1] for e in entries.values()), cache_max_bytes()
        for name, (_, nbytes, paths) in sorted(entries.items(), key=lambda item: item[1][0]):
            if total <= limit:
                break
            if name == keep or name in self.loaded:
                continue
            for p in paths:
                p.unlink(missing_ok=True)
            total -= nbytes

    def _compile(self, text: str, path: Path, flags, libs) -> str | None:
        """Build ``path`` atomically (a temporary file, then a rename); the compiler's error or None."""
        fd, src = tempfile.mkstemp(suffix=".c", prefix=".build-", dir=self.dir)
        tmp = f"{src[:-2]}.so"
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            cmd = [self.cc, *FLAGS, *flags, "-o", tmp, src, *libs]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.SubprocessError) as e:
                return f"{self.cc} did not run: {e}"
            if done.returncode != 0:
                return done.stderr.strip()[-2000:] or f"exit status {done.returncode}"
            os.replace(src, path.parent / f"{path.name.split('.')[0]}.c")  # kept beside it, for reading
            os.replace(tmp, path)
            return None
        finally:
            for p in (src, tmp):
                if os.path.exists(p):
                    os.unlink(p)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # (a read-only cache: entries are still used, only not trimmed by use)


def _cpu_identity() -> str:
    """What -march=native compiles for: the CPU model and its feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(lines)))


def _load(name: str, path: Path):
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# -- the glue: one CPython module per machine that calls C kernels on arrays ----------------------
# Plan modules are plain C (no Python.h: 0.08 s to compile instead of 0.21 s); ``glue.kernel``
# wraps a kernel's address as a Python callable that takes NumPy arrays (through NumPy's C API,
# built against the installed NumPy) or any other object by the buffer protocol.
GLUE = r"""#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stdint.h>

/* 0: done; else the kernel declined these values (before writing anything): NumPy runs the call,
   and raises the error it finds (a label out of range). */
typedef int (*kernel_fn)(char **p, int64_t lo, int64_t hi);

typedef struct {
    kernel_fn fn;
    Py_ssize_t n;          /* operands: the inputs, then the output */
    long long rows;        /* [lo, hi) ranges over these */
    long long row_size;    /* elements per row */
    long long gil_min;     /* elements from which the call releases the GIL */
    const char *name;
    char *formats;         /* one buffer format character per operand */
    PyObject *alloc;       /* () -> a new output array */
    PyObject *fallback;    /* (*inputs, out=None) -> the NumPy kernel's result */
    Py_ssize_t lens[];     /* bytes per operand */
} Kernel;

static void release(Py_buffer *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (v[i].obj) PyBuffer_Release(&v[i]);
}

/* The operands' memory, if each is C-contiguous and aligned with the plan's byte size and element
   format (else 0, and the caller runs the NumPy kernel). The last one is the output, written.
   A NumPy array is read through NumPy's C API (its fields: ~10 ns, where exporting a buffer costs
   ~100 ns); any other object through the buffer protocol, its buffer held in v[i] (v[i].obj is
   NULL for an array: nothing to release). */
static int grab(const Kernel *k, PyObject *const *args, Py_buffer *v, char **p) {
    for (Py_ssize_t i = 0; i < k->n; i++) {
        int out = i == k->n - 1;
        v[i].obj = NULL;
        if (PyArray_Check(args[i])) {
            PyArrayObject *a = (PyArrayObject *)args[i];
            if (PyArray_NBYTES(a) != k->lens[i] || PyArray_DESCR(a)->type != k->formats[i]
                || !PyArray_ISNOTSWAPPED(a) || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)
                || (out && !PyArray_ISWRITEABLE(a))) {
                release(v, i);
                return 0;
            }
            p[i] = PyArray_BYTES(a);
            continue;
        }
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (out ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[i], &v[i], flags) < 0) {
            PyErr_Clear();
            v[i].obj = NULL;
            release(v, i);
            return 0;
        }
        const char *f = v[i].format;
        if (v[i].len != k->lens[i] || !f || f[0] != k->formats[i] || f[1]) {
            release(v, i + 1);
            return 0;
        }
        p[i] = (char *)v[i].buf;
    }
    return 1;
}

/* Rows [lo, hi) of the operands args[0 .. n-1] (inputs, then the output): 1 done, 0 the arrays
   are not as planned or the kernel declined them (nothing was written). */
static int run(const Kernel *k, PyObject *const *args, long long lo, long long hi) {
    Py_buffer v[k->n];
    char *p[k->n];
    if (!grab(k, args, v, p)) return 0;
    int declined;
    if ((hi - lo) * k->row_size >= k->gil_min) {
        Py_BEGIN_ALLOW_THREADS
        declined = k->fn(p, lo, hi);
        Py_END_ALLOW_THREADS
    } else {
        declined = k->fn(p, lo, hi);
    }
    release(v, k->n);
    return !declined;
}

/* rows(*inputs, out, lo, hi): rows [lo, hi) of the output (a range of a kernel split over
   threads); NotImplemented when the arrays are not as planned. */
static PyObject *rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const Kernel *k = (const Kernel *)PyCapsule_GetPointer(self, "graphc.kernel");
    if (!k) return NULL;
    if (nargs != k->n + 2) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd inputs, out, lo, hi", k->name, k->n - 1);
        return NULL;
    }
    long long lo = PyLong_AsLongLong(args[k->n]), hi = PyLong_AsLongLong(args[k->n + 1]);
    if ((lo == -1 || hi == -1) && PyErr_Occurred()) return NULL;
    if (lo < 0 || hi > k->rows || lo > hi) {
        PyErr_Format(PyExc_ValueError, "%s: rows out of range", k->name);
        return NULL;
    }
    if (!run(k, args, lo, hi)) Py_RETURN_NOTIMPLEMENTED;
    Py_RETURN_NONE;
}

/* whole(*inputs, out=None): the kernel as the generated plan calls it, all rows in this thread;
   the NumPy kernel (fallback) runs the calls the C function does not take. */
static PyObject *whole(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    const Kernel *k = (const Kernel *)PyCapsule_GetPointer(self, "graphc.kernel");
    if (!k) return NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != k->n - 1 || nkw > 1
        || (nkw && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "out"))) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd inputs and out=", k->name, k->n - 1);
        return NULL;
    }
    PyObject *operands[k->n];
    for (Py_ssize_t i = 0; i < nargs; i++) operands[i] = args[i];
    PyObject *out = nkw ? args[nargs] : Py_None;
    if (out == Py_None) {
        out = PyObject_CallNoArgs(k->alloc);
        if (!out) return NULL;
    } else {
        Py_INCREF(out);
    }
    operands[k->n - 1] = out;
    if (run(k, operands, 0, k->rows)) return out;
    Py_DECREF(out);
    return PyObject_Vectorcall(k->fallback, args, nargs, kwnames);
}

static PyMethodDef rows_def = {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL, NULL};
static PyMethodDef whole_def = {"kernel", (PyCFunction)(void (*)(void))whole, METH_FASTCALL | METH_KEYWORDS, NULL};

static void free_kernel(PyObject *capsule) {
    Kernel *k = (Kernel *)PyCapsule_GetPointer(capsule, "graphc.kernel");
    Py_XDECREF(k->alloc);
    Py_XDECREF(k->fallback);
    PyMem_Free(k->formats);
    PyMem_Free((void *)k->name);
    PyMem_Free(k);
}

/* kernel(address, name, lens, formats, rows, row_size, gil_min, alloc, fallback)
   -> (rows(*inputs, out, lo, hi), whole(*inputs, out=None)) */
static PyObject *make(PyObject *self, PyObject *args) {
    unsigned long long address;
    const char *name, *formats;
    PyObject *lens, *alloc, *fallback;
    long long rows, row_size, gil_min;
    if (!PyArg_ParseTuple(args, "KsO!sLLLOO", &address, &name, &PyTuple_Type, &lens, &formats, &rows,
                          &row_size, &gil_min, &alloc, &fallback))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(lens);
    if ((Py_ssize_t)strlen(formats) != n || n < 1) {
        PyErr_SetString(PyExc_ValueError, "kernel: one format per operand");
        return NULL;
    }
    Kernel *k = (Kernel *)PyMem_Malloc(sizeof(Kernel) + n * sizeof(Py_ssize_t));
    char *f = (char *)PyMem_Malloc(n + 1), *nm = (char *)PyMem_Malloc(strlen(name) + 1);
    if (!k || !f || !nm) {
        PyMem_Free(k), PyMem_Free(f), PyMem_Free(nm);
        return PyErr_NoMemory();
    }
    k->fn = (kernel_fn)(uintptr_t)address;
    k->n = n, k->rows = rows, k->row_size = row_size, k->gil_min = gil_min;
    k->formats = strcpy(f, formats);
    k->name = strcpy(nm, name);
    for (Py_ssize_t i = 0; i < n; i++) k->lens[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(lens, i));
    Py_INCREF(alloc), Py_INCREF(fallback);
    k->alloc = alloc, k->fallback = fallback;
    PyObject *capsule = PyCapsule_New(k, "graphc.kernel", free_kernel);
    if (!capsule) {
        Py_DECREF(alloc), Py_DECREF(fallback);
        PyMem_Free(f), PyMem_Free(nm), PyMem_Free(k);
        return NULL;
    }
    PyObject *r = PyCFunction_New(&rows_def, capsule), *w = PyCFunction_New(&whole_def, capsule);
    Py_DECREF(capsule);
    if (!r || !w) {
        Py_XDECREF(r), Py_XDECREF(w);
        return NULL;
    }
    return Py_BuildValue("(NN)", r, w);
}

static PyMethodDef methods[] = {{"kernel", make, METH_VARARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "graphc_glue", NULL, -1, methods};
PyMODINIT_FUNC PyInit_MODULE(void) {
    import_array();  /* (returns NULL, with NumPy's error set, if its C API does not load) */
    return PyModule_Create(&def);
}
"""


def _format(dtype) -> str:
    """The buffer-protocol format NumPy gives arrays of ``dtype`` ("f", "d", "?", "l" ...)."""
    return memoryview(np.empty(0, dtype)).format


class Spec:
    """One node as a C kernel: its C function and the sizes and formats of its operands."""

    def __init__(self, node, name: str):
        self.node = node
        self.name = name
        found = csource.is_gemm(node) and blas.gemm().sgemm is not None
        in_types, self.function, self.matmul = csource.function(node, name, blas=found)  # matmul: NumPy's GEMM first
        self.reason = self.function if isinstance(self.function, str) else None  # (why there is no C)
        types = (*in_types, node.types[0])
        self.lens = tuple(math.prod(t.shape) * t.dtype.itemsize for t in types)
        self.formats = "".join(_format(t.dtype) for t in types)


def module_source(specs: list[Spec]) -> str:
    """One plan's kernels as plain C (exported functions named as the specs)."""
    return csource.PRELUDE + "".join(s.function.source for s in specs)


class NumpyFallback:
    """A node's NumPy kernel, built on first need: it runs the calls its C function declines.
    (It holds no reference to the C kernel, which holds it: no reference cycle.)"""

    def __init__(self, factory):
        self.factory = factory
        self.kernel = None

    def __call__(self, *arrays, out=None):
        if self.kernel is None:
            self.kernel = self.factory()
        return self.kernel(*arrays) if out is None else self.kernel(*arrays, out=out)


class NativeKernel:
    """A node run by its C function: kernel(*arrays, out=None), like the NumPy kernels, on which it
    falls back for calls whose arrays the C function does not take.

    ``direct`` is the C entry point the generated plan calls instead when the kernel runs on one
    thread with no NumPy GEMM first (a Python call less: ~0.7 us per kernel)."""

    native = True  # (explain: this step runs C)

    def __init__(self, backend, spec: Spec, fns, fallback: NumpyFallback):
        self.backend = backend
        self.node = spec.node
        self.fn, whole = fns  # fn(*inputs, out, lo, hi): a range of rows; whole(*inputs, out=None)
        self.fallback = fallback
        self.matmul = spec.matmul
        self.how = "NumPy's GEMM, then the epilogue in C" if spec.matmul else spec.function.how  # (explain)
        node = spec.node
        self.flags = (node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False))
        self.two_d = self.matmul and node.inputs[0].ndim == 2 and node.inputs[1].ndim == 2
        self.shape, self.dtype = node.types[0].shape, node.types[0].dtype
        from .numpy_backend import num_threads

        rows = spec.function.rows
        threads = min(num_threads(), rows) if spec.function.total_work >= NATIVE_PARALLEL_MIN else 1
        per = max(1, -(-rows // threads))
        self.ranges = [(lo, min(rows, lo + per)) for lo in range(0, rows, per)] or [(0, rows)]  # (0 rows: one)
        self.direct = whole if len(self.ranges) == 1 and not self.matmul else None

    @property
    def numpy(self):
        """The NumPy kernel, if a call needed it (None: every call ran C)."""
        return self.fallback.kernel

    def __call__(self, *arrays, out=None):
        planned = out is not None  # (ops whose NumPy kernel takes no out= are never given one)
        if out is None:
            out = np.empty(self.shape, self.dtype)
        args = arrays
        if self.matmul:
            a, b, *rest = arrays
            g = product_out(out, rest)
            if self.two_d and out.flags.c_contiguous:
                g = np.dot(a.T if self.flags[0] else a, b.T if self.flags[1] else b, out=g)
            else:
                g = gemm(np, a, b, g, *self.flags)
            args = (g, *rest)
        if len(self.ranges) == 1:
            done = self.fn(*args, out, *self.ranges[0])
        else:
            pool = self.backend.pool()
            futures = [pool.submit(self.fn, *args, out, lo, hi) for lo, hi in self.ranges[1:]]
            done = self.fn(*args, out, *self.ranges[0])
            for f in futures:
                f.result()
        if done is NotImplemented:  # (every range checks the same arrays, so all said so)
            return self.fallback(*arrays, out=out if planned else None)
        return out
