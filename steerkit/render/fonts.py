"""A registry of packaged fonts and their glyph coverage.

Fonts come from packages only, never from the system: every installed ``fontpkg-*`` wheel (discovered through the
``fontpkg.family`` entry points that the wheels declare, so a newly installed wheel shows up without code
changes) and, when matplotlib is installed, its bundled DejaVu fonts. Each font has a short name (the fontpkg slug:
``"noto-sans"``, ``"ibm-plex-mono"``, ``"caveat"``, ... and ``"dejavu-sans"``, ``"dejavu-sans-mono"``,
``"dejavu-serif"``).

Coverage is read from the font's cmap (fontTools when installed, else a PIL probe that compares a glyph with the
font's .notdef box), so that :func:`check_coverage` can refuse text the font would draw as tofu: there is no
silent fallback to another font.

Example:
    >>> sorted(available_fonts())[:3]
    ['caveat', 'ibm-plex-mono', 'indie-flower']
    >>> font = load_font("noto-sans", 32)
    >>> check_coverage("47 + 38 = 85", "noto-sans")  # raises RenderError on a glyph the font lacks
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

from steerkit.errors import RenderError

DEFAULT_FONT = "noto-sans"

# Characters that layout handles itself (line breaks, tabs); they are never drawn as glyphs.
_LAYOUT_CHARS = frozenset("\n\r\t")


@dataclass(frozen=True)
class FontSpec:
    """One usable font: a short name, the file, and where it came from.

    Attributes:
        name: registry key ("noto-sans").
        family: human family name ("Noto Sans").
        path: the .ttf/.otf file.
        source: "fontpkg" (a ``fontpkg-*`` wheel), "matplotlib" (DejaVu) or "user" (:func:`register_font`).
        weight: the weight used for variable fonts (their ``wght`` axis is set to it).
        variable: whether the file is a variable font.
        kind: "sans", "serif", "mono" or "handwriting" (for sweeps and docs).
        license: the font's license as its package records it.
    """

    name: str
    family: str
    path: Path
    source: str
    weight: int = 400
    variable: bool = False
    kind: str = "sans"
    license: str = "unknown"


_KINDS = {"SANS_SERIF": "sans", "SERIF": "serif", "MONOSPACE": "mono", "HANDWRITING": "handwriting",
          "DISPLAY": "display"}
_USER_FONTS: dict[str, FontSpec] = {}


def _fontpkg_fonts() -> dict[str, FontSpec]:
    """The regular upright face of every installed fontpkg family."""
    try:
        import fontpkg
    except ImportError:
        return {}
    import json

    out: dict[str, FontSpec] = {}
    for slug, fam in fontpkg.families().items():
        try:
            chosen = fontpkg.select_file(fam, 400, "normal", nearest=True)
        except fontpkg.FontpkgError:
            continue
        kind = "sans"
        meta = chosen.path.parent.parent / "metadata.json"  # <package>/files/<font> next to <package>/metadata.json
        if meta.exists():
            cats = json.loads(meta.read_text(encoding="utf-8")).get("category", [])
            kind = _KINDS.get(cats[0], "sans") if cats else "sans"
        out[slug] = FontSpec(name=slug, family=fam.name, path=Path(chosen.path), source="fontpkg", weight=400,
                             variable=chosen.variable, kind=kind, license=fam.license)
    return out


def _matplotlib_fonts() -> dict[str, FontSpec]:
    """matplotlib's bundled DejaVu fonts, when matplotlib is installed (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
    files = {"dejavu-sans": ("DejaVu Sans", "DejaVuSans.ttf", "sans"),
             "dejavu-sans-mono": ("DejaVu Sans Mono", "DejaVuSansMono.ttf", "mono"),
             "dejavu-serif": ("DejaVu Serif", "DejaVuSerif.ttf", "serif")}
    return {name: FontSpec(name=name, family=fam, path=root / fn, source="matplotlib", kind=kind,
                           license="Bitstream Vera / DejaVu")
            for name, (fam, fn, kind) in files.items() if (root / fn).exists()}


@functools.cache
def _packaged_fonts() -> dict[str, FontSpec]:
    return {**_matplotlib_fonts(), **_fontpkg_fonts()}


def available_fonts() -> dict[str, FontSpec]:
    """Every usable font by name: installed fontpkg wheels, matplotlib's DejaVu (if installed), registered ones.

    Example:
        >>> available_fonts()["ibm-plex-mono"].kind
        'mono'
    """
    return {**_packaged_fonts(), **_USER_FONTS}


def register_font(name: str, path: str | Path, *, family: str | None = None, kind: str = "sans",
                  license: str = "unknown") -> FontSpec:
    """Add a font file from a package you installed (for example a wheel that does not use fontpkg).

    Example:
        >>> register_font("my-font", "/path/to/site-packages/mypkg/MyFont.ttf", kind="serif")
    """
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"font file {path} does not exist; pass the path of a .ttf/.otf installed by a package")
    spec = FontSpec(name=name, family=family or name, path=path, source="user", kind=kind, license=license)
    _USER_FONTS[name] = spec
    _cmap.cache_clear()
    load_font.cache_clear()
    return spec


def font_spec(name: str | FontSpec) -> FontSpec:
    """The :class:`FontSpec` of a font name; an unknown name raises :class:`RenderError` listing the choices."""
    if isinstance(name, FontSpec):
        return name
    fonts = available_fonts()
    if name not in fonts:
        raise RenderError(
            f"unknown font {name!r}; available: {sorted(fonts)}. Install a font wheel "
            f"(`pip install fontpkg-{name}`) or call steerkit.render.fonts.register_font(name, path)."
        )
    return fonts[name]


@functools.cache
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A PIL font object for ``name`` at ``size`` pixels (variable fonts set to their regular weight).

    Example:
        >>> load_font("caveat", 40).getlength("hello") > 0
        True
    """
    spec = font_spec(name)
    if size <= 0:
        raise RenderError(f"font size must be positive, got {size}")
    font = ImageFont.truetype(str(spec.path), int(size))
    if spec.variable:
        try:
            axes = font.get_variation_axes()
        except OSError:  # FreeType built without variation support: the default instance is used
            axes = []
        if axes:
            values = []
            for axis in axes:
                axis_name = axis["name"].decode("ascii", "replace") if isinstance(axis["name"], bytes) else axis["name"]
                values.append(float(spec.weight) if str(axis_name).strip().lower() in ("weight", "wght")
                              else float(axis["default"]))
            font.set_variation_by_axes(values)
    return font


@functools.cache
def _cmap(name: str) -> frozenset[int] | None:
    """Code points the font maps to a glyph (None when fontTools is not installed)."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return None
    with TTFont(str(font_spec(name).path), lazy=True) as tt:
        cmap = tt.getBestCmap() or {}
    return frozenset(cmap)


def _pil_has_glyph(name: str, ch: str) -> bool:
    """PIL probe (no fontTools): a character without a glyph renders exactly like the .notdef box."""
    font = load_font(name, 24)
    notdef = font.getmask("\U0010fffd")
    mask = font.getmask(ch)
    if ch.isspace():
        return font.getlength(ch) > 0
    return not (mask.size == notdef.size and bytes(mask) == bytes(notdef))


def has_glyph(name: str, ch: str) -> bool:
    """Whether font ``name`` can draw the single character ``ch``.

    Example:
        >>> has_glyph("noto-sans", "€"), has_glyph("caveat", "∑")
        (True, False)
    """
    if ch in _LAYOUT_CHARS:
        return True
    cmap = _cmap(font_spec(name).name)
    if cmap is not None:
        return ord(ch) in cmap
    return _pil_has_glyph(name, ch)


def missing_glyphs(text: str, font: str) -> list[str]:
    """Distinct characters of ``text`` that ``font`` cannot draw, in order of first appearance."""
    return [ch for ch in dict.fromkeys(text) if not has_glyph(font, ch)]


def check_coverage(text: str, font: str) -> None:
    """Raise :class:`RenderError` naming the first character of ``text`` that ``font`` cannot draw.

    The message names the character (and its code point), the font, and the fonts that could draw the text.

    Example:
        >>> check_coverage("x ∫ y", "caveat")
        Traceback (most recent call last):
        steerkit.errors.RenderError: font 'caveat' has no glyph for '∫' (U+222B) ...
    """
    missing = missing_glyphs(text, font)
    if not missing:
        return
    ch = missing[0]
    others = [n for n in available_fonts() if n != font and not missing_glyphs(text, n)]
    more = f" (and {len(missing) - 1} more: {missing[1:6]!r})" if len(missing) > 1 else ""
    raise RenderError(
        f"font {font!r} has no glyph for {ch!r} (U+{ord(ch):04X}){more}; it would be drawn as a blank box. "
        f"Choose a font that covers the text ({others or 'none installed'}), or normalise the text first "
        "(steerkit.render.text_image.normalize_text replaces typographic quotes, dashes and spaces)."
    )
