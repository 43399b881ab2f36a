"""Sphinx configuration of the zosam_jax documentation site.

Build it (warnings are errors, every cross-reference checked)::

  python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The notebooks are rendered from ``notebooks/`` as they are committed (without
outputs): copied into ``docs/_notebooks/`` when the builder starts (:func:`setup`), never
executed by it.
"""

import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import zosam_jax  # pylint: disable=wrong-import-position

project = "zosam_jax"
author = "zosam_jax developers"
copyright = "2026, zosam_jax developers"  # pylint: disable=redefined-builtin
release = version = zosam_jax.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax served from the site: no network to render a formula.
]

# ".rst" first: autosummary writes its generated API pages in the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# MyST: $...$ math, anchors for headings so that README-style links resolve.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 4
# The notebooks are rendered as committed, never run by the build.
nb_execution_mode = "off"

# The API pages: one per public name, from its docstring.
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("References", "notes_style")]

# Warnings are errors and every cross-reference is checked (-n). There is no
# network at build time, so no intersphinx: the names of other libraries
# (jax, optax, flax, chex, numpy, the standard library) are not resolved.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jnp|optax|flax|nn|nnx|chex|np|numpy|orbax|ocp|typing|collections"
               r"|pathlib|argparse|concurrent|enum|os|subprocess)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Optional|Union|Sequence|Mapping|Iterable|Iterator|NamedTuple"
               r"|Path|PRNGKey|Array|ArrayTree|PyTree|Params|Numeric|ScalarOrSchedule)"),
    # The type of TrainState.metrics: summed on the device, read by the program only.
    (r"py:class", r"(zosam_jax\.train\.steps\.)?MetricSums"),
    (r"py:.*", r"(int|float|bool|str|bytes|dict|list|tuple|None|object|type|Exception"
               r"|ValueError|TypeError|RuntimeError|OSError|KeyboardInterrupt)"),
]

html_theme = "sphinx_book_theme"
html_title = "zosam_jax"
html_theme_options = {
    "repository_url": "https://github.com/zosam-jax/zosam_jax",
    "use_repository_button": True,
    "show_toc_level": 2,
}
html_static_path = []


def _copy_notebooks(app) -> None:
  """``notebooks/*.ipynb`` into ``docs/_notebooks/`` (git-ignored), as committed:
  run when the builder starts, before the sources are found."""
  del app
  target = DOCS / "_notebooks"
  target.mkdir(exist_ok=True)
  for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copyfile(notebook, target / notebook.name)



def setup(app):
  app.connect("builder-inited", _copy_notebooks)
