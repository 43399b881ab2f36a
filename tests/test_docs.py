"""The documentation site: every public name has its API page, and (``-m
docs``) the site builds with warnings as errors and renders in a real browser.

The ``docs`` tests need the ``docs`` extra and Debian's ``chromium``; ``.ci/run``
installs both and runs them. They fail, not skip, when either is missing.
"""

import html.parser
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.parse

import pytest

import zosam_jax
from zosam_jax import sparse
from zosam_jax import train

ROOT = pathlib.Path(__file__).parents[1]
DOCS = ROOT / "docs"
#: The README's build command (its Development section), with the site's folder last.
BUILD = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "docs"]


def _public_names():
  for module in (zosam_jax, sparse, train):
    for name in module.__all__:
      if not isinstance(getattr(module, name), type(sys)):  # Modules have their sections.
        yield f"{module.__name__}.{name}"


def test_the_api_page_lists_every_public_name():
  text = (DOCS / "api.md").read_text()
  listed = set()
  for module, body in re.findall(r"\.\. (?:module|currentmodule):: (\S+)\n(.*?)```",
                                 text, re.S):
    listed |= {f"{module}.{n}" for n in re.findall(r"^   (\w+)$", body, re.M)}
  missing = sorted(set(_public_names()) - listed)
  assert not missing, f"docs/api.md lists no page for {missing}"


def test_the_readme_states_the_docs_build_command():
  readme = (ROOT / "README.md").read_text()
  assert "python -m sphinx -W --keep-going -n -b html docs docs/_build/html" in readme


class _Page(html.parser.HTMLParser):
  """What a person checks on a rendered page: its title, headings, the
  signatures' argument names, rendered formulas (MathJax's elements) and links."""

  def __init__(self):
    super().__init__()
    self.title, self.h1, self.params, self.links, self.formulas = "", [], [], [], 0
    self._in = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    cls = attrs.get("class") or ""
    self._in.append((tag, cls))
    if tag == "mjx-container":
      self.formulas += 1
    if tag == "a" and attrs.get("href"):
      self.links.append(attrs["href"])

  def handle_endtag(self, tag):
    while self._in and self._in.pop()[0] != tag:
      pass

  def handle_data(self, data):
    tags = [t for t, _ in self._in]
    if tags and tags[-1] == "title":
      self.title += data
    if "h1" in tags:
      self.h1.append(data)
    if any(c == "sig-param" for _, c in self._in) and self._in[-1][1] == "pre" and (
        len(self._in) >= 2 and self._in[-2][1] == "n"):
      self.params.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  """The site built by the README's command (warnings are errors)."""
  out = tmp_path_factory.mktemp("site")
  done = subprocess.run([*BUILD, str(out)], cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False)
  assert done.returncode == 0, f"the docs build failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
  return out


def _render(page: pathlib.Path) -> _Page:
  """``page`` as headless chromium renders it (its scripts run: MathJax)."""
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  assert browser, "chromium is not installed: apt-get install chromium (.ci/run does)"
  done = subprocess.run(
      [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
      capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
  parsed = _Page()
  parsed.feed(done.stdout)
  return parsed


def _broken_links(site: pathlib.Path, page: pathlib.Path, links) -> list[str]:
  """The links to this site (not ``http(s):``) whose page was not built."""
  broken = []
  for link in links:
    url = urllib.parse.urlparse(link)
    if url.scheme in ("http", "https", "mailto") or not url.path:
      continue
    target = (page.parent / urllib.parse.unquote(url.path)).resolve()
    if target.is_dir():
      target = target / "index.html"
    if not (target.is_file() and target.is_relative_to(site.resolve())):
      broken.append(link)
  return broken


@pytest.mark.docs
def test_the_start_page_renders(site):
  page = site / "index.html"
  rendered = _render(page)
  assert rendered.title.startswith("zosam_jax")
  assert "zosam_jax" in "".join(rendered.h1)
  assert rendered.formulas >= 3  # θ + ε, the estimate ĝ, ...: typeset by MathJax offline.
  internal = [l for l in rendered.links if "://" not in l and not l.startswith("#")]
  assert any("api.html" in l for l in internal) and any("choosing.html" in l for l in internal)
  assert not _broken_links(site, page, rendered.links)


@pytest.mark.docs
def test_the_zo_sam_api_page_renders(site):
  page = site / "_autosummary" / "zosam_jax.zo_sam.html"
  rendered = _render(page)
  assert rendered.title.startswith("zosam_jax.zo_sam")
  assert "zosam_jax.zo_sam" in "".join(rendered.h1)
  for argument in ("base_tx", "rho", "num_dirs", "mask_fn", "key", "ascent_start"):
    assert argument in rendered.params, (argument, rendered.params)
  assert rendered.formulas >= 1  # The docstring's :math: estimate.
  assert any("arxiv.org/abs/2603.13115" in l for l in rendered.links)  # References, linked.
  assert not _broken_links(site, page, rendered.links)
