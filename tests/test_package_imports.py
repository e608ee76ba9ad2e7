"""The installed package stands on its own: it never imports the repository's
``benchmarks/`` (which imports the package), and its modules' imports form no circle.
Read from the source with ``ast``: nothing is imported or run."""

import ast
from pathlib import Path

import fastmlp

PACKAGE = Path(fastmlp.__file__).parent


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
           if "__pycache__" not in path.parts}


def imported_names(module, path, module_level_only=False):
    """The absolute names each import statement of the module names (``from a import
    b``: ``a.b``), from anywhere in the file or from its module level only."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def package_module(name):
    """The module of the package that importing ``name`` runs last (``a.b.c`` where it
    is one, else ``a.b`` for a name ``c`` in it), or None outside the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_the_package_has_the_modules_this_test_reads():
    assert {"fastmlp", "fastmlp.cli", "fastmlp.profiling", "fastmlp.bench.workloads",
            "fastmlp.kernels"} <= set(MODULES)


def test_no_module_of_the_package_imports_the_repository_benchmarks():
    offenders = [(module, name) for module, path in MODULES.items()
                 for name in imported_names(module, path)
                 if name == "benchmarks" or name.startswith("benchmarks.")]
    assert offenders == []


def test_the_package_modules_import_each_other_without_a_circle():
    """Module-level imports only: those run when a module is imported, where a circle
    leaves a module half-initialised. (Imports inside functions run at call time.)"""
    graph = {module: {target for name in imported_names(module, path, module_level_only=True)
                      if (target := package_module(name)) not in (None, module)}
             for module, path in MODULES.items()}
    state = {}  # module -> "visiting" or "done"

    def circle_from(module, trail):
        state[module] = "visiting"
        for target in sorted(graph[module]):
            if state.get(target) == "visiting":
                return trail[trail.index(target):] + [target]
            if target not in state and (found := circle_from(target, trail + [target])):
                return found
        state[module] = "done"
        return None

    for module in MODULES:
        if module not in state:
            assert circle_from(module, [module]) is None
