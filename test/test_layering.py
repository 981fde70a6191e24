"""The package's layers, written down once (:data:`LAYERS`), and the tests that hold every import of depthfm_ros to
them, so the shape cannot slip again.

A module imports from its own layer and the layers below it, never from one above. Imports are read from the
source with ``ast`` (nothing is imported): top-level, under ``if``/``try`` and inside functions alike. Importing
``a.b.c`` also runs ``a`` and ``a.b``, so those count too. The package's own modules are imported at the top of a
module; inside a function only where that keeps an optional heavy dependency (TensorRT, onnxruntime) off the import
path (:data:`LAZY_OPTIONAL`).
"""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "depthfm_ros"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: The layers, lowest first (names relative to depthfm_ros). A module belongs to the layer of the longest entry its
#: name starts with: ``fusion.frame`` sits above ``pipeline``, the rest of ``fusion`` below ``models``.
LAYERS = (
    ("errors",),  # the exception types
    ("shapes", "files"),  # latent channels, VAE downscale, size multiple, noise-shape rules; output paths checked
    ("settings", "processing", "tensor_processing", "sampler", "previews"),  # the choices; pre/post-processing and
    # labelled preview panels; the flow ODE
    ("geometry",),  # camera model, projection, back-projection, masks (pure numpy)
    ("fusion",),  # log d = a·z + b: the robust fit, residual completion, metric scale (pure numpy on z and metres)
    ("models",),  # DepthFM networks; the completion model brings its z to metres with fusion.alignment's fit
    ("backends",),  # engines behind one interface (torch, onnxruntime, TensorRT), ONNX export
    ("pipeline",),  # RGB in -> typed prediction out, through any backend
    ("fusion.frame",),  # a prediction + a LiDAR cloud -> one fused frame
    ("sim",),  # synthetic scenes of exact depth for tests, demos and evaluation (the runtime layers never need it)
    ("evaluation",),  # metrics and protocols; scoring of fusion and completion; latency and FLOPs
    ("training",),  # datasets, the trainer, tiny-VAE distillation
    ("ros",),  # the only place importing rclpy and ROS messages
    ("cli",),  # parse -> settings -> one library call -> print
)

#: Top-level names of the ROS 2 Python packages: only ros/ imports them.
ROS_IMPORTS = ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces", "geometry_msgs",
               "rosbag2_py", "rosidl_runtime_py", "launch", "launch_ros", "message_filters", "tf2_ros")

#: In-function imports of the package's own modules that keep an optional heavy dependency lazy: (importing module,
#: imported module). The pure-numpy fusion and geometry modules run on torch tensors through a torch twin
#: (completion_torch, points_torch), imported only when a tensor arrives, so a CPU node never loads torch there.
#: backends/tensorrt_backend.py, onnx_backend.py and export.py import tensorrt, onnxruntime and onnx inside the
#: functions that use them, so importing those modules costs milliseconds. These imports run after every module is
#: loaded, so they close no import cycle.
LAZY_OPTIONAL: set[tuple[str, str]] = {("fusion.completion", "fusion.completion_torch"),
                                       ("geometry.projection", "geometry.points_torch")}

#: The console scripts install their SIGINT/SIGTERM handlers before rclpy and torch load (seconds), so a Ctrl-C during
#: start-up ends the process quietly: ros/entry_points.py imports the nodes (and the parameter checks, which import
#: rclpy) only inside its functions. These imports run after every module is loaded, so they close no import cycle.
SIGNALS_FIRST: set[tuple[str, str]] = {("ros.entry_points", "ros.node"), ("ros.entry_points", "ros.lifecycle"),
                                       ("ros.entry_points", "ros.params")}

def _module_paths() -> dict[str, Path]:
    """Every module of the package by its name relative to depthfm_ros ("" is the package's own __init__)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _module_paths()


@dataclass(frozen=True)
class Import:
    """One module of the package named by one import statement."""

    importer: str  # relative names, "" for depthfm_ros itself
    named: str
    line: int
    in_function: bool

    def runs(self) -> list[str]:
        """The modules the statement executes: the named one and its parent packages."""
        parts = self.named.split(".") if self.named else []
        return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]

    def __str__(self) -> str:
        return f"{PACKAGE}.{self.importer}:{self.line} imports {PACKAGE}.{self.named}"


def _package_of(importer: str) -> list[str]:
    parts = importer.split(".") if importer else []
    return parts if MODULES[importer].name == "__init__.py" else parts[:-1]


def _named(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's modules an import statement names (relative names): ``from . import metrics`` names the
    submodule, ``from .metrics import rmse`` the module ``metrics``."""
    if isinstance(node, ast.Import):
        return [a.name.removeprefix(PACKAGE).lstrip(".") for a in node.names
                if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
    if node.level == 0:
        if node.module != PACKAGE and not (node.module or "").startswith(PACKAGE + "."):
            return []
        base = node.module.removeprefix(PACKAGE).lstrip(".")
    else:
        package = _package_of(importer)
        if node.level - 1 > len(package):
            raise AssertionError(f"{MODULES[importer]}:{node.lineno}: relative import beyond the package")
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        out.append(sub if sub in MODULES else base)
    return list(dict.fromkeys(out))


def _hidden_import(node: ast.AST) -> str | None:
    """The argument of ``importlib.import_module("depthfm_ros...")`` / ``__import__(...)`` given as a literal."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    arg = node.args[0].value
    if name in ("import_module", "__import__") and isinstance(arg, str) and arg.startswith((PACKAGE, ".")):
        return arg
    return None


def _scan(importer: str) -> tuple[list[Import], list[str], list[str]]:
    """(imports of the package, hidden imports, ROS packages imported) of one module."""
    tree = ast.parse(MODULES[importer].read_text(), str(MODULES[importer]))
    found, hidden, ros = [], [], []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(importer, n, child.lineno, in_function) for n in _named(importer, child))
                tops = [a.name for a in child.names] if isinstance(child, ast.Import) else \
                    [child.module or ""] if child.level == 0 else []
                ros.extend(f"{MODULES[importer].name}:{child.lineno} {t}" for t in tops
                           if t.split(".")[0] in ROS_IMPORTS)
            elif (text := _hidden_import(child)) is not None:
                hidden.append(f"{MODULES[importer]}:{child.lineno} {text}")
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return found, hidden, ros


SCANS = {name: _scan(name) for name in MODULES}
IMPORTS = [imp for found, _, _ in SCANS.values() for imp in found]


def layer_of(name: str) -> int:
    """Index in LAYERS of the longest entry ``name`` starts with; the package's own __init__ is below them all."""
    if name == "":
        return -1
    matches = [(len(entry), i) for i, layer in enumerate(LAYERS) for entry in layer
               if name == entry or name.startswith(entry + ".")]
    if not matches:
        raise AssertionError(f"{PACKAGE}.{name} is in no layer: place it in LAYERS ({Path(__file__).name})")
    return max(matches)[1]


# ----------------------------------------------------------------------------------------------------- tests
def test_the_scan_reads_the_package_and_its_known_arrows():
    """The reader sees what is there: a relative, an absolute-style and a submodule import, with their lines."""
    assert len(MODULES) > 50 and "fusion.frame" in MODULES and "evaluation.metrics" in MODULES
    named = {(i.importer, i.named) for i in IMPORTS}
    assert ("fusion.frame", "pipeline") in named  # from ..pipeline import DepthPrediction
    assert ("evaluation.fusion", "evaluation.metrics") in named  # from . import metrics
    assert ("evaluation.benchmark", "backends") in named  # from ..backends import cuda_available
    lazy = [i for i in IMPORTS if i.in_function and i.importer == "ros.entry_points"]
    assert {i.named for i in lazy} == {"ros.node", "ros.lifecycle", "ros.params"}  # imports inside its functions
    assert all(i.line > 1 for i in IMPORTS)
    assert Import("ros.lidar", "fusion.frame", 1, False).runs() == ["fusion", "fusion.frame"]


def test_every_import_names_a_module_that_exists():
    missing = [str(i) for i in IMPORTS if i.named not in MODULES]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_every_module_is_in_a_layer():
    for name in MODULES:
        layer_of(name)


def test_the_layers_name_only_modules_that_exist():
    for layer in LAYERS:
        for entry in layer:
            assert entry in MODULES, f"LAYERS names {PACKAGE}.{entry}, which does not exist"


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for imp in IMPORTS:
        low, high = layer_of(imp.importer), max((layer_of(run) for run in imp.runs()), default=-1)
        if high > low:
            upward.append(f"{imp} (layer {low} {LAYERS[low][0]!r} -> layer {high} {LAYERS[high][0]!r})")
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    """Modules in one layer may import each other, but never round in a circle (counted on the named modules)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        lazy = (imp.importer, imp.named) in SIGNALS_FIRST | LAZY_OPTIONAL
        if imp.named != imp.importer and imp.named in MODULES and not lazy:
            graph[imp.importer].add(imp.named)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_in_function_imports_only_keep_optional_heavy_dependencies_lazy():
    """The package's own modules are imported at the top of a module: inside a function only LAZY_OPTIONAL and
    SIGNALS_FIRST, in every layer (ros/ and cli/ included)."""
    lazy = [str(i) for i in IMPORTS if i.in_function and (i.importer, i.named) not in LAZY_OPTIONAL | SIGNALS_FIRST]
    assert not lazy, "in-function imports of the package (import at the top instead):\n" + "\n".join(lazy)


def test_lazy_optional_entries_are_still_there():
    found = {(i.importer, i.named) for i in IMPORTS if i.in_function}
    assert LAZY_OPTIONAL <= found, f"no longer lazy: delete from LAZY_OPTIONAL: {LAZY_OPTIONAL - found}"
    assert SIGNALS_FIRST <= found, f"no longer lazy: delete from SIGNALS_FIRST: {SIGNALS_FIRST - found}"


def test_the_command_line_tools_stay_thin():
    """A file of cli/ parses, builds settings, calls one library function and prints: under 160 lines."""
    long = {name: n for name, path in MODULES.items() if name.startswith("cli.")
            and (n := len(path.read_text().splitlines())) >= 160}
    assert not long, f"move the work of these CLI files into the library: {long}"


def test_no_hidden_imports_of_the_package():
    hidden = [h for _, found, _ in SCANS.values() for h in found]
    assert not hidden, "importlib/__import__ of the package's own modules:\n" + "\n".join(hidden)


def test_only_ros_imports_ros_packages():
    outside = [r for name, (_, _, found) in SCANS.items() if layer_of(name) != layer_of("ros") for r in found]
    assert not outside, "ROS 2 packages imported outside depthfm_ros/ros:\n" + "\n".join(outside)


@pytest.mark.parametrize("importer,source,named", [
    ("models.completion", "from ..training import data", ["training.data"]),
    ("models.completion", "from ..training.data import normalize_log_depth", ["training.data"]),
    ("models.completion", "from .. import errors, pipeline", ["errors", "pipeline"]),
    ("backends", "from .base import Backend", ["backends.base"]),  # relative to a package's own __init__
    ("evaluation.fusion", "from . import metrics", ["evaluation.metrics"]),
    ("cli.train", "import depthfm_ros.training.trainer", ["training.trainer"]),
    ("cli.train", "from depthfm_ros import backends, __version__", ["backends", ""]),
    ("cli.train", "import numpy, torch.nn", []),
])
def test_import_statements_resolve_to_the_modules_they_run(importer, source, named):
    assert _named(importer, ast.parse(source).body[0]) == named


def test_hidden_imports_are_seen():
    call = ast.parse('importlib.import_module("depthfm_ros.training.trainer")').body[0].value
    assert _hidden_import(call) == "depthfm_ros.training.trainer"
    assert _hidden_import(ast.parse('importlib.import_module(name)').body[0].value) is None


@pytest.mark.parametrize("importer,named", [("models.completion", "training.data"), ("fusion", "fusion.frame"),
                                            ("backends.torch_backend", "pipeline"), ("pipeline", "sim")])
def test_an_upward_import_is_caught(importer, named):
    """The rule the test applies, on imports the package must not have (so a real one cannot pass silently)."""
    imp = Import(importer, named, 1, False)
    assert max(layer_of(r) for r in imp.runs()) > layer_of(importer)
