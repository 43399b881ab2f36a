"""The codebase stays easy to read: short modules and functions, documented layout."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]
MODULES = sorted((ROOT / "zosam_jax").rglob("*.py"))
SCRIPTS = sorted(p for folder in ("experiments", "benchmarks", "tests")
                 for p in (ROOT / folder).rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_CODE_LINES = 80  # a function's lines without its docstring
MAX_LINES = 100  # with it: a public function's argument list can be long


def _functions(path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      total = node.end_lineno - node.lineno + 1
      doc = ast.get_docstring(node, clean=False)
      doc_lines = node.body[0].end_lineno - node.body[0].lineno + 1 if doc else 0
      yield node.name, total, total - doc_lines


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_modules_are_short(path):
  assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", MODULES + SCRIPTS,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_are_short(path):
  long = [(name, total, code) for name, total, code in _functions(path)
          if code > MAX_CODE_LINES or total > MAX_LINES]
  assert not long, f"{path.name}: (function, lines, lines of code) {long}"


def test_architecture_doc_names_every_module():
  doc = (ROOT / "docs" / "architecture.md").read_text()
  missing = [str(p.relative_to(ROOT)) for p in MODULES
             if p.stem != "__init__" and f"{p.stem}.py" not in doc
             and f"`{p.stem}`" not in doc]
  assert not missing, f"docs/architecture.md does not mention {missing}"


def test_the_layout_paragraph_names_every_library_module():
  doc = (ROOT / "docs" / "architecture.md").read_text()
  layout = doc[doc.index("Layout in one paragraph"):doc.index("## The library:")]
  missing = [p.name for p in sorted((ROOT / "zosam_jax" / "_src").glob("*.py"))
             if p.stem != "__init__" and f"`{p.name}`" not in layout]
  assert not missing, f"docs/architecture.md's layout paragraph does not mention {missing}"


def _local_imports(path, names):
  """The sibling modules ``path`` imports at its top level (not inside functions)."""
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name in names)
    elif isinstance(node, ast.ImportFrom) and node.module in names:
      yield node.module


def _assert_no_circle(graph: dict[str, set[str]], where: str) -> None:
  """Fails naming the first import circle of ``graph`` (module -> what it imports)."""
  done, on_path = set(), []

  def visit(name):
    assert name not in on_path, f"{where}: import circle {' -> '.join(on_path + [name])}"
    if name not in done:
      on_path.append(name)
      for other in sorted(graph[name]):
        visit(other)
      on_path.pop()
      done.add(name)

  for name in sorted(graph):
    visit(name)


@pytest.mark.parametrize("folder", ["experiments", "benchmarks"])
def test_scripts_import_no_circle(folder):
  paths = {p.stem: p for p in (ROOT / folder).glob("*.py")}
  _assert_no_circle({name: set(_local_imports(path, paths)) for name, path in paths.items()},
                    folder)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PACKAGE = {_module_name(p): p for p in MODULES}


def _imports(path: pathlib.Path) -> set[str]:
  """The modules of ``zosam_jax`` that ``path`` imports anywhere (functions and
  ``if TYPE_CHECKING:`` blocks included: a circle there is a circle held open)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in PACKAGE)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        name = f"{node.module}.{a.name}"
        found.add(name if name in PACKAGE else node.module)
  return {m for m in found if m in PACKAGE} - {_module_name(path)}


def test_no_import_circle_anywhere_in_the_package():
  _assert_no_circle({name: _imports(path) for name, path in PACKAGE.items()}, "zosam_jax")


def train_levels() -> dict[str, int]:
  """Each module of ``zosam_jax/train`` (the ``data`` package as one) and its
  level: 1 + the longest chain of train modules it imports."""
  prefix = "zosam_jax.train."
  node = lambda m: m[len(prefix):].split(".")[0]
  graph: dict[str, set[str]] = {}
  for name, path in PACKAGE.items():
    if name.startswith(prefix):
      graph.setdefault(node(name), set()).update(
          node(m) for m in _imports(path) if m.startswith(prefix) and node(m) != node(name))
  levels: dict[str, int] = {}

  def level(name):
    if name not in levels:
      levels[name] = 1 + max((level(m) for m in graph[name]), default=0)
    return levels[name]

  for name in graph:
    level(name)
  return levels


def test_the_training_program_has_at_most_six_import_levels():
  levels = train_levels()
  assert levels["__main__"] == max(levels.values()) <= 6, sorted(
      levels.items(), key=lambda kv: kv[1])
  assert levels["config"] == 1  # A leaf: it imports nothing of the trainer.
