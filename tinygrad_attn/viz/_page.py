"""Page: one self-contained HTML file (its CSS, script and data inlined) that also shows inline in Jupyter."""

import html
import json
from pathlib import Path

ASSETS = Path(__file__).with_name("assets")


class Page:
    """An HTML page: displays inline in Jupyter, ``save(path)`` writes it to a file."""

    def __init__(self, html_text, title="tinygrad_attn"):
        self.html, self.title = html_text, title

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self):
        # an iframe runs the page's script in Jupyter and keeps its CSS from leaking into the notebook
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" title="{html.escape(self.title)}" '
            'style="width:100%;height:640px;border:1px solid #ccc" sandbox="allow-scripts"></iframe>'
        )


def page(title, data, name):
    """A self-contained page: assets/<name>.html's body and .css, ``data`` as JSON, and <name>.js."""
    css, body, js = ((ASSETS / f"{name}.{ext}").read_text() for ext in ("css", "html", "js"))
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return Page(
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>\n{css}</style></head>\n<body>\n{body}"
        f'<script type="application/json" id="data">{blob}</script>\n<script>\n{js}</script>\n</body></html>\n',
        title,
    )
